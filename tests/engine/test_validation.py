"""The shared argument checks: what they accept, what they return, what their errors say."""

import os
import re
from pathlib import Path

import numpy as np
import pytest

from linmnist.engine.validation import (
    LinmnistError,
    RunFailedError,
    UsageError,
    check_bool,
    check_choice,
    check_dtype,
    check_instance,
    check_int,
    check_number,
    check_path,
)


def test_the_error_hierarchy():
    assert issubclass(UsageError, LinmnistError) and issubclass(UsageError, ValueError)
    assert issubclass(RunFailedError, LinmnistError) and issubclass(RunFailedError, RuntimeError)
    assert not issubclass(UsageError, RuntimeError)
    assert not issubclass(RunFailedError, ValueError)


def test_check_int_returns_a_python_int():
    for value in (3, np.int64(3), np.uint8(3)):
        result = check_int("n", value, low=1, high=3)
        assert result == 3 and type(result) is int
    assert check_int("n", -(10**20)) == -(10**20)


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (0, {"low": 1, "high": 60000}, r"^batch_size must be an integer in \[1, 60000\], got 0$"),
        (60001, {"low": 1, "high": 60000}, r"in \[1, 60000\], got 60001$"),
        (0, {"low": 1}, r"^batch_size must be an integer >= 1, got 0$"),
        (11, {"high": 10}, r"^batch_size must be an integer <= 10, got 11$"),
        (2.0, {}, r"^batch_size must be an integer, got 2\.0$"),
        (True, {"low": 0}, r"^batch_size must be an integer >= 0, got True \(bool\)$"),
        (np.True_, {"low": 0}, r"got True \(bool\)$"),
        ("3", {"low": 1}, r"^batch_size must be an integer >= 1, got '3' \(str\)$"),
        (None, {"low": 1}, r"got None \(NoneType\)$"),
        (np.arange(3), {"low": 1}, r"got an array of dtype int64 and shape \(3,\)$"),
    ],
)
def test_check_int_refuses_naming_the_parameter_the_range_and_the_value(value, bounds, message):
    with pytest.raises(UsageError, match=message):
        check_int("batch_size", value, **bounds)


def test_check_number_returns_a_float():
    for value in (1, 0.5, np.float32(0.5), np.int64(1)):
        result = check_number("lr", value, low=0, low_open=True)
        assert result == float(value) and type(result) is float
    assert check_number("x", 0.0, low=0) == 0.0
    assert check_number("x", 1.0, low=0, high=1, low_open=True) == 1.0


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (0.0, {"low": 0, "low_open": True}, r"^lr must be a finite number > 0, got 0\.0$"),
        (-1e-9, {"low": 0}, r"^lr must be a finite number >= 0, got -1e-09$"),
        (2.0, {"low": 0, "high": 1, "low_open": True}, r"^lr must be a finite number in \(0, 1\]"),
        (2.0, {"low": 0, "high": 1}, r"^lr must be a finite number in \[0, 1\], got 2\.0$"),
        (2.0, {"high": 1}, r"^lr must be a finite number <= 1, got 2\.0$"),
        (float("nan"), {}, r"^lr must be a finite number, got nan$"),
        (float("-inf"), {}, r"got -inf$"),
        (np.float64("inf"), {"low": 0}, r"got inf$"),
        ("0.1", {}, r"^lr must be a finite number, got '0\.1' \(str\)$"),
        (False, {}, r"got False \(bool\)$"),
        (1j, {}, r"got 1j \(complex\)$"),
    ],
)
def test_check_number_refuses_non_finite_out_of_range_and_non_real_values(value, bounds, message):
    with pytest.raises(UsageError, match=message):
        check_number("lr", value, **bounds)


def test_check_choice_returns_the_matching_choice():
    assert check_choice("name", "mnist", ("mnist", "fashion-mnist")) == "mnist"
    assert type(check_choice("name", np.str_("mnist"), ["mnist"])) is str
    assert check_choice("jobs", 2, range(1, 4)) == 2


