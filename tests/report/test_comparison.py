"""Tables and figures of the framework comparison, from a synthetic Comparison."""

import functools
import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from linmnist.experiments.comparison import RUNS, Comparison, Optimum, runs_frame
from linmnist.report.comparison import (
    STUDY_ITERATIONS,
    STUDY_REPORTED,
    STUDY_ROW,
    TABLE_RUNS,
    agreement,
    comparison_bars,
    comparison_curves,
    comparison_table,
    equivalence_table,
    final_metrics,
    overlay_curves,
    show_study,
    styled_table,
)
from linmnist.report.tables import DASH

LABELS = {
    "numpy": "numpy",
    "torch": "PyTorch",
    "keras": "Keras",
    "numpy64": "numpy (float64)",
    "torch64": "PyTorch (float64)",
    "study_torch": "PyTorch, bias, MSE, lr 0.01",
    "study_numpy": "numpy, bias, lr 0.002",
}


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """The cells of ``styled_table(table)`` as readers see them, indexed by implementation,
    with the headers readers see."""
    html = styled_table(table).to_html()
    rows = [
        re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)
        for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)
    ]
    return pd.DataFrame(rows[1:], columns=rows[0]).set_index("implementation")


def synthetic(dataset="mnist", status="ok") -> Comparison:
    """A Comparison as ``load_comparison`` returns it, with made-up numbers."""
    rows, histories = [], []
    for i, spec in enumerate(RUNS):
        study = spec.setting == "study"
        iterations, every = (20, 10) if study else (40, 10)
        its = [*range(0, iterations, every), iterations - 1]
        acc = 0.8 + 0.001 * i
        rows.append(
            {
                "run": spec.run,
                "label": LABELS[spec.run],
                "setting": spec.setting,
                "framework": spec.framework,
                "precision": spec.precision,
                "bias": study,
                "loss": "mse" if spec.run == "study_torch" else "quadratic",
                "lr": 0.01 if spec.run == "study_torch" else (0.002 if study else 0.001),
                "batch_size": 1000 if study else 100,
                "iterations": iterations,
                "eval_every": every,
                "seed": 0,
                "reference": spec.reference,
                "final_iteration": its[-1],
                "final_train_loss": 0.25 + 0.001 * i,
                "final_train_acc": acc,
                "final_test_acc": acc + 0.01,
                "diverged_at": None,
                "max_abs_dW": 0.0 if spec.reference is None else 10.0 ** -(6 + i),
                "evaluations": len(its),
                "differing": int(spec.run == "keras"),
                "train_samples": int(spec.run == "keras"),
                "test_samples": 0,
                "max_loss_rel": 0.0 if spec.reference is None else 1e-7,
                "step_seconds": 0.01 * (i + 1),
                "run_seconds": 0.1 * (i + 1),
            }
        )
        histories.append(
            pd.DataFrame(
                {
                    "run": spec.run,
                    "iteration": its,
                    "train_loss": np.linspace(0.5, 0.25 + 0.001 * i, len(its)),
                    "train_acc": np.linspace(0.3, acc, len(its)),
                    "test_acc": np.linspace(0.3, acc + 0.01, len(its)),
                }
            )
        )
    return Comparison(
        runs=runs_frame(rows),
        histories=pd.concat(histories, ignore_index=True),
        optimum=Optimum(0.1955, 0.8577, 0.8534),
        optimum_bias=Optimum(0.1949, 0.8583, 0.8536),
        params={"dataset": dataset, "lr": 0.001, "batch_size": 100},
        n_train=60000,
        n_test=10000,
        versions={"numpy": "2", "torch": "2", "keras": "3"},
        status=status,
    )


def test_equivalence_table_lists_the_framework_runs_against_numpy():
    comparison = synthetic()
    table = equivalence_table(comparison)
    assert list(table.index) == ["PyTorch", "Keras", "PyTorch (float64)"]
    assert table.loc["Keras", "differing"] == 1 and table.loc["Keras", "evaluations"] == 5
    assert table.loc["PyTorch (float64)", "precision"] == "float64"
    assert table.loc["PyTorch", "max_abs_dW"] == pytest.approx(1e-7)
    study = equivalence_table(comparison, "study")
    assert list(study.index) == ["PyTorch, bias, MSE, lr 0.01"]
    cells = shown(table)
    assert cells.loc["PyTorch", "largest weight difference from numpy"] == "1.0 × 10⁻⁷"
    assert cells.loc["Keras", "largest difference (training samples)"] == "1"
    assert cells.loc["PyTorch", "largest relative difference of the loss"] == "1.0 × 10⁻⁷"


