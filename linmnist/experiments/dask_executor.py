"""The dask executor (``run --executor dask``): products on a Dask cluster.

Each product is a Dask task calling ``jobs.make_product`` on an idle single-threaded worker of
``scheduler`` (or a LocalCluster) that sees the repository, the build and the data cache at the
same paths. A dying worker costs one retry; a lost scheduler, or no worker for
``CONNECT_TIMEOUT`` s, ends the run with ``RunAborted``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import CancelledError
from typing import Any

import dask
from distributed import Client, LocalCluster, get_worker, wait
from distributed.comm import get_address_host
from distributed.scheduler import KilledWorker

from linmnist.engine.data import dataset_checksum
from linmnist.engine.validation import UsageError
from linmnist.experiments import jobs
from linmnist.experiments.products import Product

# Seconds to wait for an external scheduler to answer and for its first worker.
CONNECT_TIMEOUT = 30


class DaskExecutor:
    """Products on a Dask cluster (the interface of ``LocalExecutor``)."""

    def __init__(self, workers: int, *, scheduler: str | None, digests: dict[str, str]):
        self._context = _client(scheduler, workers)
        self._scheduler = scheduler or "the LocalCluster's scheduler"
        self._digests = digests
        self._deaths: dict[str, int] = {}
        self._busy: dict[Any, str] = {}  # future -> the worker given it, while it runs

    def __enter__(self) -> DaskExecutor:
        self.client = self._context.__enter__()
        self.threads = _blas_threads(self.client)
        return self

    def __exit__(self, *exc) -> None:
        self._context.__exit__(*exc)

    @property
    def slots(self) -> int:
        """Products made at once: one per worker alive now (at least one)."""
        with self._lost_scheduler():
            return max(1, len(_running(_workers(self.client))))

    def submit(self, product: Product, inputs: dict[str, Any]):
        """Give ``make_product(product, inputs)`` to an idle worker."""
        deadline = time.monotonic() + CONNECT_TIMEOUT
        with self._lost_scheduler():
            while not (idle := self._idle())[1]:
                if time.monotonic() > deadline:
                    raise jobs.RunAborted(
                        f"no Dask worker at {self._scheduler} for {CONNECT_TIMEOUT} s: the "
                        "products made are kept; start workers and run again"
                    )
                time.sleep(0.2)
            host_slots, (worker, *_) = idle
            key = f"linmnist-{product.name.replace('/', '-')}-{uuid.uuid4().hex[:8]}"
            args = (_run_on_worker, product, inputs, self._digests, host_slots)
            # other workers allowed, should it have just died
            options: dict[str, Any] = {"workers": [worker], "allow_other_workers": True}
            future = self.client.submit(*args, key=key, pure=False, **options)
        self._busy[future] = worker
        return future

    def _idle(self) -> tuple[dict[str, int], list[str]]:
        """(worker threads per host, the workers alive and idle)."""
        workers = _workers(self.client)
        self._busy = {f: w for f, w in self._busy.items() if w in workers and not f.done()}
        busy = set(self._busy.values())
        return _host_slots(workers), [w for w in _running(workers) if w not in busy]

    def wait(self, futures: list) -> list:
        """The futures among ``futures`` that have finished (at least one)."""
        with self._lost_scheduler():
            return list(wait(futures, return_when="FIRST_COMPLETED").done)

    def outcome(self, future, product: Product, inputs: dict | None) -> jobs.Outcome | None:
        """The product's outcome; None to make it again (a dead worker)."""
        self._busy.pop(future, None)
        try:
            outcome = future.result()
        except CancelledError:  # we cancel nothing: the client lost the scheduler
            raise self._lost() from None
        except KilledWorker as exc:
            deaths = self._deaths.get(product.name, 0) + exc.allowed_failures + 1
            self._deaths[product.name] = deaths
            last = exc.last_worker.address
            error = f"the Dask worker making it died {deaths} times (last {last}); given up"
            return None if deaths <= jobs.RETRIES else jobs.record_failure(product, error, inputs)
        except Exception as exc:  # any failure on the worker is recorded; the run goes on
            return jobs.record_failure(product, f"{type(exc).__name__}: {exc}", inputs)
        if product.record.is_file():
            return outcome
        error = (
            f"the worker reported {outcome.status} but the record {product.record} is not "
            "visible here: the build directory must be on a filesystem shared with the workers"
        )
        return jobs.record_failure(product, error, inputs)

    @contextlib.contextmanager
    def _lost_scheduler(self) -> Iterator[None]:
        """The errors of a lost scheduler as one ``RunAborted``."""
        try:
            yield
        except (CancelledError, OSError, TimeoutError):
            raise self._lost() from None

    def _lost(self) -> jobs.RunAborted:
        kept = "the products made are kept, those being made are made by the next run"
        return jobs.RunAborted(f"lost the Dask scheduler at {self._scheduler}: {kept}")


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, or of a LocalCluster of ``workers``."""
    if scheduler is None:
        cluster = {"threads_per_worker": 1, "processes": True, "host": "127.0.0.1"}
        cluster |= {"dashboard_address": None, "silence_logs": logging.ERROR}
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),  # we retry
            LocalCluster(n_workers=workers, **cluster) as local,
            Client(local) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with _quiet("distributed.client"), client:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except TimeoutError:
            raise UsageError(
                f"no Dask worker joined the scheduler at {scheduler} within {CONNECT_TIMEOUT} s"
            ) from None
        many = {
            a: info["nthreads"] for a, info in _workers(client).items() if info["nthreads"] != 1
        }
        if many:
            raise UsageError(
                "every Dask worker must run one thread (dask worker --nthreads 1 "
                f"--nworkers N); these run more: {many}"
            )
        yield client


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Only critical log records from logger ``name`` (a lost scheduler is one line)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _workers(client: Client) -> dict[str, dict[str, Any]]:
    """The scheduler's workers by address; ConnectionError when the scheduler is lost."""
    running = client.status == "running"
    workers = client.scheduler_info(n_workers=-1).get("workers") if running else None
    if workers is None or client.status != "running":
        raise ConnectionError(f"the Dask client is {client.status}")
    return workers