@pytest.mark.parametrize(
    ("value", "choices", "message"),
    [
        (
            "cifar",
            ("mnist", "fashion-mnist"),
            r"^name must be one of mnist, fashion-mnist; got 'cifar'$",
        ),
        ("MNIST", ("mnist",), r"^name must be one of mnist; got 'MNIST'$"),
        (True, (1, 2), r"^name must be one of 1, 2; got True$"),
        (1, (True, False), r"^name must be one of True, False; got 1$"),
        (None, (1, None, "a"), None),
        (np.zeros(2), ("mnist",), r"got an array"),
        ([1], ("mnist",), r"got \[1\]$"),
    ],
)
def test_check_choice_refuses_values_outside_the_choices(value, choices, message):
    if message is None:
        assert check_choice("name", value, choices) is None
        return
    with pytest.raises(UsageError, match=message):
        check_choice("name", value, choices)


def test_check_bool_accepts_only_booleans():
    assert check_bool("bias", True) is True
    assert check_bool("bias", np.False_) is False
    for value, shown in [(1, "1 (int)"), (0, "0 (int)"), ("yes", "'yes' (str)"), (None, "None")]:
        with pytest.raises(
            UsageError, match=f"^bias must be True or False, got {re.escape(shown)}"
        ):
            check_bool("bias", value)


def test_check_path_accepts_str_and_path_like():
    assert check_path("out", "a/b") == Path("a/b")
    assert check_path("out", Path("c")) == Path("c")

    class Custom(os.PathLike):
        def __fspath__(self):
            return "d"

    assert check_path("out", Custom()) == Path("d")
    assert check_path("out", None, allow_none=True) is None
    with pytest.raises(UsageError, match=r"^out must be a path \(str or os.PathLike\), got None"):
        check_path("out", None)
    with pytest.raises(
        UsageError, match=r"^out must be a path \(str or os.PathLike\) or None, got 3"
    ):
        check_path("out", 3, allow_none=True)


def test_check_dtype_resolves_and_refuses():
    accepted = (np.float32, np.float64)
    assert check_dtype("dtype", "float32", accepted) == np.dtype(np.float32)
    assert check_dtype("dtype", np.dtype("float64"), accepted) == np.dtype(np.float64)
    assert check_dtype("dtype", float, accepted) == np.dtype(np.float64)
    for value, shown in [
        (np.int32, r"int32$"),
        (None, r"None \(NoneType\)$"),  # np.dtype(None) would be float64
        ("no-such-type", r"'no-such-type' \(str\)$"),
    ]:
        with pytest.raises(
            UsageError, match=rf"^dtype must be np\.float32 or np\.float64, got {shown}"
        ):
            check_dtype("dtype", value, accepted)
    with pytest.raises(UsageError, match=r"^dtype must be np\.float32, got float64$"):
        check_dtype("dtype", np.float64, [np.float32])
    with pytest.raises(UsageError, match=r"^d must be np\.int8, np\.int16 or np\.int32, got"):
        check_dtype("d", np.float64, [np.int8, np.int16, np.int32])


def test_check_instance_names_the_expected_type():
    assert check_instance("frame", {}, dict) == {}
    with pytest.raises(UsageError, match=r"^frame must be a dict, got \[\] \(list\)$"):
        check_instance("frame", [], dict)
    with pytest.raises(UsageError, match=r"^frame must be a pathlib.Path or a dict, got 1"):
        check_instance("frame", 1, (Path, dict))
    with pytest.raises(UsageError, match=r"^frame must be a table, got 1 \(int\)$"):
        check_instance("frame", 1, dict, "a table")


def test_long_values_are_cut_in_messages():
    with pytest.raises(UsageError) as info:
        check_choice("name", "x" * 500, ["a"])
    assert len(str(info.value)) < 120 and str(info.value).endswith("...")
