"""What a story notebook reads: the results of a build, or one line saying how to make them.

A notebook never starts runs. It names its build (dataset, profile, optionally a config and
a build directory) and reads that build's results; when they are missing it stops with
``MissingResults``, whose message is one line naming the command that makes them (IPython
shows that line instead of a traceback).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from linmnist.engine.validation import LinmnistError
from linmnist.experiments import sizes as size_products
from linmnist.experiments.grids import load_grids, section
from linmnist.experiments.paths import ROOT, build_dir, relative_to_root, results_dir
from linmnist.experiments.results import json_path, load_history, load_task
from linmnist.experiments.theory import GROUP, Theory, load_theory
from linmnist.report import outcomes


class MissingResults(LinmnistError):
    """The results a notebook reads are not there; the message says how to make them."""

    def _render_traceback_(self) -> list[str]:  # IPython: one line, no traceback
        return [f"MissingResults: {self}"]


def run_command(
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    targets: tuple[str, ...] = (),
    *,
    verb: str = "run",
) -> str:
    """The command that makes (``verb="run"``) the products ``targets`` (all when empty) of a
    build, or lists their states (``verb="status"``)."""
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
    return None if config is None else ROOT / config


def locate_build(
    dataset: str = "mnist",
    profile: str | None = None,
    build: str | Path | None = None,
    config: str | Path | None = None,
) -> Path:
    """The build directory: ``build`` if given, else that of (dataset, profile, config)."""
    if build is not None:
        return Path(build).resolve()
    return build_dir(dataset, profile, config_path(config))


def require_product(
    record: Path,
    *,
    what: str,
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    target: str | None = None,
) -> None:
    """Raise ``MissingResults`` when the record of a product is missing."""
    if not Path(record).is_file():
        command = run_command(dataset, profile, config, (target,) if target else ())
        raise MissingResults(f"{what} are missing in {relative_to_root(record)}: run `{command}`")


@dataclass(frozen=True)
class TaskResults:
    """The results of one task of a build.

    Attributes
    ----------
    task : str
        ``"grid"``, ``"subset"`` or ``"stability"``.
    cells : list of str
        The cells of the configuration.
    seeds : DataFrame
        One row per (cell, seed): ``linmnist.experiments.results.load_task``, with the
        column ``outcome`` of ``linmnist.report.outcomes.classify`` (diverged, unstable or
        stable, by the report's instability rule).
    histories : DataFrame
        The curves of the ok cells: ``linmnist.experiments.results.load_history``.
    build : Path
        The build directory.
    """

    task: str
    cells: list[str]
    seeds: pd.DataFrame
    histories: pd.DataFrame
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
    """The results of ``task`` in a build, every cell of the configuration present.

    Raises
    ------
    MissingResults
        When a cell of the configuration has no record, with the command that makes it.
    """
    grids = load_grids(config_path(config), profile=profile)
    if task not in grids:
        raise MissingResults(f"the configuration defines no task {task!r}; it has {list(grids)}")
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
    """The predicted curves of ``tasks`` (and the instability edges, with "stability") of a
    build (``linmnist.experiments.theory``).

    Raises
    ------
    MissingResults
        When one was not made, with the command that makes it.
    """
    build = locate_build(dataset, profile, build, config)
    for task in tasks:
        require_product(
            results_dir(build) / GROUP / f"{task}.json", what=f"the predictions of {task}",
            dataset=dataset, profile=profile, config=config, target=f"{GROUP}/{task}",
        )  # fmt: skip
    return load_theory(build, tasks)


def size_results(
    *,
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    build: str | Path | None = None,
) -> pd.DataFrame:
    """Task 5 over the fine grid of sizes (``linmnist.experiments.sizes``), one row per
    (size, seed).

    Raises
    ------
    MissingResults
        When the configuration has no ``[sizes]`` section, or a size's product is missing.
    """
    settings = section(config_path(config), size_products.GROUP, profile=profile)
    if not settings:
        raise MissingResults("the configuration has no [sizes] section")
    build = locate_build(dataset, profile, build, config)
    directory = results_dir(build) / size_products.GROUP
    for n in settings["n_prime"]:
        require_product(
            directory / f"n{n}.json", what=f"the results of N' = {n}", dataset=dataset,
            profile=profile, config=config, target=f"{size_products.GROUP}/n{n}",
        )  # fmt: skip
    return size_products.load_sizes(build, settings["n_prime"])
