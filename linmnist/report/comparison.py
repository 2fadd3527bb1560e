"""Tables and figures of the framework comparison (Task 6), from a ``Comparison``
(``read_comparison``). Accuracies are fractions in a ``Comparison``, percentages in tables and
on axes. The study's reported figures (``STUDY_REPORTED``) appear beside MNIST results only,
with their own number of updates (``STUDY_ITERATIONS``).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from linmnist.experiments.comparison import STEM, Comparison, load_comparison
from linmnist.experiments.paths import results_dir
from linmnist.report.figures import LEGEND_SIZE, PRINT_WIDTH, REFERENCE_STYLE
from linmnist.report.inputs import require_results
from linmnist.report.study import is_study_dataset
from linmnist.report.tables import scientific, styled

# Task 6 of the study: its PyTorch run (bias, nn.MSELoss, its own 80/20 split), as fractions.
STUDY_REPORTED = {"train_acc": 0.8581, "test_acc": 0.8573}
# Updates the study's PyTorch run made before those figures: 50 epochs of 1,000 batches of 1000.
STUDY_ITERATIONS = 50_000
STUDY_BATCH_SIZE = 1000
STUDY_ROW = "study (reported)"
# The runs of the Task 6 table, in order: float32 on identical batches, then the study setting.
TABLE_RUNS = ("numpy", "torch", "keras", "study_torch", "study_numpy")
OPTIMUM_ROWS = {"task2": "closed-form optimum", "study": "closed-form optimum, bias"}
SETTING_TITLES = {
    "task2": "Task 2 configuration on identical batches",
    "study": "The study's PyTorch setting and numpy on the same batches",
}
# The headers readers see, with units, and how each column is written.
HEADERS = {
    "implementation": "implementation",
    "precision": "precision",
    "batch_size": "batch size",
    "iterations": "updates",
    "train_acc": "final train accuracy",
    "test_acc": "final test accuracy",
    "train_loss": "final training loss",
    "max_abs_dW": "largest weight difference from numpy",
    "diverged_at": "diverged at iteration",
    "step_s_per_1000": "updates alone (s per 1,000)",
    "run_s_per_1000": "whole run with evaluation (s per 1,000)",
    "evaluations": "iterations evaluated",
    "differing": "iterations whose accuracy differs",
    "train_samples": "largest difference (training samples)",
    "test_samples": "largest difference (test samples)",
    "max_loss_rel": "largest relative difference of the loss",
}
DISPLAY = {
    "train_acc": lambda v: f"{v:.2f} %",
    "test_acc": lambda v: f"{v:.2f} %",
    "train_loss": lambda v: f"{v:.4f}",
    "max_abs_dW": scientific,
    "max_loss_rel": scientific,
    "diverged_at": lambda v: f"{int(v)}",
    "iterations": lambda v: f"{int(v):,}",
    "batch_size": lambda v: f"{int(v)}",
    "step_s_per_1000": lambda v: f"{v:.3f}",
    "run_s_per_1000": lambda v: f"{v:.2f}",
}
# Line styles of overlaid runs: wide to narrow, so coinciding curves all show.
_STYLES: list[dict[str, Any]] = [
    {"linewidth": 3.0, "alpha": 0.45},
    {"linewidth": 1.6, "linestyle": "--"},
    {"linewidth": 1.0, "linestyle": ":", "color": "k"},
    {"linewidth": 0.8, "linestyle": "-."},
]


def read_comparison(
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | None = None,
    build: str | None = None,
) -> Comparison:
    """The framework comparison of a build, or ``MissingResults`` naming the command."""
    records = {f"{STEM}/{STEM}": "the framework comparison's results"}
    path = require_results(
        records, dataset=dataset, profile=profile, config=config, build=build, target=STEM
    )
    directory = results_dir(path) / STEM
    comparison = load_comparison(directory)
    if not comparison.ok:
        raise RuntimeError(f"the framework comparison failed: {comparison.error}")
    if comparison.dataset != dataset:
        raise ValueError(f"{directory} holds a comparison on {comparison.dataset}, not {dataset}")
    return comparison


def _check(comparison: Comparison) -> None:
    if not comparison.ok:
        raise ValueError(f"the framework comparison failed: {comparison.error}")


def show_study(comparison: Comparison, study: bool | None = None) -> bool:
    """Whether the study's figures go beside ``comparison``: ``study``, else on MNIST."""
    if study is not None:
        return study
    return comparison.dataset is not None and is_study_dataset(comparison.dataset)


