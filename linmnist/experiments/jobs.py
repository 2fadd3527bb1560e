"""Making one product in a worker (``make_product``): its job run in a staging directory, its
files moved into place, its record written last; and the BLAS threads a worker gets."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# NUMPY_MADVISE_HUGEPAGE at run time (numpy reads the variable once, at import)
from numpy._core.multiarray import _set_madvise_hugepage  # type: ignore[attr-defined]

from linmnist.engine.validation import RunFailedError
from linmnist.experiments import fingerprint as fp
from linmnist.experiments.outputs import OUTPUTS, output_digests
from linmnist.experiments.products import JobFailed, Product
from linmnist.experiments.results import write_record

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
STAGING_SUFFIX = ".staging"
# Deaths of the worker making a product after which it is made again.
RETRIES = 1
# Memory one local job (worker process) may take: the data, a cell's evaluator and its runs.
JOB_MEMORY = 1_500_000_000


class RunAborted(RunFailedError):
    """A run cut short by the loss of its Dask scheduler or of every worker (exit status 1)."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one product in a run."""

    name: str
    status: str  # "ok", "failed" or "skipped" (up to date)
    error: str | None = None  # the error of a failed product
    seconds: float = 0.0  # wall time of its job (0 when skipped)


def blas_threads(jobs: int, cores: int | None = None) -> int:
    """BLAS threads per job: ``max(1, cores // jobs)`` (cores available to this process)."""
    return max(1, (available_cores() if cores is None else cores) // jobs)


def available_cores() -> int:
    """Cores available to this process."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_memory() -> int:
    """Bytes of memory available to new processes (``MemAvailable``; free pages elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def job_limit(jobs: int) -> tuple[int, str | None]:
    """``jobs`` capped at one per core and per ``JOB_MEMORY`` available, and why if capped."""
    cores, memory = available_cores(), available_memory()
    limit = max(1, min(cores, memory // JOB_MEMORY))
    if jobs <= limit:
        return jobs, None
    return limit, (
        f"--jobs {jobs} capped at {limit}: this machine has {cores} core(s) and "
        f"{memory / 1e9:.1f} GB available, about {JOB_MEMORY / 1e9:.1f} GB per job"
    )


def path_problem(product: Product) -> str | None:
    """Why ``product``'s files cannot be written, or None."""
    existing = product.directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    where = "it" if existing == product.directory else str(existing)
    if not existing.is_dir():
        return f"cannot write {product.directory}: {where} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write {product.directory}: {where} is not writable"
    for path in (product.record, *(product.directory / name for name in product.outputs)):
        if path.exists() and not path.is_file():
            return f"cannot write {path}: it exists and is not a file"
    return None


def record_failure(product: Product, error: str, inputs: dict | None = None) -> Outcome:
    """Write a failed record for a product whose job could not write one (a dead worker)."""
    product.directory.mkdir(parents=True, exist_ok=True)
    write_record(product.record, _record(product, "failed", error, inputs or {}, 0.0, {}))
    return Outcome(product.name, "failed", error)


def _record(
    product: Product, status: str, error: str | None, inputs: dict, seconds: float, extra: dict
) -> dict[str, Any]:
    return {
        "product": product.name,
        "status": status,
        "error": error,
        "params": product.params,
        "fingerprint": fp.combine(inputs) if inputs else None,
        "inputs": inputs,
        "wall_seconds": seconds,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


@contextlib.contextmanager
def huge_pages(enabled: bool):
    """numpy's advice of 2 MB pages for large arrays on (``enabled``) or off in the block:
    off for a job's many temporaries (costly fresh pages), on for the data (SGD's gathers)."""
    before = _set_madvise_hugepage(enabled)
    try:
        yield
    finally:
        _set_madvise_hugepage(before)


def make_product(product: Product, inputs: dict[str, Any]) -> Outcome:
    """Run a product's job and leave its files and record in place."""
    start = time.perf_counter()
    directory = product.directory
    directory.mkdir(parents=True, exist_ok=True)
    product.record.unlink(missing_ok=True)  # from here on it does not count as made
    for kept in directory.glob(f"{product.stem}.failed*"):  # what an earlier failure kept
        kept.unlink()
    staging = directory / f".{product.stem}.{os.getpid()}{STAGING_SUFFIX}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        module, function = product.job.split(":", 1)
        job = getattr(importlib.import_module(module), function)
        try:
            with huge_pages(False):
                extra = job(product.params, staging, product.stem) or {}
        except Exception as exc:  # any failure of the job is recorded; the run goes on
            keep = exc.keep if isinstance(exc, JobFailed) else ()
            for name in product.outputs:
                (directory / name).unlink(missing_ok=True)
            for name in keep:
                if (staging / name).is_file():
                    os.replace(staging / name, directory / name)
            error = str(exc) if isinstance(exc, JobFailed) else f"{type(exc).__name__}: {exc}"
            status, extra = "failed", {}
        else:
            missing = [name for name in product.outputs if not (staging / name).is_file()]
            if missing:
                status, error, extra = "failed", f"the job wrote none of {missing}", {}
            else:
                for name in product.outputs:
                    os.replace(staging / name, directory / name)
                status, error = "ok", None  # type: ignore[assignment]
                extra = {**extra, OUTPUTS: output_digests(directory, product.outputs)}
        seconds = time.perf_counter() - start
        write_record(product.record, _record(product, status, error, inputs, seconds, extra))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Outcome(product.name, status, error, seconds)
