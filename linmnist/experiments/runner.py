"""The orchestrator: which products are stale, and making them in dependency order, in parallel.

``assess`` compares each product's current inputs (``linmnist.experiments.fingerprint``)
with those stored in its record and says *up to date*, *stale* (naming what changed),
*missing* or *failed*; a product downstream of one that is not up to date is stale
("upstream"). ``run`` makes every product that is not up to date (or every one, with
``force``): a product starts once its upstream products are finished, on the local executor
(``jobs`` worker processes, each with ``cores // jobs`` BLAS threads) or on a Dask cluster
(``linmnist.experiments.dask_executor``).

Kill-safe records: a product's record is deleted when its job starts; the job writes into a
hidden staging directory (``.<stem>.<pid>.staging``), whose files are moved into place when
it succeeds, and the record is written last, atomically. A run killed at any moment leaves
no record of an unfinished product (it is *missing* next time), and the next run removes the
staging leftovers. A failing product gets a record with status "failed" and its error; the
others go on, and products downstream of it still run (they show what failed). A lock file
keeps two runners out of one build directory.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import itertools
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from linmnist.engine.data import dataset_checksum
from linmnist.engine.validation import UsageError
from linmnist.experiments import fingerprint as fp
from linmnist.experiments.jobs import (
    STAGING_SUFFIX,
    Outcome,
    available_cores,
    job_limit,
    path_problem,
    record_failure,
)
from linmnist.experiments.local_executor import LocalExecutor
from linmnist.experiments.outputs import output_problems
from linmnist.experiments.products import Product
from linmnist.experiments.results import append_run_log, read_record

STATES = ("up to date", "stale", "missing", "failed")
EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class ProductState:
    """Where a product stands.

    Attributes
    ----------
    name : str
        The product.
    state : str
        One of ``STATES``.
    reasons : tuple of str
        For a stale product, what changed (e.g. ``"code (linmnist.engine.sgd)"``,
        ``"upstream grid/lr0.1_bs10 is missing"``); for a failed one, its error.
    """

    name: str
    state: str
    reasons: tuple[str, ...] = ()

    def format(self) -> str:
        """One line: name, state and reasons."""
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        return f"{self.name:32s} {self.state}{why}"


@dataclass(frozen=True)
class RunSummary:
    """The outcome of ``run``.

    Attributes
    ----------
    outcomes : tuple of Outcome
        One per product of the run, in pipeline order.
    wall_seconds : float
        Wall time of the run.
    jobs, threads_per_job : int
        Products made at once, and BLAS threads given to each.
    executor : str
        ``"local"`` or ``"dask"``.
    wall_by_group : dict of str to float
        Per group made in this run, the wall time from its first product's start to its
        last product's end (groups overlap when products of several run at once).
    """

    outcomes: tuple[Outcome, ...]
    wall_seconds: float
    jobs: int = 1
    threads_per_job: int = 1
    executor: str = "local"
    wall_by_group: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[Outcome]:
        """The failed products."""
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when no product failed."""
        return not self.failed

    def format(self) -> str:
        """Counts per group of products, the failures, and where the time went."""
        groups: dict[str, list[Outcome]] = {}
        for o in self.outcomes:
            groups.setdefault(o.name.split("/", 1)[0], []).append(o)
        lines = []
        for group, mine in groups.items():
            counts = ", ".join(
                f"{n} {s}"
                for s in ("ok", "failed", "skipped")
                if (n := sum(o.status == s for o in mine))
            )
            seconds = sum(o.seconds for o in mine)
            wall = self.wall_by_group.get(group)
            span = "" if wall is None else f", wall {wall:.1f} s"
            lines.append(
                f"{group:12s} {len(mine):3d} product(s): {counts}; job time {seconds:.1f} s{span}"
            )
        lines += [f"FAILED {o.name}: {o.error}" for o in self.failed]
        lines.append(
            f"{self.wall_seconds:.1f} s wall time, {self.jobs} job(s) x "
            f"{self.threads_per_job} BLAS thread(s) ({self.executor} executor)"
        )
        return "\n".join(lines)


def check_pipeline(products: Sequence[Product]) -> None:
    """Refuse duplicate names, unknown upstream products and cycles (topological order is
    required: every product after its upstream products)."""
    seen: set[str] = set()
    names = {p.name for p in products}
    for product in products:
        if product.name in seen:
            raise UsageError(f"the pipeline has two products named {product.name!r}")
        unknown = [u for u in product.upstream if u not in names]
        if unknown:
            raise UsageError(f"product {product.name!r} names unknown upstream products {unknown}")
        later = [u for u in product.upstream if u not in seen]
        if later:
            raise UsageError(
                f"product {product.name!r} comes before its upstream products {later} "
                "(the pipeline must be in dependency order, without cycles)"
            )
        seen.add(product.name)


