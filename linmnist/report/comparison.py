"""Tables and figures of the framework comparison (Task 6), built from a ``Comparison``.

The comparison itself is made by the ``frameworks`` product and read with
``linmnist.experiments.comparison.load_comparison``. Here:

* ``equivalence_table``: how far each framework run is from the numpy run on identical batches;
* ``final_metrics``: the final loss and accuracies of the runs of one setting, with the
  closed-form optimum (and, on MNIST, the study's reported PyTorch figures);
* ``comparison_table``: the table of Task 6, one row per implementation, with timings;
* ``format_table``: any of these tables as rounded text; ``styled_table`` the same table for
  readers (a Styler: headers in words with units, ``5.6 × 10⁻⁹``, a dash where empty);
* ``overlay_curves``, ``comparison_curves`` and ``comparison_bars``: the figures.

Accuracies are fractions in a ``Comparison`` and percentages in the tables and on the axes.
The study's reported figures (``STUDY_REPORTED``) are shown only beside MNIST results.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from linmnist.experiments.comparison import Comparison
from linmnist.report.figures import LEGEND_SIZE, PRINT_WIDTH
from linmnist.report.study import is_study_dataset
from linmnist.report.tables import scientific, styled

# Task 6 of the study: its PyTorch run (bias, nn.MSELoss, its own 80/20 split), as fractions.
STUDY_REPORTED = {"train_acc": 0.8581, "test_acc": 0.8573}
STUDY_ROW = "study (reported)"
# The runs of the Task 6 table, in order: float32 on identical batches, then the study setting.
TABLE_RUNS = ("numpy", "torch", "keras", "study_torch", "study_numpy")
OPTIMUM_ROWS = {"task2": "closed-form optimum", "study": "closed-form optimum, bias"}
SETTING_TITLES = {
    "task2": "Task 2 configuration on identical batches",
    "study": "The study's PyTorch setting and the numpy engine on the same batches",
}
# Display format of each column of the tables.
FORMATS = {
    "train_acc": "{:.2f}",
    "test_acc": "{:.2f}",
    "train_loss": "{:.4f}",
    "max_abs_dW": "{:.0e}",
    "max_loss_rel": "{:.0e}",
    "step_s_per_1000": "{:.3f}",
    "run_s_per_1000": "{:.2f}",
}
# The headers readers see, with units, and how each column is written.
HEADERS = {
    "implementation": "implementation",
    "precision": "precision",
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
    "step_s_per_1000": lambda v: f"{v:.3f}",
    "run_s_per_1000": lambda v: f"{v:.2f}",
}
_REFERENCE = {"color": "0.35", "linestyle": "--", "linewidth": 1.0}
# Line styles of overlaid runs: wide to narrow, so coinciding curves all show.
_STYLES = [
    {"linewidth": 3.0, "alpha": 0.45},
    {"linewidth": 1.6, "linestyle": "--"},
    {"linewidth": 1.0, "linestyle": ":", "color": "k"},
    {"linewidth": 0.8, "linestyle": "-."},
]


def _check(comparison: Comparison) -> None:
    if not comparison.ok:
        raise ValueError(f"the framework comparison failed: {comparison.error}")


def show_study(comparison: Comparison, study: bool | None = None) -> bool:
    """Whether the study's reported figures go beside ``comparison``: ``study`` if given,
    else True on the study's dataset (MNIST) only."""
    if study is not None:
        return study
    return comparison.dataset is not None and is_study_dataset(comparison.dataset)


def _runs(comparison: Comparison, runs: Sequence[str]) -> pd.DataFrame:
    unknown = [r for r in runs if r not in comparison.runs.index]
    if unknown:
        raise ValueError(f"runs must be among {list(comparison.runs.index)}, got {unknown}")
    return comparison.runs.loc[list(runs)]


