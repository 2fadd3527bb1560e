"""Products: the nodes of the pipeline, each with its job, parameters and upstream products.

A product's *job*, ``"module:function"``, is called as ``job(params, out, stem)``: it writes
``product.outputs`` into ``out`` and returns its record's extra fields, or raises
(``JobFailed.keep``: files to keep). A cell whose runs another product makes reads its files.
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

    name: str  # unique: ``<group>/<stem>`` (``grid/lr0.01_bs100``) or one word
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
    """A job's failure, and the files of its staging directory to keep (``keep``)."""

    def __init__(self, message: str, keep: Sequence[str] = ()):
        super().__init__(message)
        self.keep = tuple(keep)


def result_product(
    build: Path, group: str, stem: str, job: str, params: dict, outputs, upstream=()
) -> Product:
    """The product ``<group>/<stem>`` of ``build``, its files in ``results/<group>/``."""
    directory = results_dir(build) / group
    return Product(f"{group}/{stem}", directory, stem, job, params, tuple(outputs), tuple(upstream))


def cell_product(cell: Cell, build: Path, dataset: str, source: Cell | None = None) -> Product:
    """The product of one grid cell (reading the files of ``source``, if given)."""
    params = {"task": cell.task, "cell": cell.name, "dataset": dataset, **cell.params}
    job, upstream = CELL_JOB, []
    if source is not None:
        job, upstream = SOURCED_JOB, [f"{source.task}/{source.name}"]
        params["source"] = {"task": source.task, "cell": source.name}
    outputs = [f"{cell.name}{HISTORY_SUFFIX}"]
    return result_product(build, cell.task, cell.name, job, params, outputs, upstream)


def source_cell(cell: Cell, others: Sequence[Cell]) -> Cell | None:
    """The first of ``others`` whose runs include all of ``cell``'s, or None."""
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
    """A cell ``<task>_bs<B>`` per batch size of two or more cells, with ``lrs``, ``cells``."""
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
    """The product that trains a ``lockstep_groups`` group (``lockstep_job``)."""
    params = {"cell": group.name, "dataset": dataset, **group.params}
    outputs = [f"{group.name}{HISTORY_SUFFIX}"]
    return result_product(build, group.task, group.name, LOCKSTEP_JOB, params, outputs)


def experiment_products(grids: dict[str, list[Cell]], build: Path, dataset: str) -> list[Product]:
    """The products of every cell of ``grids``, in configuration order."""
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