@pytest.mark.parametrize(("dataset", "study_row"), [("mnist", True), ("fashion-mnist", False)])
def test_final_metrics_end_with_the_optimum_and_on_mnist_the_study(dataset, study_row):
    comparison = synthetic(dataset)
    task2 = final_metrics(comparison)
    assert list(task2.index) == ["numpy", "PyTorch", "Keras", "closed-form optimum"]
    assert task2.loc["Keras", "train_acc"] == pytest.approx(80.2)
    assert task2.loc["closed-form optimum", "train_loss"] == 0.1955
    assert list(final_metrics(comparison, precision="float64").index)[:2] == [
        "numpy (float64)",
        "PyTorch (float64)",
    ]
    study = final_metrics(comparison, "study")
    expected = ["PyTorch, bias, MSE, lr 0.01", "numpy, bias, lr 0.002", "closed-form optimum, bias"]
    assert list(study.index) == expected + [STUDY_ROW] * study_row
    assert study.loc["closed-form optimum, bias", "test_acc"] == pytest.approx(85.36)
    # Each row says after how many updates its values come: ours, and none for the optimum.
    assert study.loc["numpy, bias, lr 0.002", "iterations"] == 20
    assert pd.isna(study.loc["closed-form optimum, bias", "iterations"])
    if study_row:
        assert study.loc[STUDY_ROW, "train_acc"] == pytest.approx(100 * STUDY_REPORTED["train_acc"])
        assert study.loc[STUDY_ROW, "iterations"] == STUDY_ITERATIONS == 50_000
        assert math.isnan(study.loc[STUDY_ROW, "train_loss"])
        assert shown(study).loc[STUDY_ROW].tolist() == ["50,000", DASH, "85.81 %", "85.73 %"]
    assert show_study(comparison) is study_row
    assert show_study(comparison, study=False) is False


def test_comparison_table_has_one_row_per_implementation_with_timings():
    comparison = synthetic()
    table = comparison_table(comparison)
    assert list(table.index) == [*[LABELS[r] for r in TABLE_RUNS], STUDY_ROW]
    assert list(table.columns) == [
        "batch_size", "iterations", "train_acc", "test_acc", "train_loss", "max_abs_dW",
        "diverged_at", "step_s_per_1000", "run_s_per_1000",
    ]  # fmt: skip
    assert table.loc["PyTorch", "test_acc"] == pytest.approx(81.1)
    assert table.loc["PyTorch", "step_s_per_1000"] == pytest.approx(1000 * 0.02 / 40)
    assert table.loc["numpy, bias, lr 0.002", "run_s_per_1000"] == pytest.approx(1000 * 0.7 / 20)
    assert table.loc["numpy", "max_abs_dW"] == 0
    assert table["diverged_at"].dtype == "Int64" and table["diverged_at"].isna().all()
    assert table.loc[STUDY_ROW, "train_acc"] == pytest.approx(85.81)
    assert table.loc[STUDY_ROW, ["batch_size", "iterations"]].tolist() == [1000, 50_000]
    assert table.loc["PyTorch", ["batch_size", "iterations"]].tolist() == [100, 40]
    assert np.isnan(table.loc[STUDY_ROW, "step_s_per_1000"])
    cells = shown(table)
    assert "diverged at iteration" not in cells.columns  # no run diverged
    assert cells.loc["numpy", "largest weight difference from numpy"] == "0"
    assert cells.loc["PyTorch", "final training loss"] == "0.2510"
    assert cells.loc["PyTorch", "updates alone (s per 1,000)"] == "0.500"
    assert cells.loc[STUDY_ROW, "updates"] == "50,000"
    assert cells.loc[STUDY_ROW, "updates alone (s per 1,000)"] == DASH
    assert STUDY_ROW not in comparison_table(synthetic("fashion-mnist")).index
    assert list(comparison_table(comparison, runs=["keras"], study=False).index) == ["Keras"]
    with pytest.raises(ValueError, match="runs must be among"):
        comparison_table(comparison, runs=["jax"])


BARS_TITLE = "Task 6: final accuracy, agreement with numpy and time per 1,000 updates (MNIST)"


@pytest.fixture(scope="module")
def drawn():
    """``drawn(kind)``: the figure of ``synthetic()`` of that kind ("task2" and "study": its
    curves, "bars": its bar chart) with its drawn texts (``_texts``), made once in the module
    for the tests that only read them."""

    @functools.cache
    def draw(kind: str):
        comparison = synthetic()
        if kind == "bars":
            fig = comparison_bars(comparison_table(comparison), title=BARS_TITLE)
        else:
            fig = comparison_curves(comparison, kind)
        return fig, _texts(fig)

    return draw


