"""Narrative: each discussion rendered from its facts, quoting their numbers."""

import re

import numpy as np
import pandas as pd
import pytest

from linmnist.experiments import results
from linmnist.experiments.paths import TEMPLATES
from linmnist.report import facts, narrative, tables

from .test_tables import BOUNDS, seeds_frame, write_runs


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return write_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def grid(runs_dir):
    return tables.grid_table(results.load_task(runs_dir, "grid"))


@pytest.fixture(scope="module")
def subset(runs_dir):
    return tables.subset_table(results.load_task(runs_dir, "subset"))


def numbers(text):
    return set(re.findall(r"\d+\.\d+", text))


def batch_text(grid, **kwargs):
    kwargs = {"lr_max": 0.0525, "lambda_max": 38.09, "n_train": 60000} | kwargs
    return narrative.render("batch_size", facts.batch_size_facts(grid, **kwargs))


def test_title_scope_and_data_name_the_dataset():
    """The title and scope name the dataset and say whether the study's figures appear; the
    data description quotes the sizes, the image shape, the labels and X's shape."""
    fashion, mnist = facts.scope_facts("fashion-mnist"), facts.scope_facts("mnist")
    assert narrative.title(fashion).startswith("linmnist — a linear Fashion-MNIST")
    assert "not shown here" in narrative.render("scope", fashion)
    assert "computed on Fashion-MNIST." in narrative.scope(fashion)
    assert "stand beside ours" in narrative.render("scope", mnist)
    assert "handwritten digits 0–9" in narrative.scope(mnist)
    data = facts.data_facts("fashion-mnist", n_train=60000, n_test=10000, image_shape=(28, 28))
    text = narrative.render("data", data)
    assert text.startswith("Fashion-MNIST: 60,000 training and 10,000 test images of 28 × 28")
    assert "7: Sneaker, 8: Bag, 9: Ankle boot." in text
    assert "$X \\in [0, 1]^{784 \\times N}$" in text and "\n" not in text


def test_batch_size_discussion_quotes_the_grid(grid):
    """Threshold, divergence per lr, accuracies, the single-sample factor, samples seen and the
    best learning rates, every number from the facts; timings are left to the cost text; the
    text changes with the results."""
    text = batch_text(grid, curvature=(87.8, 295.1))
    assert "every one of its 12 runs diverged, at iteration 3-5" in text
    assert "2/\\lambda_{\\max} = 0.0525" in text
    assert "lr = 0.01 is below the threshold ($|1 - \\eta\\,\\lambda_{\\max}| = 0.62$)" in text
    row = grid[(grid["lr"] == 0.001) & (grid["batch_size"] == 1)].iloc[0]
    assert f"{100 * row['final_test_acc_mean']:.2f}" in text
    assert "batch size 1000 sees 50,000 samples (0.833 epochs)" in text
    assert "0.12 for a typical image and -1.95 for the largest one: a step" in text
    assert "we agree on 2 of 4 batch sizes" in text
    assert " s at batch size" not in text, "timings are in the cost text"
    assert [p.split(".**")[0] for p in text.split("\n\n")] == [
        "**Stability",
        "**Noise",
        "**Batch size 1",
        "**Data seen",
        "**Best learning rate",
    ]
    shifted = grid.assign(final_test_acc_mean=grid["final_test_acc_mean"] + 0.001)
    assert numbers(batch_text(shifted)) != numbers(text), "the text follows the results"


def test_batch_size_discussion_branches_on_the_facts(grid):
    """Some runs diverging, a single-sample factor in (-1, 0) or positive, and no study: the
    template picks the sentence."""
    some = grid.assign(
        n_diverged=grid["n_diverged"].where(~((grid["lr"] == 0.1) & (grid["batch_size"] == 10)), 1)
    )
    assert "; 10 of its 12 runs diverged" in batch_text(some)
    assert "overshoot along their own sample." in batch_text(grid, curvature=(87.8, 150.0))
    assert "every single-sample step shrinks" in batch_text(grid, curvature=(10.0, 20.0))
    text = batch_text(grid, lr_max=0.05, lambda_max=40.0, study=False)
    assert "The study" not in text and "claimed" not in text
    assert "The study, which picked" in batch_text(grid, lr_max=0.05, lambda_max=40.0)


