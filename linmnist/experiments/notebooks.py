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

from pathlib import Path
from typing import Any

import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError

from linmnist.experiments.paths import ROOT
from linmnist.experiments.products import JobFailed

KERNEL_NAME = "linmnist"
# The kernel process logs nothing: its start-up warning (that a local TCP connection is not
# encrypted) and its shut-down noise would otherwise fill every run's output. A cell's error
# reaches the notebook and the run through the kernel's messages, not this log.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
FAILED_SUFFIX = ".failed.ipynb"
# The error (by class name: it is raised in the kernel) that leaves the rest of a notebook out.
LEFT_OUT = "TaskNotConfigured"
# The cells papermill adds to a notebook whose cell failed.
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"


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
        papermill.execute_notebook(
            _literal_path(source),
            _literal_path(target),
            parameters=params["parameters"],
            kernel_name=KERNEL_NAME,
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
