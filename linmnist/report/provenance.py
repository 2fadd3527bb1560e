"""Provenance shown in the report's appendix: the packages, the machine, the commit."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import pandas as pd

from linmnist.experiments.paths import ROOT
from linmnist.experiments.products import Product
from linmnist.experiments.results import read_record

PACKAGES = tuple(
    "linmnist numpy numba pandas matplotlib torch keras papermill nbconvert nbformat ipykernel "
    "weasyprint dask distributed".split()
)


def environment() -> pd.DataFrame:
    """Python and the versions of the packages the report depends on (missing ones marked)."""
    rows = [{"package": "python", "version": platform.python_version()}]
    for name in PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        rows.append({"package": name, "version": version})
    return pd.DataFrame(rows)


def machine() -> dict[str, str]:
    """The machine: OS, processor model, cores available, memory."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    cpu = models[0] if models else platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"system": platform.platform(), "processor": cpu, "cores": str(cores)}
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total = meminfo.read_text().split("MemTotal:", 1)[1].split()[0]
        info["memory"] = f"{int(total) / 2**20:.1f} GiB"
    return info


def git_commit(root: str | os.PathLike = ROOT) -> str:
    """The commit of the working tree, marked "(modified)" when it has uncommitted changes."""

    def git(*args: str) -> str:
        command = ["git", "-C", str(root), *args]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30)
        return done.stdout.strip()

    try:
        head, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head} (modified)" if dirty else head


def product_table(products: Sequence[Product]) -> pd.DataFrame:
    """One row per group of products: counts, ok, failed, seconds, last finished."""
    rows: dict[str, dict] = {}
    for product in products:
        try:
            record = read_record(product.record)
        except (OSError, ValueError):
            record = {}
        empty = {"products": product.group, "count": 0, "ok": 0, "failed": 0, "seconds": 0.0}
        row = rows.setdefault(product.group, empty | {"finished": ""})
        row["count"] += 1
        row["ok"] += record.get("status") == "ok"
        row["failed"] += record.get("status") == "failed"
        row["seconds"] += record.get("wall_seconds") or 0.0
        row["finished"] = max(row["finished"], record.get("finished") or "")
    return pd.DataFrame(list(rows.values()))
