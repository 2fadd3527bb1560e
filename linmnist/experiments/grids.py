"""The experiment grids: read from TOML, validated up front, expanded to cells.

``grids.toml`` defines each task of ``TASKS`` once: its axes (lists whose product gives the
cells), fixed parameters, seeds and named profiles overriding some of them. ``load_grids``
refuses a wrong value before anything runs; ``section`` reads the other ``SECTIONS``.
"""

from __future__ import annotations

import difflib
import itertools
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linmnist.engine.sgd import MAX_ITERATIONS, check_batch_size
from linmnist.engine.validation import UsageError, check_choice
from linmnist.experiments.paths import DEFAULT_CONFIG, FULL_PROFILE

# Tasks whose histories are read for their losses only (the loss curves' agreement with the
# prediction, runs that grow without bound): accuracies at the last evaluation only.
FINAL_ACCURACY = ("stability", "edge")
# Tasks whose cells of one batch size are trained side by side (``linmnist.engine.lockstep``):
# the stability sweep's rates share their seeds' batches, and at B = 1000 side by side they
# take about half the time.
LOCKSTEP = ("stability",)


def eval_period(seed: int, *, fidelity_seeds: Sequence[int], eval_every: int) -> int:
    """Evaluation period of ``seed``: 1 for a fidelity seed, ``eval_every`` otherwise."""
    return 1 if seed in fidelity_seeds else eval_every


def seed_period(params: dict[str, Any], seed: int) -> int:
    """``eval_period`` of ``seed`` in a cell of parameters ``params``."""
    return eval_period(seed, **{k: params[k] for k in ("fidelity_seeds", "eval_every")})


@dataclass(frozen=True)
class TaskSpec:
    """A task's axes (whose product gives its cells), fixed keys and cells' name format."""

    axes: tuple[str, ...]
    fixed: tuple[str, ...]
    name_format: str


_COMMON = ("seeds", "fidelity_seeds", "eval_every", "iterations")
TASKS: dict[str, TaskSpec] = {
    "grid": TaskSpec(("lr", "batch_size"), _COMMON, "lr{lr:g}_bs{batch_size}"),
    "subset": TaskSpec(("n_prime",), (*_COMMON, "lr", "batch_size"), "n{n_prime}"),
    "stability": TaskSpec(("lr", "batch_size"), _COMMON, "lr{lr:g}_bs{batch_size}"),
    # lr = edge_factor x the instability edge predicted from the data for the batch size.
    "edge": TaskSpec(("edge_factor", "batch_size"), _COMMON, "x{edge_factor:g}_bs{batch_size}"),
}
# Sections that are not grids of cells, validated by their own modules (scaling, sizes).
SECTIONS = ("scaling", "sizes")
# Largest configuration file read (the study's is 4 kB).
MAX_CONFIG_BYTES = 1 << 20
# Most cells of one build (the study has 109) and seeds of one cell (the study uses 20).
MAX_CELLS = 100_000
MAX_SEEDS = 1_000


@dataclass(frozen=True)
class Cell:
    """One configuration of a task: its name (file stem) and every axis and fixed value."""

    task: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)


def cell_name(task: str, **params: Any) -> str:
    """Name of a cell from its axis values, e.g. ``cell_name("subset", n_prime=100)`` is n100."""
    check_choice("task", task, TASKS)
    return TASKS[task].name_format.format(**params)


def load_grids(
    config: str | Path | None = None, *, profile: str | None = None
) -> dict[str, list[Cell]]:
    """Task -> its cells of the configuration ``config``, with ``profile`` applied."""
    raw = read_config(config)
    _check_keys("config", raw, [*TASKS, *SECTIONS, "profiles"])
    if not any(task in raw for task in TASKS):
        raise UsageError(f"config must define at least one task among {', '.join(TASKS)}")
    profiles = raw.get("profiles", {})
    _check_table("profiles", profiles)
    for name in profiles:
        _check_profile_name(name)
    if profile is not None:
        check_choice("profile", profile, profiles)
    for name in [None, *profiles]:  # the base and every profile are valid, not only the one used
        _build(raw, name)
    return _build(raw, profile)