def equivalence_table(comparison: Comparison, setting: str = "task2") -> pd.DataFrame:
    """How far each framework run of ``setting`` is from the numpy run of its configuration.

    Returns
    -------
    DataFrame indexed by run label, columns precision, max_abs_dW (max |(W, b) difference|),
    evaluations (iterations evaluated), differing (evaluated iterations whose accuracy
    differs), train_samples and test_samples (largest difference in correctly classified
    samples at one evaluated iteration), max_loss_rel (largest relative difference of the
    training loss).
    """
    _check(comparison)
    rows = comparison.select(setting)
    rows = rows[rows["reference"].notna()]
    columns = ["precision", "max_abs_dW", "evaluations", "differing", "train_samples"]
    columns += ["test_samples", "max_loss_rel"]
    return rows.set_index("label")[columns].rename_axis(None)


def final_metrics(
    comparison: Comparison,
    setting: str = "task2",
    *,
    precision: str = "float32",
    study: bool | None = None,
) -> pd.DataFrame:
    """Final training loss and accuracies (%) of the runs of one setting, then the optimum.

    The closed-form optimum (with a bias for the study setting) is a last row; for the study
    setting on MNIST (``show_study``) the study's reported figures follow it.

    Returns
    -------
    DataFrame indexed by label, columns train_loss, train_acc, test_acc.
    """
    _check(comparison)
    rows = comparison.select(setting, precision)
    table = pd.DataFrame(
        {
            "train_loss": rows["final_train_loss"].to_numpy(dtype=float),
            "train_acc": 100 * rows["final_train_acc"].to_numpy(dtype=float),
            "test_acc": 100 * rows["final_test_acc"].to_numpy(dtype=float),
        },
        index=list(rows["label"]),
    )
    optimum = comparison.optimum_bias if setting == "study" else comparison.optimum
    if optimum is not None:
        table.loc[OPTIMUM_ROWS[setting]] = [
            optimum.loss, 100 * optimum.train_acc, 100 * optimum.test_acc
        ]  # fmt: skip
    if setting == "study" and show_study(comparison, study):
        table.loc[STUDY_ROW] = [
            math.nan, 100 * STUDY_REPORTED["train_acc"], 100 * STUDY_REPORTED["test_acc"]
        ]  # fmt: skip
    return table


def comparison_table(
    comparison: Comparison,
    *,
    runs: Sequence[str] = TABLE_RUNS,
    study: bool | None = None,
) -> pd.DataFrame:
    """One row per implementation: what Task 6 compares.

    Parameters
    ----------
    comparison : Comparison
        The framework comparison (status ok).
    runs : sequence of str
        The run ids to show, in order (default ``TABLE_RUNS``).
    study : bool, optional
        Add the study's reported figures (``STUDY_REPORTED``) as a last row, with the other
        columns empty; default: on MNIST only (``show_study``).

    Returns
    -------
    DataFrame indexed by run label, columns train_acc and test_acc (final, %), train_loss
    (final), max_abs_dW (max |(W, b) - (W, b)_numpy| against the numpy run of the same
    configuration), diverged_at, and step_s_per_1000 and run_s_per_1000 (updates alone, and
    the whole training call with its evaluation, in seconds per 1,000 iterations).
    """
    _check(comparison)
    rows = _runs(comparison, runs)
    iterations = rows["iterations"].to_numpy(dtype=float)
    table = pd.DataFrame(
        {
            "train_acc": 100 * rows["final_train_acc"].to_numpy(dtype=float),
            "test_acc": 100 * rows["final_test_acc"].to_numpy(dtype=float),
            "train_loss": rows["final_train_loss"].to_numpy(dtype=float),
            "max_abs_dW": rows["max_abs_dW"].to_numpy(dtype=float),
            "diverged_at": rows["diverged_at"].to_numpy(),
            "step_s_per_1000": 1000 * rows["step_seconds"].to_numpy(dtype=float) / iterations,
            "run_s_per_1000": 1000 * rows["run_seconds"].to_numpy(dtype=float) / iterations,
        },
        index=list(rows["label"]),
    )
    if show_study(comparison, study):
        reported = {"train_acc": 100 * STUDY_REPORTED["train_acc"]}
        reported["test_acc"] = 100 * STUDY_REPORTED["test_acc"]
        table = pd.concat([table, pd.DataFrame(reported, index=[STUDY_ROW])])
    return table.astype({"diverged_at": "Int64"})


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """A table of this module as text: numbers rounded (``FORMATS``), missing values empty."""

    def cell(value, fmt: str) -> str:
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return ""
        if fmt == "{:.0e}" and value == 0:
            return "0"
        return fmt.format(value)

    out = pd.DataFrame(index=table.index)
    for column in table.columns:
        fmt = FORMATS.get(column)
        if fmt is None:
            out[column] = ["" if pd.isna(v) else str(v) for v in table[column]]
        else:
            out[column] = [cell(v, fmt) for v in table[column]]
    return out


