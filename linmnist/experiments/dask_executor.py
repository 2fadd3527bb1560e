"""The dask executor of ``python -m linmnist run --executor dask``: grid cells on a Dask cluster.

Each cell is one Dask task that calls ``linmnist.experiments.runner.run_cell`` on a worker, so the
worker
executes the cell's notebook with papermill exactly as a local job does, with the same
staging directory and the same record written last, atomically.

* Cluster: the scheduler at ``scheduler`` (``tcp://HOST:PORT``), or a LocalCluster on
  loopback of ``jobs`` single-threaded worker processes (each under a nanny that restarts
  it if it dies).
* Shared filesystem: a worker writes the cell's files itself, into ``runs_dir`` given as an
  absolute path, and runs the notebook from the repository's path on the client; workers on
  other machines must therefore see the repository, ``runs_dir`` and the data cache
  (``$LINMNIST_DATA_DIR``) at the same paths, and have the ``linmnist`` kernel installed.
  Before its first cell a worker checks that its copy of the dataset has the client's
  checksum; after each cell the client checks that it sees the cell's record.
* One cell per worker at a time: every worker must run one thread (``--nthreads 1``),
  because a cell redirects its process's stderr and sets its BLAS variables; the client gives
  each cell to an idle worker, so no cell waits queued behind another on a worker.
* BLAS threads: the cores of a worker's machine divided between the workers on that machine,
  as the local executor divides them between its jobs.
* A worker that dies mid-cell (its cell ends with ``KilledWorker``): the client runs the cell
  again on another worker, once; a second death records the cell as failed. A killed cell
  leaves no record and no file under a result name, and the other cells are not touched.
  The client counts the deaths KilledWorker reports; a LocalCluster's scheduler retries
  nothing itself (``allowed_failures=0``). Start an external scheduler with
  ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0`` for the same rule: with Dask's default
  (3) the scheduler itself retries a cell three times, then the client records it failed.
* Interrupting the client stops a LocalCluster with its kernels; the workers of an external
  cluster finish the cells they have started (their files appear as finished results).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import dask
from distributed import Client, LocalCluster, as_completed, get_worker
from distributed.comm import get_address_host
from distributed.scheduler import KilledWorker

from linmnist.engine.data import dataset_checksum
from linmnist.experiments.grids import Cell
from linmnist.experiments.results import json_path, write_record
from linmnist.experiments.runner import (
    BLAS_THREAD_VARS,
    CellOutcome,
    available_cores,
    blas_threads,
    cell_record,
    run_cell,
)

# Deaths of the worker running a cell after which the cell is run again.
RETRIES = 1
# Seconds to wait for an external scheduler to answer and for its first worker.
CONNECT_TIMEOUT = 30

JobArgs = tuple[Cell, Path, str, str]


def execute(
    jobs_args: list[JobArgs],
    *,
    jobs: int,
    scheduler: str | None,
    checksum: str,
    on_done: Callable[[CellOutcome], None],
) -> tuple[int, int]:
    """Run the cells on a Dask cluster, calling ``on_done`` as each one finishes.

    Parameters
    ----------
    jobs_args : list of (Cell, runs_dir, dataset, fingerprint)
        The cells to run, ``runs_dir`` absolute (the arguments of ``run_cell``).
    jobs : int
        Workers of the LocalCluster (ignored with a ``scheduler``).
    scheduler : str or None
        Address of a running scheduler; None starts a LocalCluster.
    checksum : str
        The client's dataset checksum; a worker whose copy differs refuses the cells.
    on_done : callable
        Called with each cell's CellOutcome.

    Returns
    -------
    (int, int)
        Cells run at once (the cluster's workers) and BLAS threads per cell (the fewest).
    """
    if not jobs_args:
        return 1, blas_threads(1)
    workers = max(1, min(jobs, len(jobs_args)))
    with _client(scheduler, workers) as client:
        slots, threads = _capacity(client)
        pending = deque(range(len(jobs_args)))
        deaths = [0] * len(jobs_args)
        running: dict = {}  # future -> (index of its cell, the worker it was given to)
        finished = as_completed()
        waiting_since = time.monotonic()
        while pending or running:
            host_slots, idle = _idle_workers(client, {w for _, w in running.values()})
            while pending and idle:
                index, address = pending.popleft(), idle.pop(0)
                cell = jobs_args[index][0]
                future = client.submit(
                    _run_on_worker,
                    *jobs_args[index],
                    checksum,
                    host_slots,
                    key=f"linmnist-{cell.task}-{cell.name}-{uuid.uuid4().hex[:8]}",
                    workers=[address],
                    allow_other_workers=True,  # if it has just died
                    pure=False,
                )
                running[future] = (index, address)
                finished.add(future)
            if not running:  # every worker is dead or restarting
                if time.monotonic() - waiting_since > CONNECT_TIMEOUT:
                    raise RuntimeError(
                        f"no Dask worker available for {CONNECT_TIMEOUT} s; "
                        f"{len(pending)} cell(s) not run"
                    )
                time.sleep(0.2)
                continue
            future = next(finished)
            index, _ = running.pop(future)
            waiting_since = time.monotonic()
            try:
                outcome = _outcome(future, jobs_args[index])
            except KilledWorker as exc:
                deaths[index] += exc.allowed_failures + 1
                if deaths[index] <= RETRIES:
                    pending.appendleft(index)
                    continue
                outcome = _failed(
                    jobs_args[index],
                    f"the Dask worker running it died {deaths[index]} times "
                    f"(last {exc.last_worker.address}); given up",
                )
            on_done(outcome)
    return slots, threads


def _outcome(future, args: JobArgs) -> CellOutcome:
    """The cell's outcome from its finished future (KilledWorker propagates): an error on the
    worker, or a record the client cannot see, makes a failed cell."""
    try:
        outcome = future.result()
    except KilledWorker:
        raise
    except Exception as exc:  # any failure on the worker is recorded; the run goes on
        return _failed(args, f"{type(exc).__name__}: {exc}")
    if outcome.path.is_file():
        return outcome
    return _failed(
        args,
        f"the worker reported {outcome.status} but its record {outcome.path} is not visible "
        "here: runs_dir must be on a filesystem shared with the workers",
    )


def _failed(args: JobArgs, error: str) -> CellOutcome:
    """Record a cell that did not finish on its worker as failed."""
    cell, runs_dir, dataset, print_ = args
    path = json_path(runs_dir / cell.task, cell.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_record(path, cell_record(cell, dataset, print_, status="failed", error=error, seconds=0))
    return CellOutcome(cell.task, cell.name, "failed", error, 0.0, path)


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, or of a LocalCluster of ``workers``."""
    if scheduler is None:
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),  # we retry
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise RuntimeError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except TimeoutError:
            raise RuntimeError(
                f"no Dask worker joined the scheduler at {scheduler} within {CONNECT_TIMEOUT} s"
            ) from None
        many = {
            address: info["nthreads"]
            for address, info in client.scheduler_info(n_workers=-1)["workers"].items()
            if info["nthreads"] != 1
        }
        if many:
            raise RuntimeError(
                "every Dask worker must run one thread (dask worker --nthreads 1 "
                f"--nworkers N); these run more: {many}"
            )
        yield client


