"""The job of a task notebook: execute it with papermill into ``<stem>.ipynb``.

Notebooks only read results; the runner executes them once their upstream products are
made, with kernel ``linmnist``, in ``notebooks/`` (so relative paths in them work as in
JupyterLab). A notebook whose cell fails is kept as ``<stem>.failed.ipynb``, its failing cell
marked by papermill, and the product is recorded as failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
        failed = out / f"{stem}{FAILED_SUFFIX}"
        target.replace(failed)
        raise JobFailed(
            f"{exc.ename}: {exc.evalue} (notebook {source.name}, cell [{exc.exec_count}])",
            keep=[failed.name],
        ) from None
    return {"notebook": target.name}


def _literal_path(path: Path) -> str:
    """``path`` as papermill takes it: papermill ``str.format``s its paths with the
    parameters, so braces in a directory name are doubled to stand for themselves."""
    return str(path).replace("{", "{{").replace("}", "}}")
