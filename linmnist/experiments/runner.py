"""The orchestrator: which products are stale, and making them in dependency order, in parallel.

``assess`` compares each product's current inputs (``fingerprint``) with its record's: *up to
date*, *stale* (and why), *missing* or *failed*; ``run`` makes the others. A record is
deleted when its job starts and written last, so a killed run leaves none for an unfinished
product; a lock file keeps two runners out of one build directory.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import itertools
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
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
    """Where a product stands."""

    name: str
    state: str  # one of ``STATES``
    # For a stale product, what changed (``"code (linmnist.engine.sgd)"``, ``"upstream
    # grid/lr0.1_bs10 is missing"``); for a failed one, its error.
    reasons: tuple[str, ...] = ()
    # The digests of its own current inputs (``own_inputs``).
    inputs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def format(self) -> str:
        """One line: name, state and reasons."""
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        return f"{self.name:32s} {self.state}{why}"


@dataclass(frozen=True)
class RunSummary:
    """The outcome of ``run``."""

    outcomes: tuple[Outcome, ...]  # one per product of the run, in pipeline order
    wall_seconds: float
    jobs: int = 1  # products made at once
    threads_per_job: int = 1  # BLAS threads given to each
    executor: str = "local"  # or "dask"
    # Per group made, the wall time from its first product's start to its last one's end.
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
            n = collections.Counter(o.status for o in mine)
            counts = ", ".join(f"{n[s]} {s}" for s in ("ok", "failed", "skipped") if n[s])
            wall = self.wall_by_group.get(group)
            times = f"job time {sum(o.seconds for o in mine):.1f} s"
            times += "" if wall is None else f", wall {wall:.1f} s"
            lines.append(f"{group:12s} {len(mine):3d} product(s): {counts}; {times}")
        lines += [f"FAILED {o.name}: {o.error}" for o in self.failed]
        lines.append(
            f"{self.wall_seconds:.1f} s wall time, {self.jobs} job(s) x "
            f"{self.threads_per_job} BLAS thread(s) ({self.executor} executor)"
        )
        return "\n".join(lines)


def check_pipeline(products: Sequence[Product]) -> None:
    """Refuse duplicate names, unknown upstream products and an order against them."""
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
    """The products ``targets`` name (names or groups), with their upstream products."""
    if targets is None:
        return list(products)
    by_name = {p.name: p for p in products}
    wanted: set[str] = set()
    for target in targets:
        hits = [p.name for p in products if p.name == target or p.group == target]
        if not hits:
            accepted = ", ".join(sorted({p.group for p in products}))
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
    """The digests of a product's own inputs; ``memo`` shares them between products."""
    memo = {} if memo is None else memo
    key = (product.job.split(":", 1)[0], product.modules, product.notebook)
    if key not in memo:
        modules = set(product.modules) | {key[0]}
        if product.notebook is not None:
            modules |= fp.notebook_modules(product.notebook)
        closure = fp.module_closure(modules)
        memo[key] = {
            "code": fp.code_digest(closure),
            "modules": {m: fp.digest(fp.module_path(m).read_bytes()) for m in closure},  # type: ignore[union-attr]
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
    fields = ("fingerprint", "status")
    return {u: [(records.get(u) or {}).get(k) for k in fields] for u in product.upstream}


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
        records[product.name] = record = _read(product.record)
        current = own_inputs(product, digests, memo)
        state = _state(product, record, current, states, records)
        states[product.name] = ProductState(product.name, *state, current)
    return states


def _state(
    product: Product,
    record: dict | None,
    current: dict[str, Any],
    states: dict[str, ProductState],
    records: dict[str, dict | None],
) -> tuple[str, tuple[str, ...]]:
    """A product's state and its reasons."""
    if record is None:
        return "missing", ()
    reasons = output_problems(record, product.record, product.directory, product.outputs)
    reasons += _changes(record, current)
    not_ready = [u for u in product.upstream if states[u].state != "up to date"]
    reasons += _first_three([f"upstream {u} is {states[u].state}" for u in not_ready])
    if not not_ready:
        stored = (record.get("inputs") or {}).get("upstreams") or {}
        now = upstream_prints(product, records)
        changed = [u for u in product.upstream if stored.get(u) != now[u]]
        reasons += _first_three([f"upstream {u} was remade" for u in changed])
    if reasons:
        return "stale", tuple(reasons)
    if record.get("status") != "ok":
        return "failed", (str(record.get("error")),)
    return "up to date", ()


def _first_three(reasons: list[str]) -> list[str]:
    """At most three reasons about upstream products, and how many more there are."""
    more = [f"and {len(reasons) - 3} more upstream products"] if len(reasons) > 3 else []
    return reasons[:3] + more


def plan(products: Sequence[Product], *, lock_dir: Path, force: bool = False) -> list[ProductState]:
    """The states of the products ``run`` would make (``run --dry-run``)."""
    digests = data_digests(products)
    with _lock(lock_dir, create=False):
        states = assess(products, digests=digests)
    return [states[p.name] for p in products if force or states[p.name].state != "up to date"]


def run(
    products: Sequence[Product],
    *,
    lock_dir: Path,
    jobs: int = 1,
    force: bool = False,
    progress: bool = True,
    executor: str = "local",
    scheduler: str | None = None,
) -> RunSummary:
    """Make every product not up to date (all with ``force``), ``jobs`` at once."""
    start = time.perf_counter()
    if executor not in EXECUTORS:
        raise UsageError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    digests = data_digests(products)
    with _lock(lock_dir):
        states = assess(products, digests=digests)
        todo = [p for p in products if force or states[p.name].state != "up to date"]
        for directory in {p.directory for p in products}:  # a killed run's debris, anywhere
            _remove_leftovers(directory)
        if not todo:
            skipped = tuple(Outcome(p.name, "skipped") for p in products)
            return RunSummary(skipped, time.perf_counter() - start)
        workers = max(1, min(job_limit(jobs)[0] if scheduler is None else jobs, len(todo)))
        profile = next((p.params["profile"] for p in products if "profile" in p.params), None)
        with _executor(executor, workers, scheduler, digests) as pool:
            setting: dict[str, Any] = {"profile": profile, "executor": executor}
            setting["scheduler"] = scheduler
            setting |= {"jobs": pool.slots, "threads_per_job": pool.threads}
            setting["cores"] = available_cores()
            outcomes, spans = _made(products, todo, states, pool, lock_dir, setting, progress)
        return RunSummary(
            tuple(outcomes[p.name] for p in products),
            time.perf_counter() - start,
            jobs=setting["jobs"],
            threads_per_job=setting["threads_per_job"],
            executor=executor,
            wall_by_group={group: last - first for group, (first, last) in spans.items()},
        )


def _made(
    products: Sequence[Product],
    todo: list[Product],
    states: dict[str, ProductState],
    pool,
    lock_dir: Path,
    setting: dict[str, Any],
    progress: bool,
) -> tuple[dict[str, Outcome], dict[str, tuple[float, float]]]:
    """Make ``todo``, logging each group once made; the outcomes and each group's span."""
    making = {p.name for p in todo}
    records = {p.name: _read(p.record) for p in products if p.name not in making}
    outcomes = {p.name: Outcome(p.name, "skipped") for p in products}
    spans: dict[str, tuple[float, float]] = {}
    left = collections.Counter(p.group for p in todo)
    with tqdm(total=len(todo), unit="product", disable=not progress) as bar:
        for product, outcome, span in _make(todo, states, records, pool):
            outcomes[product.name] = outcome
            bar.set_postfix_str(f"{product.name} {outcome.status}")
            bar.update()
            if span is not None:
                first = spans.get(product.group, span)[0]
                spans[product.group] = (min(first, span[0]), span[1])
            left[product.group] -= 1
            if not left[product.group] and product.group in spans:
                group = _group_entry(product.group, products, outcomes, spans[product.group])
                append_run_log(lock_dir, {**group, **setting})
    return outcomes, spans


def _group_entry(group: str, products, outcomes: dict[str, Outcome], span) -> dict[str, Any]:
    """The fields of the log line (``runs.jsonl``) of a group of products just made."""
    mine = [p for p in products if p.group == group]
    counts = collections.Counter(outcomes[p.name].status for p in mine)
    datasets = ",".join(sorted({d for p in mine if (d := p.params.get("dataset"))}))
    finished = datetime.now(UTC).isoformat(timespec="seconds")
    entry = {"finished": finished, "tasks": group, "dataset": datasets, "cells": len(mine)}
    entry |= {status: counts[status] for status in ("ok", "failed", "skipped")}
    return entry | {"wall_seconds": span[1] - span[0]}


def _make(
    todo: list[Product],
    states: dict[str, ProductState],
    records: dict[str, dict | None],
    pool,
) -> Iterator[tuple[Product, Outcome, tuple[float, float] | None]]:
    """Make ``todo`` on ``pool`` in dependency order; yield (product, outcome, span)."""
    records = dict(records)
    pending = {p.name: p for p in todo}  # in pipeline order; a retried product goes first
    waiting = set(pending)
    running: dict[Any, Product] = {}
    given: dict[str, dict] = {}  # the inputs each product was made with
    submitted: dict[str, float] = {}
    while pending or running:
        failed_alone = False
        for product in _ready(pending, waiting, pool.slots - len(running)):
            del pending[product.name]
            problem = path_problem(product)
            if problem is not None:  # fails alone, before its job; no record can be written
                records[product.name] = None
                waiting.discard(product.name)
                failed_alone = True
                yield product, Outcome(product.name, "failed", problem), None
                continue
            upstreams = upstream_prints(product, records)
            given[product.name] = {**states[product.name].inputs, "upstreams": upstreams}
            given[product.name]["upstream"] = fp.digest(upstreams)
            submitted.setdefault(product.name, time.perf_counter())
            running[pool.submit(product, given[product.name])] = product
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
            outcome, records[product.name] = _recorded(product, outcome, given[product.name])
            waiting.discard(product.name)
            yield product, outcome, (submitted[product.name], time.perf_counter())


def _recorded(product: Product, outcome: Outcome, inputs: dict) -> tuple[Outcome, dict | None]:
    """A finished product's outcome and record; a job that wrote none is recorded failed."""
    record = _read(product.record)
    if record is None:
        outcome = record_failure(product, outcome.error or "no record was written", inputs)
        record = _read(product.record)
    return outcome, record


def _ready(pending: dict[str, Product], waiting: set[str], free: int) -> list[Product]:
    """Up to ``free`` pending products, in order, none waiting for an upstream product."""
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


def _executor(kind: str, workers: int, scheduler: str | None, digests: dict[str, str]):
    if kind == "dask":
        from linmnist.experiments.dask_executor import DaskExecutor  # dask only when asked

        return DaskExecutor(workers, scheduler=scheduler, digests=digests)
    return LocalExecutor(workers)
