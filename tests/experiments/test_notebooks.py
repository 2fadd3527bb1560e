"""The notebook job: a failing cell fails the product with the cell's error, the executed
notebook kept as ``<stem>.failed.ipynb``, whatever the kernel's own log level."""

import nbformat
import pytest

from linmnist.experiments.notebooks import FAILED_SUFFIX, notebook_job
from linmnist.experiments.products import JobFailed

pytestmark = pytest.mark.integration


@pytest.fixture
def failing_notebook(tmp_path):
    parameters = nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]})
    cells = [parameters, nbformat.v4.new_code_cell("raise ValueError(f'boom {x}')")]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "linmnist",
        "display_name": "linmnist",
        "language": "python",
    }
    path = tmp_path / "failing.ipynb"
    nbformat.write(nb, path)
    return path


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