def test_cost_discussion_compares_fidelity_and_thinned_runs(grid):
    """Seconds per batch size at the study's fidelity and thinned, against the study's time;
    on another dataset the study's time is named as MNIST's; nothing timed, nothing quoted."""
    text = narrative.render("cost", facts.cost_facts(grid))
    assert "A run of 50 iterations evaluated after every iteration" in text
    assert "took 6.0 s at batch size 1, 6.0 s at batch size 10" in text
    assert "7.0 s at batch size 1000 (mean over learning rates), against about 350 s" in text
    assert "every few iterations took 1.0 s at batch size 1," in text
    assert "(on MNIST, of the same size)" in narrative.cost(facts.cost_facts(grid, study=False))
    untimed = facts.cost_facts(grid.assign(seconds_fidelity=np.nan))
    assert narrative.cost(untimed).startswith("No run was timed")


def test_subset_discussion_states_the_gap(subset):
    """Accuracies and gap per N', the weight count, and whether the gap shrinks."""
    text = narrative.render("subset", facts.subset_facts(subset, n_features=784, n_classes=10))
    assert "After 50 iterations (mean over seeds): N' = 100: " in text
    assert "The model has 7,840 weights" in text
    assert "fitted to 1,000 target values" in text
    assert "The train-test gap shrinks from" in text
    assert "+3.33 points at N' = 10000" in text
    assert "More training images" in text
    grows = subset.assign(gap_mean=subset["gap_mean"].to_numpy()[::-1])
    text = narrative.subset(facts.subset_facts(grows, n_features=784, n_classes=10))
    assert "does not shrink" in text and "More training images" not in text
    none = facts.subset_facts(subset.assign(gap_mean=np.nan), n_features=784, n_classes=10)
    assert narrative.subset(none) == "No Task 5 run finished, so there is nothing to discuss."


def test_stability_discussion_quotes_the_bounds_the_boundary_and_the_study_lrs():
    """Every number of the text comes from the bounds and the sweep: each boundary interval,
    the bounds it contains, a stable lr whose runs end above the loss of W = 0, and the
    study's learning rates as multiples of the bounds with their outcomes."""
    table = tables.accuracy_table(seeds_frame())
    text = narrative.render("stability", facts.stability_facts(table, BOUNDS, iterations=1000))
    assert "= 0.0500" in text and "= 40.00" in text and "mean 100.0" in text
    assert "maximum 400.0" in text and "= 0.0050" in text and "= 0.0200" in text
    assert "Observed within 1000 iterations" in text
    assert (
        "- batch size 1: stable up to lr = 0.01; 1/3 seeds diverge at lr = 0.0316 (from "
        "iteration 41). The boundary lies in (0.01, 0.0316], which contains "
        "$2/\\mathrm{mean} \\lVert x \\rVert^2$ = 0.0200; it is 2.0-6.3 × " in text
    )
    assert "(0.0316, 0.1], which contains $2/\\lambda_{\\max}$ = 0.0500" not in text
    assert "- batch size 10: no run diverged, up to lr = 0.1 (2.00 × " in text
    assert "- batch size 100: 3/3 seeds diverge already at the sweep's smallest lr, 0.001." in text
    assert "(0.001, 0.01], which contains $2/\\max \\lVert x \\rVert^2$ = 0.0050" in text
    assert "lr = 0.1 is 2.00 × $2/\\lambda_{\\max}$ and 5.00 × " in text
    assert "batch size 10: 84.67 %" in text
    assert "batch size 1000: 85.00 % (1/3 diverged)." in text
    lines = text.split("\n")
    assert sum(line.startswith("- batch size") for line in lines) == 4
    assert sum(line.startswith("- lr = ") for line in lines) == 3
    lossy = seeds_frame({(1, 0.001): [0.2, 0.3], (1, 0.002): [None, None]})
    lossy.loc[lossy["lr"] == 0.001, "final_train_loss"] = [2.0, 3.0]
    stab = facts.stability_facts(tables.accuracy_table(lossy), BOUNDS, iterations=500)
    text = narrative.stability(stab)
    assert "(0.001, 0.002], which contains none of the three" in text
    assert "At lr = 0.001 the runs do not blow up but end at a training loss of 2.50" in text
    assert "above the 0.5 of W = 0." in text
    assert "lr = 0.01 is 0.20 × $2/\\lambda_{\\max}$" in text  # not in this sweep
    assert "batch size 1: not in the sweep" in text


