"""The DAG of a build: every product, in dependency order, each build in its own directory."""

import dataclasses

import pytest

from linmnist.engine.validation import UsageError
from linmnist.experiments.jobs import make_product
from linmnist.experiments.paths import NOTEBOOKS, REPORTS
from linmnist.experiments.runner import assess, check_pipeline, own_inputs
from linmnist.report.pipeline import pipeline


def test_the_small_pipeline_holds_every_product_in_dependency_order():
    products = pipeline("mnist", "small")
    check_pipeline(products)
    names = [p.name for p in products]
    groups = {p.group for p in products}
    assert groups == {
        "grid", "subset", "stability", "lockstep", "edge", "frameworks", "scaling", "theory",
        "sizes", "notebooks", "report",
    }  # fmt: skip
    notebooks = sorted(f"notebooks/{path.stem}" for path in NOTEBOOKS.glob("*.ipynb"))
    assert sorted(n for n in names if n.startswith("notebooks/")) == notebooks
    by_name = {p.name: p for p in products}
    assert set(by_name["report"].upstream) == set(notebooks)
    assert by_name["notebooks/01_data"].upstream == ()
    assert {u.split("/")[0] for u in by_name["notebooks/02_baseline"].upstream} == {
        "grid",
        "theory",
    }
    assert by_name["notebooks/06_frameworks"].upstream == ("frameworks",)
    # The sweep's cells, the edge cells and the predictions.
    assert len(by_name["notebooks/07_stability"].upstream) == 4 + 2 + 3
    reads = {u.split("/")[0] for u in by_name["notebooks/08_scaling_law"].upstream}
    assert reads == {"scaling", "grid", "stability"}


def test_each_build_has_its_own_directory():
    def directories(dataset, profile):
        return {p.directory for p in pipeline(dataset, profile)}

    study = directories("mnist", None)
    small = directories("mnist", "small")
    fashion = directories("fashion-mnist", "small")
    assert REPORTS in study and (REPORTS / "results" / "grid") in study
    assert all(d.is_relative_to(REPORTS / "mnist" / "small") for d in small)
    assert all(d.is_relative_to(REPORTS / "fashion-mnist" / "small") for d in fashion)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "cifar"}, "dataset must be one of mnist, fashion-mnist"),
        ({"profile": "huge"}, "profile must be one of small, fidelity"),
    ],
)
def test_a_wrong_build_is_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        pipeline(**kwargs)


@pytest.mark.parametrize("emptied", ["report.html", "report.pdf"])
def test_an_emptied_report_file_makes_the_report_stale(tmp_path, emptied):
    """The report's own files are verified like any product's (made here by a stand-in job)."""
    report = next(p for p in pipeline("mnist", "small") if p.name == "report")
    assert {"report.html", "report.pdf"} <= set(report.outputs)
    made = dataclasses.replace(
        report,
        directory=tmp_path,
        upstream=(),
        job="experiments.toy_jobs:write_files",
        params={"files": list(report.outputs)},
    )
    make_product(made, own_inputs(made, {}))
    assert assess([made], digests={})["report"].state == "up to date"
    (tmp_path / emptied).write_bytes(b"")
    state = assess([made], digests={})["report"]
    assert (state.state, state.reasons) == ("stale", (f"output changed: {tmp_path / emptied}",))