def select(products: Sequence[Product], targets: Iterable[str] | None) -> list[Product]:
    """The products named by ``targets`` (a name, or a group such as ``grid`` or ``notebooks``)
    and their upstream products, in pipeline order; all of them when ``targets`` is None."""
    if targets is None:
        return list(products)
    targets = list(targets)
    by_name = {p.name: p for p in products}
    groups = {p.group for p in products}
    wanted: set[str] = set()
    for target in targets:
        hits = [p.name for p in products if p.name == target or p.group == target]
        if not hits:
            accepted = ", ".join(sorted(groups))
            raise UsageError(
                f"target {target!r} names no product; accepted: a group ({accepted}) or a "
                "product name as `python -m linmnist status` lists it"
            )
        wanted |= set(hits)
    todo = list(wanted)
    while todo:
        todo += [u for u in by_name[todo.pop()].upstream if u not in wanted]
        wanted |= set(todo)
    return [p for p in products if p.name in wanted]


def own_inputs(
    product: Product, data_digests: dict[str, str], memo: dict | None = None
) -> dict[str, Any]:
    """The digests of a product's own inputs (all but ``upstream``), and of each module.

    ``memo`` (a dict kept for one pass over the pipeline) shares the code and notebook
    digests between the products that run the same modules and notebook (every grid cell).
    """
    memo = {} if memo is None else memo
    key = (product.job.split(":", 1)[0], product.modules, product.notebook)
    if key not in memo:
        modules = set(product.modules) | {key[0]}
        if product.notebook is not None:
            modules |= fp.notebook_modules(product.notebook)
        closure = fp.module_closure(modules)
        memo[key] = {
            "code": fp.code_digest(closure),
            "modules": {m: fp.digest(fp.module_path(m).read_bytes()) for m in closure},
            "notebook": None if product.notebook is None else fp.notebook_digest(product.notebook),
        }
    dataset = product.params.get("dataset")
    return {
        **memo[key],
        "params": fp.digest(product.params),
        "data": None if dataset is None else data_digests[dataset],
        "dependencies": fp.dependencies_digest(),
    }


def upstream_prints(product: Product, records: dict[str, dict | None]) -> dict[str, list]:
    """The upstream products' fingerprints and statuses, from their records."""
    return {
        u: [(records.get(u) or {}).get("fingerprint"), (records.get(u) or {}).get("status")]
        for u in product.upstream
    }


def data_digests(products: Iterable[Product]) -> dict[str, str]:
    """The checksum of each dataset the products use (acquired and verified once)."""
    datasets = sorted({p.params["dataset"] for p in products if "dataset" in p.params})
    return {name: dataset_checksum(name) for name in datasets}