def _runs(comparison: Comparison, runs: Sequence[str]) -> pd.DataFrame:
    unknown = [r for r in runs if r not in comparison.runs.index]
    if unknown:
        raise ValueError(f"runs must be among {list(comparison.runs.index)}, got {unknown}")
    return comparison.runs.loc[list(runs)]


def equivalence_table(comparison: Comparison, setting: str = "task2") -> pd.DataFrame:
    """How far each run of ``setting`` is from its numpy run (``compare_runs``)."""
    _check(comparison)
    rows = comparison.select(setting)
    rows = rows[rows["reference"].notna()]
    columns = ["precision", "max_abs_dW", "evaluations", "differing", "train_samples"]
    columns += ["test_samples", "max_loss_rel"]
    return rows.set_index("label")[columns].rename_axis(None)


def _finals(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The final training loss and accuracies (%) of ``rows`` of ``Comparison.runs``."""
    return {
        "train_loss": rows["final_train_loss"].to_numpy(dtype=float),
        "train_acc": 100 * rows["final_train_acc"].to_numpy(dtype=float),
        "test_acc": 100 * rows["final_test_acc"].to_numpy(dtype=float),
    }


def final_metrics(
    comparison: Comparison,
    setting: str = "task2",
    *,
    precision: str = "float32",
    study: bool | None = None,
) -> pd.DataFrame:
    """Final loss and accuracies (%) of one setting's runs, its optimum and the study's."""
    _check(comparison)
    rows = comparison.select(setting, precision)
    iterations = {"iterations": rows["iterations"].to_numpy(dtype=float)}
    table = pd.DataFrame(iterations | _finals(rows), index=list(rows["label"]))
    optimum = comparison.optimum_bias if setting == "study" else comparison.optimum
    if optimum is not None:
        table.loc[OPTIMUM_ROWS[setting]] = [
            math.nan, optimum.loss, 100 * optimum.train_acc, 100 * optimum.test_acc
        ]  # fmt: skip
    if setting == "study" and show_study(comparison, study):
        reported = [100 * STUDY_REPORTED[k] for k in ("train_acc", "test_acc")]
        table.loc[STUDY_ROW] = [STUDY_ITERATIONS, math.nan, *reported]
    return table.astype({"iterations": "Int64"})


def comparison_table(
    comparison: Comparison, *, runs: Sequence[str] = TABLE_RUNS, study: bool | None = None
) -> pd.DataFrame:
    """One row per run of ``runs``: final values, weight difference and timing."""
    _check(comparison)
    rows = _runs(comparison, runs)
    iterations = rows["iterations"].to_numpy(dtype=float)
    finals = _finals(rows)
    table = pd.DataFrame(
        {
            "batch_size": rows["batch_size"].to_numpy(dtype=float),
            "iterations": iterations,
            **{k: finals[k] for k in ("train_acc", "test_acc", "train_loss")},
            "max_abs_dW": rows["max_abs_dW"].to_numpy(dtype=float),
            "diverged_at": rows["diverged_at"].to_numpy(),
            "step_s_per_1000": 1000 * rows["step_seconds"].to_numpy(dtype=float) / iterations,
            "run_s_per_1000": 1000 * rows["run_seconds"].to_numpy(dtype=float) / iterations,
        },
        index=list(rows["label"]),
    )
    if show_study(comparison, study):
        reported = {k: 100 * STUDY_REPORTED[k] for k in ("train_acc", "test_acc")}
        reported |= {"batch_size": STUDY_BATCH_SIZE, "iterations": STUDY_ITERATIONS}
        table = pd.concat([table, pd.DataFrame(reported, index=[STUDY_ROW])])
    return table.astype({"batch_size": "Int64", "iterations": "Int64", "diverged_at": "Int64"})


def styled_table(table: pd.DataFrame):
    """A table of this module for readers (``HEADERS``, ``DISPLAY``), empty columns left out."""
    shown = table.loc[:, table.notna().any()].rename_axis("implementation")
    return styled(shown, DISPLAY, headers=HEADERS)


def _label_reference(ax, value: float, text: str) -> None:
    """``text`` above the line at ``value``, right of ``ax`` (its top raised to make room)."""
    low, high = ax.get_ylim()
    room = 0.12 * (high - low)
    if value + room > high:
        ax.set_ylim(low, value + room)
    ax.text(0.98, value, text, transform=ax.get_yaxis_transform(), ha="right", va="bottom",
            fontsize=LEGEND_SIZE, color="0.35")  # fmt: skip


def overlay_curves(
    histories: Mapping[str, pd.DataFrame],
    *,
    title: str,
    reference=None,
    reference_label: str = "closed-form optimum",
) -> Figure:
    """Loss and accuracies of ``histories`` (name -> history) overlaid; ``reference`` dashed."""
    fig = Figure(figsize=(PRINT_WIDTH, 3.6), dpi=110)
    axes = fig.subplots(1, 3, sharex=True)
    panels = [
        ("train_loss", 1, "training loss", "loss", "{:.4f}"),
        ("train_acc", 100, "training accuracy (%)", "train_acc", "{:.2f} %"),
        ("test_acc", 100, "test accuracy (%)", "test_acc", "{:.2f} %"),
    ]
    for i, (name, history) in enumerate(histories.items()):
        style = _STYLES[i % len(_STYLES)]
        for ax, (metric, scale, *_) in zip(axes, panels, strict=True):
            ax.plot(history["iteration"], scale * history[metric], label=name, **style)
    for ax, (_, scale, label, attr, fmt) in zip(axes, panels, strict=True):
        if reference is not None:
            value = scale * getattr(reference, attr)
            ax.axhline(value, **REFERENCE_STYLE, label=reference_label)
            _label_reference(ax, value, fmt.format(value))
        ax.set_xlabel("iteration")
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    # One key for the three panels, below them; each panel's optimum is written on it.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=LEGEND_SIZE, loc="lower center", ncol=len(labels))
    fig.suptitle(textwrap.fill(title, 92), fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def comparison_curves(
    comparison: Comparison,
    setting: str = "task2",
    *,
    precision: str = "float32",
    title: str | None = None,
) -> Figure:
    """``overlay_curves`` of the runs of one setting, its closed-form optimum the reference."""
    _check(comparison)
    rows = comparison.select(setting, precision)
    if rows.empty:
        raise ValueError(f"the comparison has no {precision} runs of setting {setting!r}")
    first = rows.iloc[0]
    if title is None:
        title = (
            f"{SETTING_TITLES.get(setting, setting)}: batch size {first['batch_size']}, "
            f"{first['iterations']:,} iterations"
        )
        if setting == "task2":
            title += f", lr = {first['lr']:g}"
    return overlay_curves(
        {row["label"]: comparison.history(run) for run, row in rows.iterrows()},
        title=title,
        reference=comparison.optimum_bias if setting == "study" else comparison.optimum,
        reference_label=OPTIMUM_ROWS.get(setting, OPTIMUM_ROWS["task2"]),
    )


def _accuracy_panel(ax, table: pd.DataFrame, y: np.ndarray) -> None:
    """Final train and test accuracy as horizontal bars from 0 %, their values at their ends."""
    for offset, column, label, color in ((0.2, "train_acc", "train", "C0"),
                                         (-0.2, "test_acc", "test", "C1")):  # fmt: skip
        bars = ax.barh(y + offset, table[column], height=0.4, label=label, color=color)
        ax.bar_label(bars, fmt="%.2f", fontsize=LEGEND_SIZE - 1, padding=2)
    ax.set_xlim(0, 118)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.set_xlabel("final accuracy (%)")
    ax.legend(fontsize=LEGEND_SIZE, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)


def _difference_panel(ax, table: pd.DataFrame, y: np.ndarray) -> None:
    """The largest weight difference from numpy, dots on a log axis ("reference": numpy's)."""
    differences = table["max_abs_dW"].to_numpy(dtype=float)
    shown = differences > 0
    ax.plot(differences[shown], y[shown], "o", color="C3")
    ax.set_xscale("log")
    for position, value in zip(y, differences, strict=True):
        if value == 0:
            ax.text(0.5, position, "numpy: reference", transform=ax.get_yaxis_transform(),
                    ha="center", va="center", fontsize=LEGEND_SIZE - 1, color="0.35")  # fmt: skip
    if shown.any():
        low, high = differences[shown].min(), differences[shown].max()
        ax.set_xlim(low / 30, high * 30)
    ax.set_xlabel("largest $|\\Delta W|$\nfrom numpy")


def comparison_bars(table: pd.DataFrame, *, title: str) -> Figure:
    """A ``comparison_table``'s accuracies, weight differences and seconds per 1,000 updates."""
    fig = Figure(figsize=(PRINT_WIDTH, 0.52 * len(table) + 1.2), dpi=110)
    ax_acc, ax_dw, ax_time = fig.subplots(
        1, 3, sharey=True, gridspec_kw={"width_ratios": [5, 3, 3]}
    )
    y = np.arange(len(table))[::-1].astype(float)  # the first row at the top
    _accuracy_panel(ax_acc, table, y)
    _difference_panel(ax_dw, table, y)
    times = table["step_s_per_1000"].to_numpy(dtype=float)
    timed = np.isfinite(times)
    bars = ax_time.barh(y[timed], times[timed], height=0.6, color="C2")
    ax_time.bar_label(bars, fmt="%.2f", fontsize=LEGEND_SIZE - 1, padding=2)
    ax_time.set_xlim(0, 1.3 * times[timed].max() if timed.any() else 1)
    ax_time.set_xlabel("seconds per\n1,000 updates")
    # Each row's name, wrapped, above its number of updates and batch size.
    rows = zip(table.index, table["iterations"], table["batch_size"], strict=True)
    labels = [f"{textwrap.fill(str(n), 21)}\n{int(i):,} updates of {int(b)}" for n, i, b in rows]
    ax_acc.set_yticks(y, labels, fontsize=LEGEND_SIZE)
    for ax in (ax_acc, ax_dw, ax_time):
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=LEGEND_SIZE)
    fig.suptitle(textwrap.fill(title, 92), fontsize=10)
    fig.tight_layout()
    return fig


def agreement(comparison: Comparison) -> dict[str, float | int]:
    """What the answer to Task 6 quotes: largest differences from numpy and counts."""
    task2 = equivalence_table(comparison, "task2")
    float32 = task2[task2["precision"] == "float32"]
    return {
        "float32_dW": float(float32["max_abs_dW"].max()),
        "float64_dW": float(task2.loc[task2["precision"] == "float64", "max_abs_dW"].max()),
        "study_dW": float(equivalence_table(comparison, "study")["max_abs_dW"].max()),
        "evaluations": int(float32["evaluations"].max()),
        "differing": int(float32["differing"].sum()),
        "samples": int(float32[["train_samples", "test_samples"]].to_numpy().max()),
    }
