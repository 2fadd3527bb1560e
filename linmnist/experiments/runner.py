"""``python -m linmnist run``: every grid cell executed as a notebook, in parallel, incrementally.

Each cell of the configuration (``linmnist.experiments.grids``) is one papermill execution of its
task
notebook, with kernel ``linmnist``, into ``runs_dir/<task>/<cell>.ipynb``; its results lie
beside it (``<cell>.history.csv``, ``<cell>.json``; schema in ``linmnist.experiments.results``).

* Parallel: with the local executor, ``jobs`` worker processes run the cells; each sets
  OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS to ``max(1, cores // jobs)``,
  which the kernels inherit, so the jobs do not oversubscribe the cores. With the dask
  executor the cells go to a Dask cluster instead (``linmnist.experiments.dask_executor``),
  through the same
  ``run_cell``.
* Incremental: a cell whose JSON record has status ok and the same fingerprint (notebook
  source, parameters, ``linmnist.__version__``, dataset checksum) is skipped.
* Failures and interruptions: a cell runs in a hidden staging directory
  (``.<cell>.<pid>.staging``). Its record is deleted when it starts; on success its files are
  moved into place and the record is written last, atomically, so a run killed at any moment
  leaves no record of an unfinished cell (and the next run removes the staging leftovers).
  A failing cell gets a record with status "failed" and its error, its partial notebook is kept
  as ``<cell>.failed.ipynb`` (and the kernel's stderr as ``<cell>.failed.log``), and the other
  cells go on. Workers exit when the runner dies,
  and a lock file keeps two runners out of the same ``runs_dir``.
* Tasks: when none is named, the study's tasks (``grid``, ``subset``) run; the ``stability``
  sweep runs only when named (or with "all").
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError
from tqdm.auto import tqdm

import linmnist
from linmnist.engine.data import DATASETS, FACTS, dataset_checksum
from linmnist.experiments.grids import DEFAULT_TASKS, TASKS, Cell, check_n_train, load_grids
from linmnist.experiments.results import (
    append_run_log,
    history_path,
    json_path,
    read_record,
    write_record,
)

KERNEL_NAME = "linmnist"
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
STAGING_SUFFIX = ".staging"
FAILED_SUFFIX = ".failed.ipynb"
FAILED_LOG_SUFFIX = ".failed.log"
STATUSES = ("ok", "failed", "skipped")
EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one cell in a run.

    Attributes
    ----------
    task, cell : str
        The cell's task and name.
    status : str
        ``"ok"`` (ran and saved its results), ``"failed"`` or ``"skipped"`` (up to date).
    error : str or None
        The error of a failed cell.
    seconds : float
        Wall time of its execution (0 when skipped).
    path : Path
        Its JSON record (absent only if a local worker running it was killed).
    """

    task: str
    cell: str
    status: str
    error: str | None
    seconds: float
    path: Path