def _read(path: Path) -> dict | None:
    try:
        record = read_record(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _changes(stored: dict, current: dict) -> list[str]:
    """What differs between stored and current inputs, in words."""
    inputs = stored.get("inputs") or {}
    reasons = []
    for key in ("code", "notebook", "params", "data", "dependencies"):
        if inputs.get(key) != current[key]:
            if key == "code":
                old, new = inputs.get("modules") or {}, current["modules"]
                changed = sorted(m for m in set(old) | set(new) if old.get(m) != new.get(m))
                shown = ", ".join(changed[:4]) + (", ..." if len(changed) > 4 else "")
                reasons.append(f"code ({shown})" if changed else "code")
            else:
                reasons.append({"params": "parameters", "data": "data"}.get(key, key))
    return reasons


def assess(
    products: Sequence[Product], *, digests: dict[str, str] | None = None
) -> dict[str, ProductState]:
    """The state of every product, from its record and its current inputs."""
    check_pipeline(products)
    digests = data_digests(products) if digests is None else digests
    states: dict[str, ProductState] = {}
    records: dict[str, dict | None] = {}
    memo: dict = {}
    for product in products:
        record = _read(product.record)
        records[product.name] = record
        current = own_inputs(product, digests, memo)
        if record is None:
            states[product.name] = ProductState(product.name, "missing")
            continue
        reasons = output_problems(record, product.record, product.directory, product.outputs)
        reasons += _changes(record, current)
        not_ready = [u for u in product.upstream if states[u].state != "up to date"]
        reasons += [f"upstream {u} is {states[u].state}" for u in not_ready[:3]]
        if len(not_ready) > 3:
            reasons.append(f"and {len(not_ready) - 3} more upstream products")
        if not not_ready:
            stored = (record.get("inputs") or {}).get("upstreams") or {}
            now = upstream_prints(product, records)
            changed = [u for u in product.upstream if stored.get(u) != now[u]]
            reasons += [f"upstream {u} was remade" for u in changed[:3]]
            if len(changed) > 3:
                reasons.append(f"and {len(changed) - 3} more upstream products")
        if reasons:
            states[product.name] = ProductState(product.name, "stale", tuple(reasons))
        elif record.get("status") != "ok":
            states[product.name] = ProductState(product.name, "failed", (str(record.get("error")),))
        else:
            states[product.name] = ProductState(product.name, "up to date")
    return states


def run(
    products: Sequence[Product],
    *,
    lock_dir: Path,
    jobs: int = 1,
    force: bool = False,
    dry_run: bool = False,
    progress: bool = True,
    executor: str = "local",
    scheduler: str | None = None,
    on_plan: Callable[[list[ProductState]], None] | None = None,
) -> RunSummary:
    """Make every product that is not up to date, in dependency order, in parallel.

    Parameters
    ----------
    products : sequence of Product
        The pipeline (or the part of it to bring up to date), in dependency order.
    lock_dir : Path
        The build directory; its lock keeps other runners out.
    jobs : int
        Products made at once (>= 1), at most what this machine can hold
        (``linmnist.experiments.jobs.job_limit``) unless they run on a remote Dask scheduler.
    force : bool
        Make every product, up to date or not.
    dry_run : bool
        Only say what would be made (``on_plan``); make nothing.
    progress : bool
        A progress bar on stderr.
    executor : {"local", "dask"}
        Worker processes here, or a Dask cluster (``scheduler``, or a LocalCluster of
        ``jobs`` workers).
    on_plan : callable, optional
        Called with the states of the products that will be made, before any is.

    Returns
    -------
    RunSummary
    """
    start = time.perf_counter()
    if executor not in EXECUTORS:
        raise UsageError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    digests = data_digests(products)
    with _lock(lock_dir, create=not dry_run):
        states = assess(products, digests=digests)
        todo = [p for p in products if force or states[p.name].state != "up to date"]
        making = {p.name for p in todo}
        if on_plan is not None:
            on_plan([states[p.name] for p in todo])
        if not dry_run:
            for directory in {p.directory for p in products}:  # a killed run's debris, anywhere
                _remove_leftovers(directory)
        if dry_run or not todo:
            outcomes = tuple(Outcome(p.name, "skipped") for p in products if p.name not in making)
            return RunSummary(outcomes, time.perf_counter() - start)
        records = {p.name: _read(p.record) for p in products if p.name not in making}
        outcomes: dict[str, Outcome] = {
            p.name: Outcome(p.name, "skipped") for p in products if p.name not in making
        }
        spans: dict[str, tuple[float, float]] = {}

        def group_done(group: str, slots: int, threads: int) -> None:
            # Logged as soon as the group is made, so a notebook reading it quotes this run.
            mine = [outcomes[p.name] for p in products if p.group == group]
            _log(lock_dir, group, mine, products, spans, executor, slots, threads, scheduler)

        with tqdm(total=len(todo), unit="product", disable=not progress) as bar:
            workers, threads = _make(
                todo, records, digests, jobs=jobs, executor=executor, scheduler=scheduler,
                on_done=lambda o: (outcomes.__setitem__(o.name, o), bar.set_postfix_str(
                    f"{o.name} {o.status}"), bar.update()),
                spans=spans, on_group=group_done,
            )  # fmt: skip
        return RunSummary(
            tuple(outcomes[p.name] for p in products),
            time.perf_counter() - start,
            jobs=workers,
            threads_per_job=threads,
            executor=executor,
            wall_by_group={group: last - first for group, (first, last) in spans.items()},
        )


def _log(
    directory: Path,
    group: str,
    mine: Sequence[Outcome],
    products: Sequence[Product],
    spans: dict[str, tuple[float, float]],
    executor: str,
    jobs: int,
    threads: int,
    scheduler: str | None,
) -> None:
    """The line of a group of products just made, in ``directory/runs.jsonl``: its wall time
    (first start to last end within this run) and how many of its products were made."""
    if group not in spans:  # none of its products ran (they failed before their jobs)
        return
    first, last = spans[group]
    profile = next((p.params["profile"] for p in products if "profile" in p.params), None)
    counts = {s: sum(o.status == s for o in mine) for s in ("ok", "failed", "skipped")}
    datasets = {p.params.get("dataset") for p in products if p.group == group}
    append_run_log(
        directory,
        {
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "tasks": group,
            "profile": profile,
            "dataset": ",".join(sorted(d for d in datasets if d)),
            "executor": executor,
            "scheduler": scheduler,
            "jobs": jobs,
            "threads_per_job": threads,
            "cores": available_cores(),
            "cells": len(mine),
            **counts,
            "wall_seconds": last - first,
        },
    )


def _make(
    todo: list[Product],
    records: dict[str, dict | None],
    digests: dict[str, str],
    *,
    jobs: int,
    executor: str,
    scheduler: str | None,
    on_done: Callable[[Outcome], None],
    spans: dict[str, tuple[float, float]],
    on_group: Callable[[str, int, int], None],
) -> tuple[int, int]:
    """Schedule ``todo`` on the executor as their upstream products finish; ``spans`` receives
    each group's (first start, last end), ``on_group(group, slots, threads)`` is called when
    the last product of a group is done."""
    pending = {p.name: p for p in todo}  # in pipeline order; a retried product goes first
    left = collections.Counter(p.group for p in todo)
    waiting = {p.name for p in todo}
    if scheduler is None:  # workers on this machine: as many as it can hold
        jobs, _ = job_limit(jobs)
    workers = max(1, min(jobs, len(todo)))
    with _executor(executor, workers, scheduler, digests) as pool:

        def finish(product: Product, outcome: Outcome) -> None:
            waiting.discard(product.name)
            on_done(outcome)
            left[product.group] -= 1
            if not left[product.group]:
                on_group(product.group, pool.slots, pool.threads)

        running: dict[Any, Product] = {}
        given: dict[str, dict] = {}  # the inputs each product was made with
        started: dict[str, float] = {}
        memo: dict = {}
        while pending or running:
            failed_alone = False
            for product in _ready(pending, waiting, pool.slots - len(running)):
                del pending[product.name]
                problem = path_problem(product)
                if problem is not None:  # fails alone, before its job; no record can be written
                    records[product.name] = None
                    finish(product, Outcome(product.name, "failed", problem))
                    failed_alone = True
                    continue
                inputs = own_inputs(product, digests, memo)
                inputs["upstreams"] = upstream_prints(product, records)
                inputs["upstream"] = fp.digest(inputs["upstreams"])
                given[product.name] = inputs
                started.setdefault(product.group, time.perf_counter())
                running[pool.submit(product, inputs)] = product
            if not running and failed_alone:
                continue  # its dependents may start now
            if not running:
                raise RuntimeError("no product can start: the pipeline is not in dependency order")
            for future in pool.wait(list(running)):
                product = running.pop(future)
                outcome = pool.outcome(future, product, inputs=given[product.name])
                if outcome is None:  # a dead worker, retried
                    pending = {product.name: product, **pending}
                    continue
                records[product.name] = _read(product.record)
                if records[product.name] is None:
                    error = outcome.error or "no record was written"
                    outcome = record_failure(product, error, given[product.name])
                    records[product.name] = _read(product.record)
                spans[product.group] = (started[product.group], time.perf_counter())
                finish(product, outcome)
        return pool.slots, pool.threads


def _ready(pending: dict[str, Product], waiting: set[str], free: int) -> list[Product]:
    """Up to ``free`` pending products, in order, none of whose upstream products is waiting
    (a scan that stops as soon as enough are found: linear in the products a run makes)."""
    ready = (p for p in pending.values() if not any(u in waiting for u in p.upstream))
    return list(itertools.islice(ready, max(free, 0)))


@contextlib.contextmanager
def _lock(directory: Path, *, create: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on a build directory (released by the OS if the process dies)."""
    if not create and not directory.is_dir():
        yield
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fh = open(directory / ".lock", "w")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise UsageError(
            f"the build directory {directory} cannot be written ({exc.strerror or exc}); "
            "it must be a writable directory"
        ) from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another linmnist run is using {directory}; wait for it to finish"
            ) from None
        yield


def _remove_leftovers(directory: Path) -> None:
    """Delete the staging directories and temporary files of killed runs (under the lock)."""
    if not directory.is_dir():
        return
    for path in directory.glob(".*"):
        if path.is_dir() and path.name.endswith(STAGING_SUFFIX):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _executor(kind: str, workers: int, scheduler: str | None, digests: dict[str, str]):
    if kind == "dask":
        from linmnist.experiments.dask_executor import DaskExecutor  # dask only when asked

        with DaskExecutor(workers, scheduler=scheduler, digests=digests) as pool:
            yield pool
        return
    with LocalExecutor(workers) as pool:
        yield pool
