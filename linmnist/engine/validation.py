"""The package's errors and the argument checks every entry point shares.

``UsageError``: a wrong parameter, configuration or usage; ``RunFailedError``: a run that
could not complete; both ``LinmnistError``s (``linmnist.cli`` gives each its exit status).
Each ``check_*`` returns the value normalised (``int``, ``float``, ``bool``, ``Path``,
``np.dtype``) or raises a ``UsageError`` naming the parameter, what is accepted and what was
given: ``batch_size must be an integer in [1, 60000], got 0``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np


class LinmnistError(Exception):
    """Base class of the errors raised by linmnist."""


class UsageError(LinmnistError, ValueError):
    """A wrong parameter, configuration or usage."""


class RunFailedError(LinmnistError, RuntimeError):
    """A run that could not complete."""


def _shown(value) -> str:
    """``value`` as a message shows it: numpy scalars as Python ones, long reprs cut."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _given(value, *, typed: bool = False) -> str:
    """', got VALUE', with its type when the type is what is wrong."""
    shown = _shown(value)
    if typed and not isinstance(value, np.ndarray):
        return f", got {shown} ({type(value).__name__})"
    return f", got {shown}"


def _range(low, high, *, low_open: bool = False) -> str:
    """' >= 1', ' > 0', ' <= 9', ' in [1, 10]', ' in (0, 1]' or ''."""
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int if it is an integer (not a bool) in [low, high] (bounds optional)."""
    expected = f"{name} must be an integer{_range(low, high)}"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        wrong_kind = isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real)
        raise UsageError(expected + _given(value, typed=wrong_kind))
    if (low is not None and value < low) or (high is not None and value > high):  # type: ignore[operator]
        raise UsageError(expected + _given(value))
    return int(value)


def check_number(name: str, value, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:  # fmt: skip
    """``value`` as a finite float in [low, high] ((low, high] with ``low_open``)."""
    expected = f"{name} must be a finite number{_range(low, high, low_open=low_open)}"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise UsageError(expected + _given(value, typed=True))
    number = float(value)
    too_low = low is not None and (number <= low if low_open else number < low)
    if not math.isfinite(number) or too_low or (high is not None and number > high):
        raise UsageError(expected + _given(value))
    return number


def check_choice(name: str, value, choices: Iterable):
    """The element of ``choices`` equal to ``value`` (a bool never equals 0 or 1 here)."""
    choices = tuple(choices)
    for choice in choices:
        if isinstance(value, bool | np.bool_) != isinstance(choice, bool | np.bool_):
            continue
        try:
            equal = bool(value == choice)
        except (TypeError, ValueError):  # e.g. an array compared with a string
            equal = False
        if equal:
            return choice
    accepted = ", ".join(c if isinstance(c, str) else _shown(c) for c in choices) or "(none)"
    raise UsageError(f"{name} must be one of {accepted}; got {_shown(value)}")


def check_bool(name: str, value) -> bool:
    """``value`` as a bool if it is True or False (a Python or numpy bool; not 0 or 1)."""
    if not isinstance(value, bool | np.bool_):
        raise UsageError(f"{name} must be True or False{_given(value, typed=True)}")
    return bool(value)


def check_path(name: str, value, *, allow_none: bool = False) -> Path | None:
    """``value`` as a Path if it is a str or an os.PathLike (None too with ``allow_none``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, str | os.PathLike):
        return Path(value)
    expected = "a path (str or os.PathLike)" + (" or None" if allow_none else "")
    raise UsageError(f"{name} must be {expected}{_given(value, typed=True)}")


def check_dtype(name: str, value, accepted: Iterable) -> np.dtype:
    """``value`` as a np.dtype if one of ``accepted`` (None, float64 to numpy, refused)."""
    accepted = [np.dtype(a) for a in accepted]
    names = [f"np.{a.name}" for a in accepted]
    expected = f"{name} must be " + (
        names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    )
    try:
        dtype = None if value is None else np.dtype(value)
    except (TypeError, ValueError):
        dtype = None
    if dtype is None:
        raise UsageError(expected + _given(value, typed=True))
    if dtype not in accepted:
        raise UsageError(f"{expected}, got {dtype}")
    return dtype


def check_instance(name: str, value, types: type | tuple[type, ...], what: str | None = None):
    """``value`` if it is an instance of ``types``; ``what`` describes them in the message."""
    if isinstance(value, types):
        return value
    if what is None:
        classes = types if isinstance(types, tuple) else (types,)
        what = " or ".join(
            f"a {c.__qualname__}"
            if c.__module__ == "builtins"
            else f"a {c.__module__}.{c.__qualname__}"
            for c in classes
        )
    raise UsageError(f"{name} must be {what}{_given(value, typed=True)}")