def _host_slots(client: Client) -> dict[str, int]:
    """Worker threads per host of the cluster (cells that may run at once on each machine)."""
    return _idle_workers(client, set())[0]


def _idle_workers(client: Client, busy: set[str]) -> tuple[dict[str, int], list[str]]:
    """(worker threads per host, the addresses of the workers not in ``busy``)."""
    slots: dict[str, int] = {}
    idle = []
    for address, info in client.scheduler_info(n_workers=-1)["workers"].items():
        host = get_address_host(address)
        slots[host] = slots.get(host, 0) + info["nthreads"]
        if address not in busy and info.get("status", "running") == "running":
            idle.append(address)
    return slots, idle


def _capacity(client: Client) -> tuple[int, int]:
    """(worker threads of the cluster, the fewest BLAS threads a cell gets on its machine)."""
    slots = _host_slots(client)
    cores = client.run(available_cores)
    threads = [
        blas_threads(slots[get_address_host(address)], cores=n) for address, n in cores.items()
    ]
    return sum(slots.values()), min(threads, default=1)


@functools.cache
def _worker_checksum(dataset: str, data_dir: str | None) -> str:
    """The dataset's checksum on this worker (computed once per worker process)."""
    return dataset_checksum(dataset, data_dir)


def _run_on_worker(
    cell: Cell,
    runs_dir: Path,
    dataset: str,
    print_: str,
    checksum: str,
    host_slots: dict[str, int],
) -> CellOutcome:
    """One cell on a Dask worker: BLAS threads for its kernel, the data checked, ``run_cell``."""
    worker = get_worker()
    host = get_address_host(worker.address)
    threads = blas_threads(host_slots.get(host, worker.state.nthreads))
    for var in BLAS_THREAD_VARS:
        os.environ[var] = str(threads)
    mine = _worker_checksum(dataset, os.environ.get("LINMNIST_DATA_DIR"))
    if mine != checksum:
        raise RuntimeError(
            f"the worker {worker.address} has a different copy of {dataset} "
            f"(SHA-256 {mine[:12]}..., the client's {checksum[:12]}...): share the data "
            "cache ($LINMNIST_DATA_DIR)"
        )
    return run_cell(cell, runs_dir, dataset, print_)