def _running(workers: dict[str, dict[str, Any]]) -> list[str]:
    """The addresses of the workers that take products."""
    return [a for a, info in workers.items() if info.get("status", "running") == "running"]


def _host_slots(workers: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Worker threads per host (products that may run at once on each machine)."""
    slots: collections.Counter[str] = collections.Counter()
    for address, info in workers.items():
        slots[get_address_host(address)] += info["nthreads"]
    return dict(slots)


def _blas_threads(client: Client) -> int:
    """The fewest BLAS threads a cell gets on its machine."""
    slots, cores = _host_slots(_workers(client)), client.run(jobs.available_cores)
    threads = [jobs.blas_threads(slots[get_address_host(a)], cores=n) for a, n in cores.items()]
    return min(threads, default=1)


@functools.cache
def _worker_checksum(dataset: str, data_dir: str | None) -> str:
    """The dataset's checksum on this worker (computed once per worker process)."""
    return dataset_checksum(dataset, data_dir)


def _run_on_worker(
    product: Product, inputs: dict[str, Any], digests: dict[str, str], host_slots: dict[str, int]
) -> jobs.Outcome:
    """One product on a Dask worker: BLAS threads, the data checked, ``make_product``."""
    worker = get_worker()
    host = get_address_host(worker.address)
    threads = jobs.blas_threads(host_slots.get(host, worker.state.nthreads))
    for var in jobs.BLAS_THREAD_VARS:
        os.environ[var] = str(threads)
    dataset = product.params.get("dataset")
    if dataset is not None:
        mine = _worker_checksum(dataset, os.environ.get("LINMNIST_DATA_DIR"))
        if mine != digests[dataset]:
            raise RuntimeError(
                f"the worker {worker.address} has a different copy of {dataset} "
                f"(SHA-256 {mine[:12]}..., the client's {digests[dataset][:12]}...): share the "
                "data cache ($LINMNIST_DATA_DIR)"
            )
    return jobs.make_product(product, inputs)