def read_config(config: str | Path | None) -> dict[str, Any]:
    """The TOML table of a configuration file; UsageError naming why it cannot be read."""
    path = Path(DEFAULT_CONFIG if config is None else config)
    if not path.is_file():
        why = "a directory" if path.is_dir() else "missing" if not path.exists() else "special"
        raise UsageError(f"config must be an existing TOML file, got {str(path)!r} ({why})")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"config {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(
            f"config {str(path)!r} is larger than {MAX_CONFIG_BYTES:,} bytes; a configuration "
            "is a short TOML file"
        )
    if raw.startswith(b"\xef\xbb\xbf"):
        raise UsageError(
            f"config {str(path)!r} starts with a UTF-8 byte-order mark, which TOML does not "
            "allow; save it as UTF-8 without one"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bom = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
        why = f"byte {exc.start} is 0x{raw[exc.start]:02x}"
        why = "it starts with a UTF-16 byte-order mark" if bom else why
        raise UsageError(
            f"config {str(path)!r} is not UTF-8 text ({why}); TOML files are UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config {str(path)!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(
            f"config {str(path)!r} nests arrays or tables too deeply to be read as TOML"
        ) from None


def section(config: str | Path | None, name: str, *, profile: str | None = None) -> dict:
    """The table ``[name]`` of a configuration with ``profile`` applied ({} without one)."""
    check_choice("section", name, SECTIONS)
    load_grids(config, profile=profile)  # the file, the profile and its keys are valid
    raw = read_config(config)
    if name not in raw:
        return {}
    _check_table(name, raw[name])
    override = raw.get("profiles", {}).get(profile, {}).get(name, {}) if profile else {}
    _check_table(f"profiles.{profile}.{name}", override)
    return {**raw[name], **override}


def check_n_train(grids: dict[str, list[Cell]], n_train: int, dataset: str) -> None:
    """Refuse a subset larger than the training set of ``dataset`` (``n_train`` samples)."""
    for cell in grids.get("subset", []):
        if cell.params["n_prime"] > n_train:
            raise UsageError(
                f"subset.n_prime must be in [1, {n_train}] (the training-set size of "
                f"{dataset}), got {cell.params['n_prime']}"
            )


def _build(raw: dict, profile: str | None) -> dict[str, list[Cell]]:
    overrides = {}
    if profile is not None:
        label = f"profiles.{profile}"
        overrides = raw["profiles"][profile]
        _check_table(label, overrides)
        _check_keys(label, overrides, [name for name in (*TASKS, *SECTIONS) if name in raw])
    merged = {}
    for task, spec in TASKS.items():
        if task not in raw:
            continue
        _check_table(task, raw[task])
        override = overrides.get(task, {})
        _check_table(f"profiles.{profile}.{task}", override)
        _check_keys(f"profiles.{profile}.{task}", override, [*spec.axes, *spec.fixed])
        merged[task] = {**raw[task], **override}
    counts = {
        task: math.prod(len(v) if isinstance(v := values.get(key), list) else 1
                        for key in TASKS[task].axes)
        for task, values in merged.items()
    }  # fmt: skip
    if (total := sum(counts.values())) > MAX_CELLS:  # refused before the cells are expanded
        shown = ", ".join(f"{task} {n:,}" for task, n in counts.items())
        raise UsageError(
            f"{'config' if profile is None else f'profile {profile!r}'} has {total:,} cells "
            f"({shown}); at most {MAX_CELLS:,}: each cell is a product with its own files, "
            "made and checked one by one"
        )
    return {task: _expand(task, TASKS[task], values) for task, values in merged.items()}


def _expand(task: str, spec: TaskSpec, values: dict) -> list[Cell]:
    _check_keys(task, values, [*spec.axes, *spec.fixed], required=True)
    fixed = {key: _check_value(f"{task}.{key}", key, values[key]) for key in spec.fixed}
    seeds = fixed["seeds"]
    if not set(fixed["fidelity_seeds"]) <= set(seeds):
        raise UsageError(
            f"{task}.fidelity_seeds must be a subset of {task}.seeds {seeds}, "
            f"got {fixed['fidelity_seeds']}"
        )
    axes = {
        key: distinct(f"{task}.{key}", values[key], lambda n, v, k=key: _check_value(n, k, v))
        for key in spec.axes
    }
    points = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    return [Cell(task, spec.name_format.format(**point), {**point, **fixed}) for point in points]


def distinct(label: str, values: Any, check, what: str = "values") -> list:
    """``check(label, v)`` of each of ``values``, a non-empty list of distinct ``what``."""
    if not isinstance(values, list) or not values or len(set(values)) != len(values):
        raise UsageError(f"{label} must be a non-empty list of distinct {what}, got {values!r}")
    return [check(label, v) for v in values]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value(label: str, key: str, value: Any) -> Any:
    if key in ("lr", "edge_factor"):
        ok = (_is_int(value) or isinstance(value, float)) and math.isfinite(value) and value > 0
        if not ok:
            raise UsageError(f"{label} must be a finite number > 0, got {value!r}")
        return float(value)
    if key in ("seeds", "fidelity_seeds"):
        ok = isinstance(value, list) and all(_is_int(s) and s >= 0 for s in value)
        ok = ok and len(set(value)) == len(value) and (key == "fidelity_seeds" or value)
        if not ok:
            what = "list" if key == "fidelity_seeds" else "non-empty list"
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            raise UsageError(f"{label} must be a {what} of distinct integers >= 0, got {shown}")
        check_seed_count(len(value), label)
        return list(value)
    if not (_is_int(value) and value >= 1):
        raise UsageError(f"{label} must be an integer >= 1, got {value!r}")
    if key == "batch_size":
        return check_batch_size(value, name=label)
    if key == "iterations" and value > MAX_ITERATIONS:
        raise UsageError(
            f"{label} must be an integer in [1, {MAX_ITERATIONS:,}], got {value:,}: a longer "
            "run takes hours, and its history at every iteration alone 3.2 GB"
        )
    return value


def check_seed_count(count: int, label: str = "seeds") -> None:
    """Refuse more than ``MAX_SEEDS`` seeds for one cell (each is one run of its job)."""
    if count > MAX_SEEDS:
        raise UsageError(
            f"{label} must hold at most {MAX_SEEDS:,} seeds, got {count:,}: each seed is one run "
            "of the cell, made in one job (a million take about 13 hours and 28 GB)"
        )


def _check_profile_name(name: str) -> None:
    """A profile names its build's directory: one path component, inside ``reports/``."""
    if name in ("", ".", "..", FULL_PROFILE) or not name.isprintable() or {"/", "\\"} & set(name):
        raise UsageError(
            f"profile names must be a single printable directory name (no '/', '\\', "
            f"'.', '..' or {FULL_PROFILE!r}, the base configuration's name); got {name!r}"
        )


def _check_table(label: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise UsageError(f"{label} must be a table ([{label}]), got {value!r}")


def _check_keys(label: str, table: dict, accepted, required: bool = False) -> None:
    accepted = list(accepted)
    for key in table:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{label}: unknown key {key!r}{hint}; accepted: {', '.join(accepted)}")
    if required:
        missing = [key for key in accepted if key not in table]
        if missing:
            raise UsageError(f"{label}: missing parameter(s) {', '.join(missing)}")