@dataclass(frozen=True)
class RunSummary:
    """The outcome of ``run``.

    Attributes
    ----------
    outcomes : tuple of CellOutcome
        One per cell of the configuration, in configuration order.
    runs_dir : Path
        Where the results are.
    dataset, dataset_checksum : str
        The dataset's name and the SHA-256 of its verified cache file.
    jobs, threads_per_job : int
        Cells run at once (worker processes, or the Dask cluster's worker threads) and BLAS
        threads given to each (the fewest, on a Dask cluster of several machines).
    wall_seconds : float
        Total wall time of the run.
    executor : str
        ``"local"`` or ``"dask"``.
    scheduler : str or None
        The Dask scheduler's address (None for the local executor and a LocalCluster).
    """

    outcomes: tuple[CellOutcome, ...]
    runs_dir: Path
    dataset: str
    dataset_checksum: str
    jobs: int
    threads_per_job: int
    wall_seconds: float
    executor: str = "local"
    scheduler: str | None = None

    @property
    def failed(self) -> list[CellOutcome]:
        """The failed cells."""
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when no cell failed."""
        return not self.failed

    def cells(self, task: str) -> list[str]:
        """Names of the configuration's cells of ``task`` (for
        ``linmnist.experiments.results.load_task``)."""
        return [o.cell for o in self.outcomes if o.task == task]

    def format(self) -> str:
        """A short human-readable account: counts per task, failures with their errors."""
        lines = []
        for task in dict.fromkeys(o.task for o in self.outcomes):
            mine = [o for o in self.outcomes if o.task == task]
            counts = ", ".join(f"{sum(o.status == s for o in mine)} {s}" for s in STATUSES)
            lines.append(f"{task}: {len(mine)} cells ({counts})")
        lines += [f"FAILED {o.task}/{o.cell}: {o.error}" for o in self.failed]
        where = {"local": "", "dask": f" on Dask {self.scheduler or 'LocalCluster'}"}
        lines.append(
            f"{self.wall_seconds:.1f} s wall time, {self.jobs} job(s) x "
            f"{self.threads_per_job} BLAS thread(s){where[self.executor]}; "
            f"results in {self.runs_dir}"
        )
        return "\n".join(lines)


def notebook_digest(path: str | Path) -> str:
    """SHA-256 of a notebook's cell types and sources (outputs and metadata do not count)."""
    nb = nbformat.read(path, as_version=4)
    cells = [[cell.cell_type, cell.source] for cell in nb.cells]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def fingerprint(cell: Cell, *, dataset: str, checksum: str) -> str:
    """SHA-256 identifying a cell's result: notebook source, parameters, version, data."""
    payload = {
        "task": cell.task,
        "notebook": notebook_digest(cell.notebook),
        "params": {**cell.params, "dataset": dataset},
        "version": linmnist.__version__,
        "dataset_checksum": checksum,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def default_runs_dir(profile: str | None = None, dataset: str = "mnist") -> Path:
    """``reports/runs``, or ``reports/runs-<profile>`` for a profile (relative paths); under
    ``reports/<dataset>/`` for a dataset other than MNIST, as the report places them."""
    base = Path("reports") if dataset == "mnist" else Path("reports") / dataset
    return base / ("runs" if profile is None else f"runs-{profile}")


def blas_threads(jobs: int, cores: int | None = None) -> int:
    """BLAS threads per job: ``max(1, cores // jobs)`` (cores available to this process)."""
    return max(1, (available_cores() if cores is None else cores) // jobs)


def available_cores() -> int:
    """Cores available to this process."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run(
    tasks: Iterable[str] | None = None,
    *,
    jobs: int = 1,
    config: str | Path | None = None,
    profile: str | None = None,
    runs_dir: str | Path | None = None,
    dataset: str = "mnist",
    force: bool = False,
    progress: bool = True,
    executor: str = "local",
    scheduler: str | None = None,
) -> RunSummary:
    """Run the cells of ``tasks`` that are not up to date.

    Parameters
    ----------
    tasks : iterable of str, optional
        Among ``"grid"`` (Task 3), ``"subset"`` (Task 5) and ``"stability"`` (the stability
        sweep); if None, the study's tasks (``linmnist.experiments.grids.DEFAULT_TASKS``) the config
        defines.
    jobs : int
        Cells run in parallel (>= 1); with the dask executor, the LocalCluster's workers
        (ignored with a ``scheduler``: the cluster's workers decide).
    config : path, optional
        Grid configuration (TOML); ``linmnist/grids.toml`` by default.
    profile : str, optional
        A profile of the configuration, e.g. ``"small"``.
    runs_dir : path, optional
        Results go to ``runs_dir/<task>/``; by default ``reports/runs`` (relative to the
        current directory), or ``reports/runs-<profile>`` with a profile, so a small run never
        replaces the full results, and under ``reports/<dataset>/`` for Fashion-MNIST.
    dataset : str
        One of ``linmnist.engine.data.DATASETS``.
    force : bool
        Rerun every cell, up to date or not.
    progress : bool
        Show a progress bar counting cells (on stderr).
    executor : str
        ``"local"`` (worker processes on this machine) or ``"dask"``
        (``linmnist.experiments.dask_executor``:
        a Dask cluster, whose workers must share the repository, the data cache and
        ``runs_dir`` through a shared filesystem).
    scheduler : str, optional
        Address of a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786`` (dask only);
        None starts a LocalCluster of ``jobs`` single-threaded worker processes.

    Returns
    -------
    RunSummary
        Every cell's outcome; ``summary.ok`` is False when a cell failed.
    """
    start = time.perf_counter()
    if tasks is not None:
        tasks = list(dict.fromkeys([tasks] if isinstance(tasks, str) else tasks))
        if not tasks or any(t not in TASKS for t in tasks):
            raise ValueError(f"tasks must be among {', '.join(TASKS)}; got {tasks}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    if scheduler is not None and (executor != "dask" or not _is_address(scheduler)):
        raise ValueError(
            "scheduler must be the address of a Dask scheduler such as tcp://HOST:PORT, "
            f"with executor 'dask'; got {scheduler!r} with executor {executor!r}"
        )
    grids = load_grids(config, profile=profile)
    tasks = [t for t in grids if t in DEFAULT_TASKS] if tasks is None else tasks
    absent = [t for t in tasks if t not in grids]
    if absent:
        raise ValueError(f"tasks {absent} are not defined in the config; defined: {list(grids)}")
    if not tasks:
        raise ValueError(f"the config defines none of the default tasks {DEFAULT_TASKS}")
    check_n_train(grids, sum(FACTS[dataset].train_label_counts), dataset)
    checksum = dataset_checksum(dataset)  # acquired and verified once, before any kernel starts
    cells = [cell for task in tasks for cell in grids[task]]
    runs_dir = default_runs_dir(profile, dataset) if runs_dir is None else Path(runs_dir)
    # Absolute: the notebooks run in their own directory, and Dask workers in theirs.
    runs_dir = runs_dir.resolve()
    outcomes: dict[tuple[str, str], CellOutcome] = {}
    with _lock(runs_dir):
        for task in tasks:
            _remove_leftovers(runs_dir / task)
        prints = {id(c): fingerprint(c, dataset=dataset, checksum=checksum) for c in cells}
        todo = []
        for cell in cells:
            if not force and _up_to_date(runs_dir / cell.task, cell.name, prints[id(cell)]):
                path = json_path(runs_dir / cell.task, cell.name)
                outcomes[cell.task, cell.name] = CellOutcome(
                    cell.task, cell.name, "skipped", None, 0.0, path
                )
            else:
                todo.append(cell)
        with tqdm(
            total=len(cells), initial=len(cells) - len(todo), unit="cell", disable=not progress
        ) as bar:

            def done(outcome: CellOutcome) -> None:
                outcomes[outcome.task, outcome.cell] = outcome
                bar.set_postfix_str(f"{outcome.task}/{outcome.cell} {outcome.status}")
                bar.update()

            jobs_args = [(c, runs_dir, dataset, prints[id(c)]) for c in todo]
            if executor == "local":
                workers = max(1, min(jobs, len(todo)))
                threads = blas_threads(workers)
                _execute(jobs_args, workers=workers, threads=threads, on_done=done)
            else:
                from linmnist.experiments import (
                    dask_executor as cluster,  # imports dask only when asked for
                )

                workers, threads = cluster.execute(
                    jobs_args, jobs=jobs, scheduler=scheduler, checksum=checksum, on_done=done
                )
        summary = RunSummary(
            outcomes=tuple(outcomes[c.task, c.name] for c in cells),
            runs_dir=runs_dir,
            dataset=dataset,
            dataset_checksum=checksum,
            jobs=workers,
            threads_per_job=threads,
            wall_seconds=time.perf_counter() - start,
            executor=executor,
            scheduler=scheduler,
        )
        append_run_log(runs_dir, _log_entry(summary, tasks, profile))
    return summary


def _log_entry(summary: RunSummary, tasks: list[str], profile: str | None) -> dict[str, Any]:
    """The run's line of ``runs_dir/runs.jsonl``
    (``linmnist.experiments.results.RUN_LOG_FIELDS``)."""
    counts = {s: sum(o.status == s for o in summary.outcomes) for s in STATUSES}
    return {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "tasks": ",".join(tasks),
        "profile": profile,
        "dataset": summary.dataset,
        "executor": summary.executor,
        "scheduler": summary.scheduler,
        "jobs": summary.jobs,
        "threads_per_job": summary.threads_per_job,
        "cores": available_cores(),
        "cells": len(summary.outcomes),
        **counts,
        "wall_seconds": summary.wall_seconds,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m linmnist run``; returns 0 when every cell is ok, 1 if one failed, 2 on a usage
    error, 130 when interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m linmnist run",
        description="Run the experiment grids (Task 3 'grid', Task 5 'subset', the 'stability' "
        "sweep) with papermill.",
    )
    parser.add_argument(
        "--task",
        help=f"{', '.join(TASKS)} or all (default: the study's tasks, {', '.join(DEFAULT_TASKS)})",
    )
    parser.add_argument("--jobs", type=int, default=1, help="cells run in parallel (default 1)")
    parser.add_argument(
        "--executor",
        default="local",
        help="local (worker processes, default) or dask (a Dask cluster)",
    )
    parser.add_argument(
        "--scheduler",
        help="with --executor dask: a running scheduler's address, tcp://HOST:PORT "
        "(default: a LocalCluster of --jobs workers)",
    )
    parser.add_argument(
        "--config", type=Path, help="grid configuration (default: linmnist/grids.toml)"
    )
    parser.add_argument("--profile", help="a profile of the configuration, e.g. small")
    parser.add_argument("--dataset", default="mnist", help=f"{', '.join(DATASETS)} (default mnist)")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        help="default reports/runs, or reports/runs-PROFILE (under reports/DATASET/ for a "
        "dataset other than mnist)",
    )
    parser.add_argument("--force", action="store_true", help="rerun up-to-date cells too")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.task not in (*TASKS, "all", None):
        print(
            f"error: --task must be one of {', '.join(TASKS)}, all; got {args.task!r}",
            file=sys.stderr,
        )
        return 2
    try:
        if args.task == "all":
            tasks = list(load_grids(args.config, profile=args.profile))
        else:
            tasks = None if args.task is None else (args.task,)
        summary = run(
            tasks,
            jobs=args.jobs,
            config=args.config,
            profile=args.profile,
            runs_dir=args.runs_dir,
            dataset=args.dataset,
            force=args.force,
            progress=not args.no_progress,
            executor=args.executor,
            scheduler=args.scheduler,
        )
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept, the others run next time", file=sys.stderr)
        return 130
    print(summary.format())
    return 0 if summary.ok else 1


def _up_to_date(task_dir: Path, name: str, print_: str) -> bool:
    try:
        record = read_record(json_path(task_dir, name))
    except (OSError, ValueError):
        return False
    return (
        record.get("status") == "ok"
        and record.get("fingerprint") == print_
        and (task_dir / f"{name}.ipynb").is_file()
        and history_path(task_dir, name).is_file()
    )


@contextlib.contextmanager
def _lock(runs_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``runs_dir`` (released by the OS if the process dies)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"another linmnist run is using {runs_dir}; wait for it or pick another --runs-dir"
            ) from None
        yield


def _remove_leftovers(task_dir: Path) -> None:
    """Delete the staging directories and temporary files of killed runs (under the lock)."""
    if not task_dir.is_dir():
        return
    for path in task_dir.glob(".*"):
        if path.is_dir() and path.name.endswith(STAGING_SUFFIX):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)


def _execute(
    jobs_args: list[tuple[Cell, Path, str, str]],
    *,
    workers: int,
    threads: int,
    on_done: Callable[[CellOutcome], None],
) -> None:
    """Run the cells in ``workers`` processes, calling ``on_done`` as each one finishes."""
    if not jobs_args:
        return
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(threads, os.getpid(), stop),
    )
    try:
        futures = {executor.submit(run_cell, *args): args for args in jobs_args}
        for future in as_completed(futures):
            try:
                on_done(future.result())
            except BrokenProcessPool as exc:
                cell, runs_dir = futures[future][:2]
                error = f"the worker process died ({exc})"
                path = json_path(runs_dir / cell.task, cell.name)
                on_done(CellOutcome(cell.task, cell.name, "failed", error, 0.0, path))
    except BaseException:
        stop.set()  # the workers exit at once; their kernels follow when they see them gone
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _init_worker(threads: int, parent: int, stop: Any) -> None:
    """Worker set-up: BLAS threads for the kernels, no Ctrl-C, exit with the runner."""
    for var in BLAS_THREAD_VARS:
        os.environ[var] = str(threads)
    # Ctrl-C reaches the whole process group; the runner decides, then stops the workers.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    threading.Thread(target=_exit_with_runner, args=(parent, stop), daemon=True).start()


def _exit_with_runner(parent: int, stop: Any) -> None:
    """Exit this worker when the runner asks or dies (SIGKILL included)."""
    while not stop.wait(0.5):
        if os.getppid() != parent:
            break
    os._exit(1)


def run_cell(cell: Cell, runs_dir: Path, dataset: str, print_: str) -> CellOutcome:
    """Execute one cell's notebook (in a worker) and leave its files and record in place.

    Parameters
    ----------
    cell : Cell
        The cell (``linmnist.experiments.grids``).
    runs_dir : Path
        Its results go to ``runs_dir/<task>/``.
    dataset : str
        The dataset its notebook loads.
    print_ : str
        Its fingerprint (``fingerprint``), stored in its record.

    Returns
    -------
    CellOutcome
        Status ``"ok"`` or ``"failed"``; the record is in place either way. Only an
        interruption (KeyboardInterrupt, a killed process) leaves no record.
    """
    start = time.perf_counter()
    task_dir = runs_dir / cell.task
    task_dir.mkdir(parents=True, exist_ok=True)
    record_path = json_path(task_dir, cell.name)
    record_path.unlink(missing_ok=True)  # from here on the cell does not count as finished
    failed_notebook = task_dir / f"{cell.name}{FAILED_SUFFIX}"
    failed_log = task_dir / f"{cell.name}{FAILED_LOG_SUFFIX}"
    failed_notebook.unlink(missing_ok=True)
    failed_log.unlink(missing_ok=True)
    staging = task_dir / f".{cell.name}.{os.getpid()}{STAGING_SUFFIX}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    params = {**cell.params, "dataset": dataset}
    try:
        executed = staging / f"{cell.name}.ipynb"
        log = staging / f"{cell.name}.log"
        try:
            with stderr_to(log):  # the kernel's own messages, kept when the cell fails
                seeds = _execute_notebook(cell, params, staging, executed)
        except Exception as exc:  # any failure of the cell is recorded; the run goes on
            if executed.is_file():
                os.replace(executed, failed_notebook)
            if log.is_file() and log.stat().st_size:
                os.replace(log, failed_log)
            (task_dir / f"{cell.name}.ipynb").unlink(missing_ok=True)
            history_path(task_dir, cell.name).unlink(missing_ok=True)
            status, error, seeds = "failed", _describe(exc), []
            notebook = failed_notebook.name if failed_notebook.is_file() else None
        else:
            os.replace(executed, task_dir / f"{cell.name}.ipynb")
            os.replace(history_path(staging, cell.name), history_path(task_dir, cell.name))
            status, error, notebook = "ok", None, f"{cell.name}.ipynb"
        seconds = time.perf_counter() - start
        record = cell_record(cell, dataset, print_, status=status, error=error, seconds=seconds)
        write_record(record_path, record | {"notebook": notebook, "seeds": seeds})  # last
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return CellOutcome(cell.task, cell.name, status, error, seconds, record_path)


def cell_record(
    cell: Cell, dataset: str, print_: str, *, status: str, error: str | None, seconds: float
) -> dict[str, Any]:
    """The JSON record of a cell run by the runner, without notebook and seeds (see
    ``linmnist.experiments.results``)."""
    return {
        "task": cell.task,
        "cell": cell.name,
        "status": status,
        "error": error,
        "params": {**cell.params, "dataset": dataset},
        "fingerprint": print_,
        "notebook": None,
        "wall_seconds": seconds,
        "seeds": [],
    }


def _is_address(value: Any) -> bool:
    """Whether ``value`` looks like a Dask address, PROTOCOL://HOST[:PORT]."""
    if not isinstance(value, str):
        return False
    protocol, _, rest = value.partition("://")
    return bool(protocol) and bool(rest) and protocol.isalnum()


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr (file descriptor 2, inherited by the kernel) to ``path``."""
    sys.stderr.flush()
    saved = os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(log, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log)


def _execute_notebook(cell: Cell, params: dict, staging: Path, executed: Path) -> list[dict]:
    """Run the notebook into ``executed``; return the per-seed records it saved in ``staging``."""
    papermill.execute_notebook(
        str(cell.notebook),
        str(executed),
        parameters={**params, "out_dir": str(staging), "cell": cell.name, "task": cell.task},
        kernel_name=KERNEL_NAME,
        progress_bar=False,
        cwd=str(cell.notebook.parent),
    )
    saved_path = json_path(staging, cell.name)
    if not saved_path.is_file() or not history_path(staging, cell.name).is_file():
        raise RuntimeError(f"the notebook {cell.notebook.name} saved no results for {cell.name}")
    saved = read_record(saved_path)
    if (saved.get("task"), saved.get("cell"), saved.get("status")) != (cell.task, cell.name, "ok"):
        raise RuntimeError(
            f"the notebook saved a record for {saved.get('task')}/{saved.get('cell')} "
            f"with status {saved.get('status')!r}, expected {cell.task}/{cell.name} ok"
        )
    return saved["seeds"]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PapermillExecutionError):
        return f"{exc.ename}: {exc.evalue} (notebook cell [{exc.exec_count}])"
    return f"{type(exc).__name__}: {exc}"
