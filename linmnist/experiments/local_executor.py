"""The local executor: products made by worker processes on this machine."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from linmnist.experiments import jobs
from linmnist.experiments.products import Product


class LocalExecutor:
    """``workers`` spawned processes, ignoring Ctrl-C and exiting with the runner."""

    def __init__(self, workers: int):
        self.workers = workers
        self.threads = jobs.blas_threads(workers)
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._pool = self._new_pool()
        self._pools: dict[Any, ProcessPoolExecutor] = {}  # future -> the pool running it
        self._alone: dict[Any, bool] = {}  # future -> whether it ran with no other product
        self._deaths: dict[str, int] = {}
        self._suspects: set[str] = set()  # running when a worker died: remade one at a time

    @property
    def slots(self) -> int:
        """Products made at once: one while products that saw a worker die are remade."""
        return 1 if self._suspects else self.workers

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._context,
            initializer=init_worker,
            initargs=(self.threads, os.getpid(), self._stop),
        )

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self._stop.set()  # the workers exit at once; their kernels follow
            self._pool.shutdown(wait=True, cancel_futures=True)
        else:
            self._pool.shutdown(wait=True)

    def submit(self, product: Product, inputs: dict[str, Any]):
        """Start ``make_product(product, inputs)`` in a worker."""
        try:
            future = self._pool.submit(jobs.make_product, product, inputs)
        except BrokenProcessPool:
            self._pool = self._new_pool()
            future = self._pool.submit(jobs.make_product, product, inputs)
        self._pools[future] = self._pool
        self._alone[future] = len(self._pools) == 1 and bool(self._suspects or self.workers == 1)
        return future

    def wait(self, futures: list) -> list:
        """The futures among ``futures`` that have finished (at least one)."""
        return list(wait(futures, return_when=FIRST_COMPLETED).done)

    def outcome(self, future, product: Product, inputs: dict | None) -> jobs.Outcome | None:
        """The finished product's outcome; None to make it again.

        A worker that dies breaks the whole pool, so every product running then ends with
        BrokenProcessPool, and any of them may be the culprit. Each is made again, alone (one
        product at a time), so the next death names its product; a product whose worker dies
        ``RETRIES + 1`` times, the last time alone, is recorded as failed.
        """
        pool, alone = self._pools.pop(future), self._alone.pop(future)
        try:
            outcome = future.result()
        except BrokenProcessPool as exc:
            if pool is self._pool:
                self._pool = self._new_pool()
            deaths = self._deaths[product.name] = self._deaths.get(product.name, 0) + 1
            if not alone or deaths <= jobs.RETRIES:
                self._suspects.add(product.name)
                return None
            self._suspects.discard(product.name)
            error = f"the worker process died {deaths} times ({exc})"
            return jobs.record_failure(product, error, inputs)
        except Exception as exc:  # the worker could not even start the job (an import error)
            outcome = jobs.record_failure(product, f"{type(exc).__name__}: {exc}", inputs)
        self._suspects.discard(product.name)
        return outcome


def init_worker(threads: int, parent: int, stop: Any) -> None:
    """Worker set-up: BLAS threads, no Ctrl-C, exit with the runner."""
    for var in jobs.BLAS_THREAD_VARS:
        os.environ[var] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)  # numpy is already loaded here: limit it now
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    threading.Thread(target=_exit_with_runner, args=(parent, stop), daemon=True).start()


def _exit_with_runner(parent: int, stop: Any) -> None:
    """Exit this worker when the runner asks or dies (SIGKILL included)."""
    while not stop.wait(0.5):
        if os.getppid() != parent:
            break
    os._exit(1)
