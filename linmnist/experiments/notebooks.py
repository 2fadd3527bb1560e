"""The job of a task notebook: execute it with papermill into ``<stem>.ipynb``.

Notebooks only read results; the runner executes them once their upstream products are
made, with kernel ``linmnist``, in ``notebooks/`` (so relative paths in them work as in
JupyterLab). A notebook whose cell fails is kept as ``<stem>.failed.ipynb``, its failing cell
marked by papermill, and the product is recorded as failed. A cell that raises ``LEFT_OUT``
(``linmnist.report.inputs.TaskNotConfigured``: the build's configuration defines no task it
reads) ends the notebook instead: it is kept up to that cell, which shows the error's one line
in place of its results, and the product is made.
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
# The kernel process logs nothing: its start-up warning (that a local TCP connection is not
# encrypted) and its shut-down noise would otherwise fill every run's output. A cell's error
# reaches the notebook and the run through the kernel's messages, not this log.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
# The kernel's environment on top of the runner's. A kernel loads the data set but trains
# nothing: numpy's huge pages, which speed up training's random gathers of samples, would
# only make its first large arrays slow (up to ~10 ms a MB on the build machine, when the
# system has to free 2 MB pages for them).
KERNEL_ENVIRONMENT = {"NUMPY_MADVISE_HUGEPAGE": "0"}
FAILED_SUFFIX = ".failed.ipynb"
# The error (by class name: it is raised in the kernel) that leaves the rest of a notebook out.
LEFT_OUT = "TaskNotConfigured"
# The cells papermill adds to a notebook whose cell failed.
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
# The papermill engine of the jobs (``WriteOnceEngine``).
ENGINE_NAME = "linmnist-write-once"


class WriteOnceEngine(NBClientEngine):
    """Papermill's nbclient engine, the executed notebook written when it starts and when it
    ends (and with its error, when a cell fails), not before and after every cell: each write
    validates and serialises the whole notebook, figures included, which took seconds of a
    notebook's job. What is written last is the same notebook."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
        nb_man.save = lambda **_: None  # the instance's, until papermill's notebook_complete
        try:
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
        finally:
            del nb_man.save


papermill_engines.register(ENGINE_NAME, WriteOnceEngine)


def notebook_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """Execute ``params["notebook"]`` (relative to the repository) with
    ``params["parameters"]`` into ``out/<stem>.ipynb``.

    Raises
    ------
    JobFailed
        When a cell fails; ``out/<stem>.failed.ipynb`` holds the executed notebook.
    """
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
    """``KERNEL_ENVIRONMENT`` in this process's environment, which a kernel started meanwhile
    inherits (papermill passes none of its own); restored afterwards."""
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
    """Cut the executed notebook at ``path`` after its cell that raised ``LEFT_OUT``, whose
    output becomes the error's message alone, and drop papermill's error cells."""
    nb = nbformat.read(path, as_version=4)
    cells = []
    for cell in nb.cells:
        if PAPERMILL_ERROR_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("ename") == LEFT_OUT]
        if errors:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=errors[0].evalue)]
            cells.append(cell)
            break
        cells.append(cell)
    nb.cells = cells
    nbformat.write(nb, path)


def _literal_path(path: Path) -> str:
    """``path`` as papermill takes it: papermill ``str.format``s its paths with the
    parameters, so braces in a directory name are doubled to stand for themselves."""
    return str(path).replace("{", "{{").replace("}", "}}")