def test_figures_are_built_from_the_comparison(drawn):
    comparison = synthetic()
    curves, _ = drawn("task2")
    assert [len(ax.lines) for ax in curves.axes] == [4, 4, 4]  # 3 runs and the optimum
    assert "lr = 0.001" in curves._suptitle.get_text()
    legend = [t.get_text() for t in curves.legends[0].get_texts()]
    assert legend == ["numpy", "PyTorch", "Keras", "closed-form optimum"]
    assert "0.1955" in [t.get_text() for t in curves.axes[0].texts]
    study = comparison_curves(comparison, "study", title="the study")
    assert [len(ax.lines) for ax in study.axes] == [3, 3, 3]
    assert study.axes[2].lines[-1].get_ydata()[0] == pytest.approx(85.36)
    assert study._suptitle.get_text() == "the study"
    bare = overlay_curves({"a": comparison.history("numpy")}, title="t")
    assert [len(ax.lines) for ax in bare.axes] == [1, 1, 1]
    study_legend = [t.get_text() for t in study.legends[0].get_texts()]
    assert study_legend[-1] == "closed-form optimum, bias"


def _texts(fig):
    """The drawn texts of ``fig`` with their boxes in pixels: tick labels inside the view,
    axis labels, titles, annotations, legends and the title."""
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    items = []
    for ax in fig.axes:
        x0, x1 = sorted(ax.get_xlim())
        y0, y1 = sorted(ax.get_ylim())
        items += [t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1]
        items += [t for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1]
        items += [ax.xaxis.label, ax.yaxis.label, ax.title, *ax.texts]
        items += [ax.get_legend()] if ax.get_legend() else []
    items += [*fig.legends, fig._suptitle]
    shown = [t for t in items if t.get_visible() and (not hasattr(t, "get_text") or t.get_text())]
    return [(t, t.get_window_extent(renderer)) for t in shown]


@pytest.mark.parametrize("kind", ["bars", "task2", "study"])
def test_no_text_of_a_figure_collides_with_another_or_leaves_it(drawn, kind):
    fig, texts = drawn(kind)
    collisions = [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(texts, 2)
                  if box_a.overlaps(box_b)]  # fmt: skip
    assert collisions == []
    assert all(fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)
               for _, box in texts)  # fmt: skip
    assert all(len(line) <= 92 for line in fig._suptitle.get_text().splitlines())


def test_the_optimum_values_are_written_inside_their_panels(drawn):
    curves, texts = drawn("task2")
    for (label, box), ax in zip(
        ((t, b) for t, b in texts if t in [x for a in curves.axes for x in a.texts]),
        curves.axes,
        strict=True,
    ):
        assert ax.bbox.contains(box.x0, box.y0) and ax.bbox.contains(box.x1, box.y1), label


def test_the_bar_chart_starts_at_zero_and_names_each_rows_updates(drawn):
    bars, _ = drawn("bars")
    accuracy, difference, time = bars.axes
    assert (len(accuracy.patches), len(time.patches)) == (12, 5)  # 6 rows x 2; 5 timed rows
    assert accuracy.get_xlim()[0] == 0 and time.get_xlim()[0] == 0
    assert accuracy.get_xlim()[1] >= 100
    # Horizontal bars: the names are horizontal, first row at the top.
    labels = accuracy.get_yticklabels()
    assert {t.get_rotation() for t in labels} == {0.0}
    names = [t.get_text() for t in sorted(labels, key=lambda t: -t.get_position()[1])]
    assert names[0] == "numpy\n40 updates of 100"
    assert names[-1] == "study (reported)\n50,000 updates of 1000"
    # The weight differences on a log axis, one dot per framework run (not numpy, not the study).
    assert difference.get_xscale() == "log"
    assert len(difference.lines[0].get_xdata()) == 3
    assert sum(t.get_text() == "numpy: reference" for t in difference.texts) == 2
    # Fashion-MNIST: no study row, so no 50,000 updates anywhere in the figure.
    fashion = comparison_bars(comparison_table(synthetic("fashion-mnist")), title="t")
    rows = [t.get_text() for t in fashion.axes[0].get_yticklabels()]
    assert len(rows) == 5 and not any("study" in r or "50,000" in r for r in rows)


def test_agreement_quotes_the_largest_differences_from_numpy():
    assert agreement(synthetic()) == {
        "float32_dW": pytest.approx(1e-7),  # PyTorch, run 1 of RUNS
        "float64_dW": pytest.approx(1e-10),  # PyTorch float64, run 4
        "study_dW": pytest.approx(1e-11),  # the study's PyTorch setting, run 5
        "evaluations": 5,
        "differing": 1,  # Keras
        "samples": 1,
    }


def test_a_failed_comparison_is_refused_with_its_error():
    failed = synthetic(status="failed")
    failed.error = "RuntimeError: boom"
    for make in (equivalence_table, final_metrics, comparison_table, comparison_curves):
        with pytest.raises(ValueError, match="the framework comparison failed: RuntimeError: boom"):
            make(failed)
