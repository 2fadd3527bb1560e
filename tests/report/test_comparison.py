"""Tables and figures of the framework comparison, from a synthetic Comparison."""

import math

import numpy as np
import pandas as pd
import pytest

from linmnist.experiments.comparison import RUNS, Comparison, Optimum, runs_frame
from linmnist.report.comparison import (
    STUDY_REPORTED,
    STUDY_ROW,
    TABLE_RUNS,
    comparison_bars,
    comparison_curves,
    comparison_table,
    equivalence_table,
    final_metrics,
    format_table,
    overlay_curves,
    show_study,
)

LABELS = {
    "numpy": "numpy",
    "torch": "PyTorch",
    "keras": "Keras",
    "numpy64": "numpy (float64)",
    "torch64": "PyTorch (float64)",
    "study_torch": "PyTorch, bias, MSE, lr 0.01",
    "study_numpy": "numpy, bias, lr 0.002",
}


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
    shown = format_table(table)
    assert shown.loc["PyTorch", "max_abs_dW"] == "1e-07"
    assert (
        shown.loc["Keras", "train_samples"] == "1"
        and shown.loc["PyTorch", "max_loss_rel"] == "1e-07"
    )


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
    if study_row:
        assert study.loc[STUDY_ROW, "train_acc"] == pytest.approx(100 * STUDY_REPORTED["train_acc"])
        assert math.isnan(study.loc[STUDY_ROW, "train_loss"])
        assert format_table(study).loc[STUDY_ROW].tolist() == ["", "85.81", "85.73"]
    assert show_study(comparison) is study_row
    assert show_study(comparison, study=False) is False


def test_comparison_table_has_one_row_per_implementation_with_timings():
    comparison = synthetic()
    table = comparison_table(comparison)
    assert list(table.index) == [*[LABELS[r] for r in TABLE_RUNS], STUDY_ROW]
    assert list(table.columns) == [
        "train_acc", "test_acc", "train_loss", "max_abs_dW", "diverged_at", "step_s_per_1000",
        "run_s_per_1000",
    ]  # fmt: skip
    assert table.loc["PyTorch", "test_acc"] == pytest.approx(81.1)
    assert table.loc["PyTorch", "step_s_per_1000"] == pytest.approx(1000 * 0.02 / 40)
    assert table.loc["numpy, bias, lr 0.002", "run_s_per_1000"] == pytest.approx(1000 * 0.7 / 20)
    assert table.loc["numpy", "max_abs_dW"] == 0
    assert table["diverged_at"].dtype == "Int64" and table["diverged_at"].isna().all()
    assert table.loc[STUDY_ROW, "train_acc"] == pytest.approx(85.81)
    assert np.isnan(table.loc[STUDY_ROW, "step_s_per_1000"])
    shown = format_table(table)
    assert shown.loc["numpy", "max_abs_dW"] == "0"
    assert shown.loc["PyTorch", "train_loss"] == "0.2510"
    assert shown.loc["PyTorch", "step_s_per_1000"] == "0.500"
    assert (
        shown.loc[STUDY_ROW, "diverged_at"] == "" and shown.loc[STUDY_ROW, "step_s_per_1000"] == ""
    )
    assert STUDY_ROW not in comparison_table(synthetic("fashion-mnist")).index
    assert list(comparison_table(comparison, runs=["keras"], study=False).index) == ["Keras"]
    with pytest.raises(ValueError, match="runs must be among"):
        comparison_table(comparison, runs=["jax"])


def test_figures_are_built_from_the_comparison():
    comparison = synthetic()
    curves = comparison_curves(comparison)
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
    bars = comparison_bars(comparison_table(comparison), title="t")
    assert [len(ax.patches) for ax in bars.axes] == [12, 5]  # 6 rows x 2; 5 timed rows


def test_a_failed_comparison_is_refused_with_its_error():
    failed = synthetic(status="failed")
    failed.error = "RuntimeError: boom"
    for make in (equivalence_table, final_metrics, comparison_table, comparison_curves):
        with pytest.raises(ValueError, match="the framework comparison failed: RuntimeError: boom"):
            make(failed)
