"""The notebook job: a failing cell fails the product with the cell's error, the executed
notebook kept as ``<stem>.failed.ipynb``, whatever the kernel's own log level; a cell that
finds its task left out of the configuration ends the notebook with its one line; the kernel
runs in the kernel environment."""

import os

import nbformat
import pytest
from papermill import engines

from linmnist.experiments.notebooks import (
    FAILED_SUFFIX,
    KERNEL_ENVIRONMENT,
    LEFT_OUT,
    notebook_job,
)
from linmnist.experiments.products import JobFailed

pytestmark = pytest.mark.integration


def write_notebook(path, *cells):
    """A notebook of a parameters cell (``x = 1``) and ``cells`` (code, or Markdown when it
    starts with #), for the ``linmnist`` kernel."""
    parameters = nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]})
    new = {True: nbformat.v4.new_markdown_cell, False: nbformat.v4.new_code_cell}
    nb = nbformat.v4.new_notebook(cells=[parameters, *(new[c.startswith("#")](c) for c in cells)])
    nb.metadata["kernelspec"] = {
        "name": "linmnist",
        "display_name": "linmnist",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.fixture
def failing_notebook(tmp_path):
    return write_notebook(tmp_path / "failing.ipynb", "raise ValueError(f'boom {x}')")


def test_a_failing_cell_fails_the_job_with_its_error_and_keeps_the_notebook(
    failing_notebook, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    params = {"notebook": str(failing_notebook), "parameters": {"x": 7}}  # absolute: taken as is
    with pytest.raises(JobFailed, match=r"^ValueError: boom 7 \(notebook .*, cell \[3\]\)$") as e:
        notebook_job(params, out, "nb")
    assert e.value.keep == (f"nb{FAILED_SUFFIX}",)
    assert (out / f"nb{FAILED_SUFFIX}").is_file() and not (out / "nb.ipynb").exists()


def test_a_task_left_out_ends_the_notebook_with_its_line_and_the_product_is_made(tmp_path):
    """The cell raising LEFT_OUT keeps only the error's message as its output; the cells
    after it and papermill's error cells are dropped; no failed copy is kept."""
    source = write_notebook(
        tmp_path / "partial.ipynb",
        "print('before')",
        f"class {LEFT_OUT}(Exception):\n    pass\n\n\nprint('shown?')\n"
        f"raise {LEFT_OUT}('no [scaling] task')",
        "# A heading after",
        "print('after')",
    )
    out = tmp_path / "out"
    out.mkdir()
    made = notebook_job({"notebook": str(source), "parameters": {"x": 2}}, out, "nb")
    assert made == {"notebook": "nb.ipynb", "left_out": "no [scaling] task"}
    assert sorted(p.name for p in out.iterdir()) == ["nb.ipynb"]
    cells = nbformat.read(out / "nb.ipynb", as_version=4).cells
    assert [c.source.splitlines()[0] for c in cells] == [
        "x = 1", "# Parameters", "print('before')", f"class {LEFT_OUT}(Exception):"
    ]  # fmt: skip
    assert [o.get("text") for o in cells[-1].outputs] == ["no [scaling] task"]
    assert not any("papermill-error-cell-tag" in c.metadata.get("tags", []) for c in cells)


def test_the_kernel_runs_in_the_kernel_environment_and_the_job_restores_its_own(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    source = write_notebook(
        tmp_path / "env.ipynb", "import os\nprint(os.environ['NUMPY_MADVISE_HUGEPAGE'])"
    )
    out = tmp_path / "out"
    out.mkdir()
    notebook_job({"notebook": str(source), "parameters": {}}, out, "nb")
    printed = nbformat.read(out / "nb.ipynb", as_version=4).cells[-1].outputs[0]["text"]
    assert printed.strip() == KERNEL_ENVIRONMENT["NUMPY_MADVISE_HUGEPAGE"] == "0"
    assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "1"


def test_the_executed_notebook_is_written_when_it_starts_and_ends_only(tmp_path, monkeypatch):
    """Papermill's engine writes the notebook before and after each cell; the job's engine
    writes it twice whatever its length, and what it writes last holds every output."""
    written = []
    monkeypatch.setattr(engines, "write_ipynb", lambda nb, path: written.append(path))
    cells = [f"print({k})" for k in range(4)]
    source = write_notebook(tmp_path / "four.ipynb", "# Four cells", *cells)
    out = tmp_path / "out"
    out.mkdir()
    notebook_job({"notebook": str(source), "parameters": {}}, out, "nb")
    assert written == [str(out / "nb.ipynb")] * 2
    outputs = [c.outputs for c in nbformat.read(out / "nb.ipynb", as_version=4).cells[-4:]]
    assert [o[0]["text"] for o in outputs] == ["0\n", "1\n", "2\n", "3\n"]
