"""What a story notebook reads: the results of a build, or one line saying how to make them.

A notebook never starts runs: it checks its parameters (``check_parameters``) and reads the
results; missing ones stop it with ``MissingResults`` naming the command that makes them, a
task the configuration lacks with ``TaskNotConfigured``.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from linmnist.engine.data import DATASETS, FACTS
from linmnist.engine.validation import (
    LinmnistError,
    UsageError,
    check_choice,
    check_instance,
    check_int,
    check_number,
    check_path,
)
from linmnist.experiments import sizes as size_products
from linmnist.experiments.grids import load_grids, section
from linmnist.experiments.paths import ROOT, build_dir, relative_to_root, results_dir
from linmnist.experiments.products import experiment_products
from linmnist.experiments.results import json_path, load_history, load_task
from linmnist.experiments.theory import GROUP, Theory, load_theory
from linmnist.experiments.theory import TASKS as THEORY_TASKS
from linmnist.report import outcomes

# The parameters some notebooks take besides their build's, with their checks (given the
# number of training images).
OWN_PARAMETERS = {
    "index": lambda value, n: check_int("index", value, low=0, high=n - 1),
    "lr": lambda value, n: check_number("lr", value, low=0, low_open=True),
    "batch_size": lambda value, n: check_int("batch_size", value, low=1, high=n),
}


class _OneLine:
    """An error that IPython shows as one line, ``<class>: <message>``, with no traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class MissingResults(_OneLine, LinmnistError):
    """The results a notebook reads are not there; the message says how to make them."""


class TaskNotConfigured(MissingResults):
    """The configuration lacks a task a notebook reads: its section stops at that cell."""


class ParameterError(_OneLine, UsageError):
    """A notebook parameter of the wrong type or value."""


def check_parameters(
    *,
    dataset: str,
    profile: str | None,
    config: str | Path | None,
    build_dir: str | Path | None,
    **own,
) -> None:
    """Check a notebook's parameters on entry; a ``ParameterError`` names a bad one."""
    try:
        require_tasks((), dataset=dataset, profile=profile, config=config)
        directory = check_path("build_dir", build_dir, allow_none=True)
        if directory is not None and not directory.is_dir():
            raise UsageError(f"build_dir must be None or an existing directory, got {build_dir!r}")
        n_train = sum(FACTS[dataset].train_label_counts)
        for name, value in own.items():
            OWN_PARAMETERS[name](value, n_train)
    except UsageError as exc:
        raise ParameterError(str(exc)) from None


def configured(
    *, dataset: str = "mnist", profile: str | None = None, config: str | Path | None = None
) -> set[str]:
    """The product groups and predictions (``theory/<task>``) the configuration defines, as
    ``pipeline.pipeline`` lists them (not imported: it would enter every notebook's fingerprint)."""
    check_choice("dataset", dataset, DATASETS)
    check_instance("profile", profile, (str, type(None)), "None or a profile name (str)")
    path = config_path(config)
    grids = load_grids(path, profile=profile)
    tasks = {task for task, cells in grids.items() if cells}
    lockstep = {p.group for p in experiment_products(grids, Path(), dataset)} - tasks
    sections = {name for name in ("scaling", "sizes") if section(path, name, profile=profile)}
    if "subset" not in tasks:  # Task 5's sizes run at its budget
        sections.discard("sizes")
    theory = {f"{GROUP}/{task}" for task in tasks & set(THEORY_TASKS)}
    return tasks | lockstep | sections | {"frameworks"} | theory | ({GROUP} if theory else set())


def _needs(name: str) -> str:
    """What a configuration defines to make ``name``: a prediction itself, else its group."""
    return name if name.startswith(f"{GROUP}/") else name.split("/")[0]


def require_tasks(
    names: Iterable[str],
    *,
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
) -> None:
    """``TaskNotConfigured`` unless the configuration defines each of ``names``."""
    known = configured(dataset=dataset, profile=profile, config=config)
    missing = [name for name in dict.fromkeys(map(_needs, names)) if name not in known]
    if missing:
        tasks = " and ".join(f"[{name.rpartition('/')[2]}]" for name in missing)
        raise TaskNotConfigured(
            f"This build's configuration defines no {tasks} task: the results that "
            f"need {'them' if len(missing) > 1 else 'it'} are left out"
        )


