"""Products: the nodes of the pipeline, each with its job, parameters and upstream products.

A product is something the pipeline makes and keeps: one grid cell's results, the
framework comparison, an executed task notebook, the report. It is made by its *job*, a
function named ``"module:function"`` and called as ``job(params, out, stem)``: the job writes
the files ``product.outputs`` into the directory ``out`` (a staging directory, moved into
place by the runner) and returns the extra fields of the product's record. A job that fails
raises; ``JobFailed.keep`` names files worth keeping for inspection (a failed notebook).

This module also lists the experiment products of one build (``experiment_products``); the
report layer adds the task notebooks and the report (``linmnist.report.pipeline``). A cell
whose runs another cell makes as well (``source_cell``: the stability sweep's cells at the
grid's rates) is not trained twice: its product reads them from that cell's files. The
cells of a ``LOCKSTEP`` task at one batch size are trained side by side by one product
(``lockstep/<task>_bs<B>``, ``linmnist.engine.lockstep``), whose files theirs read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linmnist.experiments.grids import FINAL_ACCURACY, LOCKSTEP, Cell, seed_period
from linmnist.experiments.paths import results_dir
from linmnist.experiments.results import HISTORY_SUFFIX

CELL_JOB = "linmnist.experiments.cells:cell_job"
SOURCED_JOB = "linmnist.experiments.cells:sourced_cell_job"
LOCKSTEP_JOB = "linmnist.experiments.cells:lockstep_job"
# The group (results folder) of the products that train a task's rates side by side.
LOCKSTEP_GROUP = "lockstep"


@dataclass(frozen=True)
class Product:
    """One node of the pipeline."""

    # Unique: ``<group>/<stem>`` (``grid/lr0.01_bs100``, ``notebooks/01_data``) or one word.
    name: str
    # Where its files and its record (``<stem>.json``) go; its job writes them into a staging
    # directory inside it.
    directory: Path
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


def cell_product(cell: Cell, build: Path, dataset: str, source: Cell | None = None) -> Product:
    """The product of one grid cell: ``results/<task>/<cell>.history.csv`` and its record;
    with a ``source`` cell (``source_cell``), read from that cell's files instead of trained."""
    name = f"{cell.task}/{cell.name}"
    params = {"task": cell.task, "cell": cell.name, "dataset": dataset, **cell.params}
    job, upstream = CELL_JOB, []
    if source is not None:
        job, upstream = SOURCED_JOB, [f"{source.task}/{source.name}"]
        params["source"] = {"task": source.task, "cell": source.name}
    return Product(
        name=name,
        directory=results_dir(build) / cell.task,
        stem=cell.name,
        job=job,
        params=params,
        outputs=(f"{cell.name}{HISTORY_SUFFIX}",),
        upstream=tuple(upstream),
    )


def source_cell(cell: Cell, others: Sequence[Cell]) -> Cell | None:
    """The first of ``others`` (another task's cells) whose runs include all of ``cell``'s: the
    same lr, batch size and iterations on the full training set, every seed of ``cell``
    among its seeds and evaluated there at least at the iterations ``cell`` evaluates it
    (its period divides ``cell``'s; both evaluate the last iteration), with accuracies
    wherever ``cell`` has them. A seed draws the same batches in every cell, so those runs
    are the same; None when there is no such cell."""
    p = cell.params
    if "lr" not in p or "n_prime" in p:
        return None
    for other in others:
        q = other.params
        same = all(q.get(k) == p[k] for k in ("lr", "batch_size", "iterations"))
        if other.task == cell.task or not same or "n_prime" in q:
            continue
        if cell.task not in FINAL_ACCURACY and other.task in FINAL_ACCURACY:
            continue
        if set(p["seeds"]) <= set(q["seeds"]) and all(
            seed_period(p, s) % seed_period(q, s) == 0 for s in p["seeds"]
        ):
            return other
    return None


def lockstep_groups(cells: Sequence[Cell]) -> list[Cell]:
    """The cells of one ``LOCKSTEP`` task grouped per batch size: one cell ``<task>_bs<B>`` of
    task ``LOCKSTEP_GROUP`` per group of two or more, its params those of its members with
    ``lrs`` (their rates) and ``cells`` (their names) for ``lr``. The task's axes are lr and
    batch size, so the cells of one batch size differ in their lr alone."""
    groups: dict[int, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.params["batch_size"], []).append(cell)
    out = []
    # The largest batch first: the longest job, so that a build's last jobs are short ones.
    for batch_size, members in sorted(groups.items(), reverse=True):
        if len(members) < 2:
            continue
        shared = {k: v for k, v in members[0].params.items() if k != "lr"}
        task = members[0].task
        params = {"task": task, **shared, "lrs": [m.params["lr"] for m in members],
                  "cells": [m.name for m in members]}  # fmt: skip
        out.append(Cell(LOCKSTEP_GROUP, f"{task}_bs{batch_size}", params))
    return out


def lockstep_product(group: Cell, build: Path, dataset: str) -> Product:
    """The product that trains a ``lockstep_groups`` group: ``results/lockstep/<name>.history
    .csv`` (every rate's and seed's history, a column ``lr``) and its record."""
    return Product(
        name=f"{group.task}/{group.name}",
        directory=results_dir(build) / group.task,
        stem=group.name,
        job=LOCKSTEP_JOB,
        params={"cell": group.name, "dataset": dataset, **group.params},
        outputs=(f"{group.name}{HISTORY_SUFFIX}",),
    )


def experiment_products(grids: dict[str, list[Cell]], build: Path, dataset: str) -> list[Product]:
    """The products of every cell of ``grids`` (task -> cells), in configuration order; a cell
    with a source among the cells of the tasks before it (``source_cell``) reads its runs, and
    so do the cells of a ``LOCKSTEP`` task trained side by side (``lockstep_groups``), whose
    products come first."""
    products: list[Product] = []
    before: list[Cell] = []
    for task, cells in grids.items():
        sources = {c.name: source_cell(c, before) for c in cells}
        if task in LOCKSTEP:
            for group in lockstep_groups([c for c in cells if sources[c.name] is None]):
                products.append(lockstep_product(group, build, dataset))
                sources |= dict.fromkeys(group.params["cells"], group)
        products += [cell_product(c, build, dataset, sources[c.name]) for c in cells]
        before += cells
    return products