def styled_table(table: pd.DataFrame):
    """A table of this module for readers (``linmnist.report.tables.styled``): the run in
    the first column, headers in words with units (``HEADERS``), accuracies in %, weight
    and loss differences as ``5.6 × 10⁻⁹``, a dash where a value is missing; a column
    empty in every row (no run diverged) is left out."""
    shown = table.loc[:, table.notna().any()].rename_axis("implementation")
    return styled(shown, DISPLAY, headers=HEADERS)


def overlay_curves(histories: Mapping[str, pd.DataFrame], *, title: str, reference=None) -> Figure:
    """Training loss, training accuracy and test accuracy of several runs, drawn on top of
    each other (distinct line styles, so curves that coincide stay visible).

    Parameters
    ----------
    histories : mapping name -> DataFrame
        Histories with the columns of ``TrainResult.history``.
    title : str
        Figure title, naming the configuration.
    reference : object, optional
        Anything with ``loss``, ``train_acc`` and ``test_acc`` (an ``Optimum``), drawn as
        dashed horizontal lines.
    """
    fig = Figure(figsize=(PRINT_WIDTH, 3.4), dpi=110)
    axes = fig.subplots(1, 3)
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
            ax.axhline(value, **_REFERENCE, label="closed-form optimum")
            ax.text(
                0.98,
                value,
                fmt.format(value),
                transform=ax.get_yaxis_transform(),
                ha="right",
                va="bottom",
                fontsize=LEGEND_SIZE,
                color="0.35",
            )
        ax.set_xlabel("iteration")
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    # One key for the three panels, below them; each panel's optimum is in its caption.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=LEGEND_SIZE, loc="lower center", ncol=len(labels))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def comparison_curves(
    comparison: Comparison,
    setting: str = "task2",
    *,
    precision: str = "float32",
    title: str | None = None,
) -> Figure:
    """``overlay_curves`` of the runs of one setting, with the closed-form optimum of that
    setting (with a bias for the study setting) as the reference."""
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
    )


def comparison_bars(table: pd.DataFrame, *, title: str) -> Figure:
    """Bar charts of a ``comparison_table``: final accuracies and seconds per 1,000 updates.

    Rows without a time (the study's reported figures) appear in the accuracy panel only.
    """
    fig = Figure(figsize=(PRINT_WIDTH, 3.8), dpi=110)
    ax_acc, ax_time = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(table))
    for offset, column, label in ((-0.2, "train_acc", "train"), (0.2, "test_acc", "test")):
        bars = ax_acc.bar(x + offset, table[column], width=0.4, label=label)
        ax_acc.bar_label(bars, fmt="%.2f", fontsize=LEGEND_SIZE, rotation=90, padding=2)
    accuracies = table[["train_acc", "test_acc"]].to_numpy(dtype=float)
    ax_acc.set_ylim(max(0.0, np.nanmin(accuracies) - 5), min(100.0, np.nanmax(accuracies) + 6))
    ax_acc.set_xticks(x, table.index, fontsize=LEGEND_SIZE, rotation=20, ha="right")
    ax_acc.set_ylabel("final accuracy (%)")
    ax_acc.legend(fontsize=LEGEND_SIZE, loc="upper left")
    timed = table.dropna(subset=["step_s_per_1000"])
    bars = ax_time.bar(np.arange(len(timed)), timed["step_s_per_1000"], color="C2")
    ax_time.bar_label(bars, fmt="%.2f", fontsize=LEGEND_SIZE)
    ax_time.set_xticks(
        np.arange(len(timed)), timed.index, fontsize=LEGEND_SIZE, rotation=20, ha="right"
    )
    ax_time.set_ylabel("seconds per 1,000 updates")
    for ax in (ax_acc, ax_time):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
