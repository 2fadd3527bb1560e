"""Products: the nodes of the pipeline, each with its job, parameters and upstream products.

A product is something the pipeline makes and keeps: one grid cell's results, the
framework comparison, an executed task notebook, the report. It is made by its *job*, a
function named ``"module:function"`` and called as ``job(params, out, stem)``: the job writes
the files ``product.outputs`` into the directory ``out`` (a staging directory, moved into
place by the runner) and returns the extra fields of the product's record. A job that fails
raises; ``JobFailed.keep`` names files worth keeping for inspection (a failed notebook).

This module also lists the experiment products of one build (``experiment_products``); the
report layer adds the task notebooks and the report (``linmnist.report.pipeline``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linmnist.experiments.grids import Cell
from linmnist.experiments.paths import results_dir
from linmnist.experiments.results import HISTORY_SUFFIX

CELL_JOB = "linmnist.experiments.cells:cell_job"


@dataclass(frozen=True)
class Product:
    """One node of the pipeline."""

    # Unique: ``<group>/<stem>`` (``grid/lr0.01_bs100``, ``notebooks/01_data``) or one word.
    name: str
    directory: Path  # where its files and its record (``<stem>.json``) go
    stem: str  # file stem of its record and outputs
    job: str  # ``"module:function"``
    params: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable, for the job
    outputs: tuple[str, ...] = ()  # the files (in ``directory``) its job writes
    upstream: tuple[str, ...] = ()  # names of the products it reads
    notebook: Path | None = None  # the notebook it executes, if any
    # Further linmnist modules whose code it runs (besides the job's and the notebook's imports).
    modules: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        """The part of the name before the slash (the task of a cell), or the name."""
        return self.name.split("/", 1)[0]

    @property
    def record(self) -> Path:
        """Its JSON record, written last by the runner."""
        return self.directory / f"{self.stem}.json"


class JobFailed(RuntimeError):
    """A job's failure: ``message``, and the files of its staging directory worth keeping
    beside the record (``keep``, moved into place)."""

    def __init__(self, message: str, keep: Sequence[str] = ()):
        super().__init__(message)
        self.keep = tuple(keep)


def cell_product(cell: Cell, build: Path, dataset: str) -> Product:
    """The product of one grid cell: ``results/<task>/<cell>.history.csv`` and its record."""
    return Product(
        name=f"{cell.task}/{cell.name}",
        directory=results_dir(build) / cell.task,
        stem=cell.name,
        job=CELL_JOB,
        params={"task": cell.task, "cell": cell.name, "dataset": dataset, **cell.params},
        outputs=(f"{cell.name}{HISTORY_SUFFIX}",),
    )


def experiment_products(grids: dict[str, list[Cell]], build: Path, dataset: str) -> list[Product]:
    """The products of every cell of ``grids`` (task -> cells), in configuration order."""
    return [cell_product(cell, build, dataset) for cells in grids.values() for cell in cells]