def test_sweep_cost_quotes_the_logged_run():
    """The measured wall time, executor and jobs come from the run's log line."""
    run = pd.Series(
        {
            "executor": "local",
            "jobs": 2,
            "threads_per_job": 1,
            "cores": 2,
            "wall_seconds": 612.0,
            "finished": pd.Timestamp("2026-01-02 03:04", tz="UTC"),
        }
    )
    text = narrative.render("sweep_cost", facts.sweep_cost_facts(run, cells=84, runs=252))
    assert text.startswith("The sweep's 84 cells (252 training runs) took 10.2 minutes")
    assert "(612 s) with the local executor, 2 job(s) of 1 BLAS thread(s)" in text
    assert "2 cores available (run finished 2026-01-02 03:04 UTC)" in text
    dask = facts.sweep_cost_facts(run.replace("local", "dask"), cells=84, runs=252)
    assert "with a Dask cluster," in narrative.sweep_cost(dask)
    none = narrative.sweep_cost(facts.sweep_cost_facts(None, cells=84, runs=252))
    assert none.startswith("No single logged run computed all 84 cells")


def test_render_refuses_an_unknown_template_or_the_wrong_facts():
    """A template name outside TEMPLATES, or facts of another kind, is refused by name."""
    with pytest.raises(ValueError, match="name must be one of"):
        narrative.render("nope", facts.scope_facts("mnist"))
    with pytest.raises(ValueError, match="renders BatchSizeFacts, got ScopeFacts"):
        narrative.render("batch_size", facts.scope_facts("mnist"))


def test_every_template_has_its_facts():
    """Each registered template exists, and each template file is registered (or a partial)."""
    files = {p.name.removesuffix(".md.j2") for p in TEMPLATES.glob("*.md.j2")}
    assert set(narrative.TEMPLATES) == {f for f in files if not f.startswith("_")}


def test_reflow_joins_paragraph_lines_and_keeps_list_items():
    """Lines of a paragraph join with single spaces, list items keep their lines, blank lines
    (however many) become one."""
    text = "  a\nb  \n\n\n\nc:\n\n- d\ne\n- f\n"
    assert narrative.reflow(text) == "a b\n\nc:\n\n- d e\n- f"


def test_number_filters():
    """The filters format numbers as the report writes them, a dash where one is missing."""
    assert narrative.lr_text(0.0316) == "0.0316" and narrative.lr_text(None) == "–"
    assert narrative.fixed(2.809, 2) == "2.81" and narrative.fixed(float("nan"), 2) == "–"
    assert narrative.sig(50000 / 60000) == "0.833" and narrative.count(50000) == "50,000"
    assert narrative.points(0.0333) == "3.33" and narrative.points(0.0333, signed=True) == "+3.33"


HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "a `code` *em* _u_ [link](javascript:alert(1)) # h",
    "$x$ and $$y$$ & &amp; \"q\" 'q' {} \\ | ~ !",
    "<script>alert('x')</script>",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_literal_renders_any_text_literally_and_runs_nothing(text):
    """Through nbconvert's Markdown renderer, the escaped text is exactly the text, as text."""
    from html.parser import HTMLParser

    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    rendered = markdown2html_mistune(narrative.markdown_literal(text))

    class Text(HTMLParser):
        tags: list[str] = []
        data = ""

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)

        def handle_data(self, data):
            self.data += data

    parser = Text(convert_charrefs=True)
    parser.feed(rendered)
    assert parser.data.strip() == text
    assert set(parser.tags) <= {"p"}


def test_markdown_literal_shows_a_newline_as_an_escape_on_one_line():
    assert narrative.markdown_literal("a\nb\tc") == "a\\\\nb\\\\tc"
