"""The job of a task notebook: execute it with papermill into ``<stem>.ipynb``.

Kernel ``linmnist``, in ``notebooks/``. A notebook whose cell fails is kept as
``<stem>.failed.ipynb`` and the product fails; a cell raising ``LEFT_OUT`` (the configuration
lacks a task it reads) ends the notebook there, and the product is made.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import papermill
from papermill.engines import NBClientEngine, papermill_engines
from papermill.exceptions import PapermillExecutionError

from linmnist.experiments.paths import ROOT
from linmnist.experiments.products import JobFailed

KERNEL_NAME = "linmnist"
# The kernel logs nothing (its start-up and shut-down noise); a cell's error reaches the
# notebook through the kernel's messages.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
# The kernel's environment on top of the runner's: it trains nothing, and numpy's huge pages
# would only make its first large arrays slow.
KERNEL_ENVIRONMENT = {"NUMPY_MADVISE_HUGEPAGE": "0"}
FAILED_SUFFIX = ".failed.ipynb"
# The error (by class name: it is raised in the kernel) that leaves the rest of a notebook out.
LEFT_OUT = "TaskNotConfigured"
# The cells papermill adds to a notebook whose cell failed.
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
ENGINE_NAME = "linmnist-write-once"  # WriteOnceEngine


class WriteOnceEngine(NBClientEngine):
    """Papermill's nbclient engine, the notebook written at its start and end alone."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
        nb_man.save = lambda **_: None  # the instance's, until papermill's notebook_complete
        try:
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
        finally:
            del nb_man.save


papermill_engines.register(ENGINE_NAME, WriteOnceEngine)


def notebook_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """Execute ``params["notebook"]`` into ``out/<stem>.ipynb``; JobFailed when a cell fails."""
    source = ROOT / params["notebook"]
    target = out / f"{stem}.ipynb"
    try:
        with kernel_environment():
            papermill.execute_notebook(
                _literal_path(source),
                _literal_path(target),
                parameters=params["parameters"],
                kernel_name=KERNEL_NAME,
                engine_name=ENGINE_NAME,
                extra_arguments=KERNEL_ARGUMENTS,
                progress_bar=False,
                cwd=str(source.parent),
            )
    except PapermillExecutionError as exc:
        if exc.ename == LEFT_OUT:
            leave_out(target)
            return {"notebook": target.name, "left_out": exc.evalue}
        failed = out / f"{stem}{FAILED_SUFFIX}"
        target.replace(failed)
        raise JobFailed(
            f"{exc.ename}: {exc.evalue} (notebook {source.name}, cell [{exc.exec_count}])",
            keep=[failed.name],
        ) from None
    return {"notebook": target.name}


@contextlib.contextmanager
def kernel_environment() -> Iterator[None]:
    """``KERNEL_ENVIRONMENT`` in this process's environment (a kernel started inherits it)."""
    saved = {name: os.environ.get(name) for name in KERNEL_ENVIRONMENT}
    os.environ.update(KERNEL_ENVIRONMENT)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def leave_out(path: Path) -> None:
    """Cut the notebook at ``path`` after its cell that raised ``LEFT_OUT``."""
    nb = nbformat.read(path, as_version=4)
    tags = [cell.get("metadata", {}).get("tags", []) for cell in nb.cells]
    nb.cells = [
        cell for cell, t in zip(nb.cells, tags, strict=True) if PAPERMILL_ERROR_TAG not in t
    ]
    for i, cell in enumerate(nb.cells):
        errors = [o for o in cell.get("outputs", []) if o.get("ename") == LEFT_OUT]
        if errors:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=errors[0].evalue)]
            nb.cells = nb.cells[: i + 1]
            break
    nbformat.write(nb, path)


def _literal_path(path: Path) -> str:
    """``path`` with its braces doubled (papermill ``str.format``s its paths)."""
    return str(path).replace("{", "{{").replace("}", "}}")