def run_command(
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    targets: tuple[str, ...] = (),
    *,
    verb: str = "run",
) -> str:
    """The command that makes (``verb``) the products ``targets`` of a build."""
    require_tasks(targets, dataset=dataset, profile=profile, config=config)
    words = ["python", "-m", "linmnist", verb, *targets]
    if profile is not None:
        words += ["--profile", profile]
    if dataset != "mnist":
        words += ["--dataset", dataset]
    if config is not None:
        words += ["--config", relative_to_root(config)]
    return shlex.join(words)


def config_path(config: str | Path | None) -> Path | None:
    """A notebook's ``config`` parameter (relative to the repository) as a path."""
    path = check_path("config", config, allow_none=True)
    return None if path is None else ROOT / path


def locate_build(
    dataset: str = "mnist",
    profile: str | None = None,
    build: str | Path | None = None,
    config: str | Path | None = None,
) -> Path:
    """The build directory: ``build`` if given, else that of (dataset, profile, config)."""
    if build is not None:
        return check_path("build", build).resolve()  # type: ignore[union-attr]
    return build_dir(dataset, profile, config_path(config))


def require_results(
    records: dict[str, str],
    *,
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    build: str | Path | None = None,
    target: str | None = None,
) -> Path:
    """The build directory once every product of ``records`` is made, else ``MissingResults``."""
    path = locate_build(dataset, profile, build, config)
    for name, what in records.items():
        record = results_dir(path) / f"{name}.json"
        if not record.is_file():
            command = run_command(dataset, profile, config, (target or name,))
            raise MissingResults(
                f"{what} are missing in {relative_to_root(record)}: run `{command}`"
            )
    return path


@dataclass(frozen=True)
class TaskResults:
    """The results of one task of a build."""

    task: str  # "grid", "subset" or "stability"
    cells: list[str]  # the cells of the configuration
    # One row per (cell, seed): ``results.load_task``, with the column ``outcome`` of
    # ``outcomes.classify`` (diverged, unstable or stable, by the report's instability rule).
    seeds: pd.DataFrame
    histories: pd.DataFrame  # the curves of the ok cells: ``results.load_history``
    build: Path

    @property
    def failed(self) -> pd.DataFrame:
        """One row per failed cell: cell and error."""
        rows = self.seeds[self.seeds["status"] != "ok"]
        return rows.drop_duplicates("cell")[["cell", "error"]]


def task_results(
    task: str,
    *,
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    build: str | Path | None = None,
) -> TaskResults:
    """The results of ``task`` in a build, else ``MissingResults`` with the command."""
    require_tasks((task,), dataset=dataset, profile=profile, config=config)
    grids = load_grids(config_path(config), profile=profile)
    cells = [cell.name for cell in grids[task]]
    build = locate_build(dataset, profile, build, config)
    directory = results_dir(build) / task
    missing = [c for c in cells if not json_path(directory, c).is_file()]
    if missing:
        command = run_command(dataset, profile, config, (task,))
        where = relative_to_root(directory) if directory.is_relative_to(ROOT) else directory
        raise MissingResults(
            f"{len(missing)} of the {len(cells)} {task} results are missing in {where}: "
            f"run `{command}`"
        )
    histories = load_history(results_dir(build), task, cells=cells)
    seeds = outcomes.classify(load_task(results_dir(build), task, cells=cells), histories)
    return TaskResults(task=task, cells=cells, seeds=seeds, histories=histories, build=build)


def theory_results(
    tasks: tuple[str, ...],
    *,
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    build: str | Path | None = None,
) -> Theory:
    """The predicted curves of ``tasks`` of a build, else ``MissingResults``."""
    require_tasks([f"{GROUP}/{task}" for task in tasks], dataset=dataset, profile=profile,
                  config=config)  # fmt: skip
    records = {f"{GROUP}/{task}": f"the predictions of {task}" for task in tasks}
    path = require_results(records, dataset=dataset, profile=profile, config=config, build=build)
    return load_theory(path, tasks)


def size_results(
    *,
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    build: str | Path | None = None,
) -> pd.DataFrame:
    """Task 5 over the fine grid of sizes, a row per (size, seed), else ``MissingResults``."""
    group = size_products.GROUP
    require_tasks((group,), dataset=dataset, profile=profile, config=config)
    settings = section(config_path(config), group, profile=profile)
    records = {f"{group}/n{n}": f"the results of N' = {n}" for n in settings["n_prime"]}
    path = require_results(records, dataset=dataset, profile=profile, config=config, build=build)
    return size_products.load_sizes(path, settings["n_prime"])
