"""Matplotlib figures shared by the notebooks and the report.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so it
works under any backend (Agg in scripts and tests) and leaves no global state behind.
Accuracies are fractions in the data and percentages on the axes.

Histories are long DataFrames with the columns of ``TrainResult.history`` (iteration,
train_loss, train_acc, test_acc), a ``seed`` column when several seeds are present, and
the run's parameters (``lr``, ``batch_size``, ``n_prime``) where a figure groups by them.
Several seeds are drawn as their mean with a min-max band, over the iterations that most
seeds recorded (the thinned evaluation schedule), and the seed evaluated at every
iteration is drawn underneath as a thin line.

Figures are at most ``PRINT_WIDTH`` inches wide and their text at least 8 pt, so they print
at their own size on an A4 page. Each batch size has one colour, marker and line style
(``batch_style``) and each training-set size N' one colour (``size_color``), the same in
every figure. Axis limits come from the data drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

METRICS = {
    "train_loss": "training loss",
    "train_acc": "training accuracy (%)",
    "test_acc": "test accuracy (%)",
}
COLORS = {"train_loss": "C0", "train_acc": "C0", "test_acc": "C1"}
REFERENCE_STYLE = {"color": "0.35", "linestyle": "--", "linewidth": 1.0}
DPI = 110
# The text column of the PDF (A4 less its margins) is 7.17 inches wide.
PRINT_WIDTH = 7.1
LEGEND_SIZE = 8
# One colour, marker and line style per batch size, and one colour per N', in every figure.
BATCH_COLORS = {1: "#d95f02", 10: "#7570b3", 100: "#1b9e77", 1000: "#e7298a"}
BATCH_MARKERS = {1: "o", 10: "s", 100: "^", 1000: "D"}
BATCH_LINESTYLES = {1: "-", 10: "--", 100: "-.", 1000: ":"}
SIZE_COLORS = {100: "#66a61e", 500: "#e6ab02", 1000: "#a6761d", 10000: "#1f78b4"}
_OTHER_MARKERS = ("v", "P", "X", "*", "h", "<", ">")
_OTHER_LINESTYLES = ("-", "--", "-.", ":")


def _log_position(value: float) -> int:
    return int(round(math.log10(max(float(value), 1.0)) * 2))


def _color(value: int, known: dict[int, str], cmap: str) -> str:
    """``known[value]``, or for another value a colour of ``cmap`` placed by its logarithm
    (1 to 10^5), the same in every figure."""
    if int(value) in known:
        return known[int(value)]
    rgba = colormaps[cmap](min(math.log10(max(float(value), 1.0)) / 5.0, 1.0) * 0.9)
    return "#{:02x}{:02x}{:02x}".format(*(int(255 * c) for c in rgba[:3]))


def batch_color(batch_size: int) -> str:
    """The colour of a batch size in every figure (``BATCH_COLORS``, or from viridis)."""
    return _color(batch_size, BATCH_COLORS, "viridis")


def batch_style(batch_size: int) -> dict:
    """Colour, marker and line style of a batch size, for ``ax.plot(..., **batch_style(b))``."""
    b = int(batch_size)
    k = _log_position(b)
    return {
        "color": batch_color(b),
        "marker": BATCH_MARKERS.get(b, _OTHER_MARKERS[k % len(_OTHER_MARKERS)]),
        "linestyle": BATCH_LINESTYLES.get(b, _OTHER_LINESTYLES[k % len(_OTHER_LINESTYLES)]),
    }


def size_color(n_prime: int) -> str:
    """The colour of a training-set size N' in every figure (``SIZE_COLORS``, or from plasma)."""
    return _color(n_prime, SIZE_COLORS, "plasma")


# The learning-rate bounds of the stability map: colour, line style, legend label.
BOUND_STYLES = {
    "lr_max": ("C3", "--", r"$2/\lambda_{\max}$"),
    "mean_sample_lr": ("C2", "-.", r"$2/\mathrm{mean}\,\|x\|^2$"),
    "per_sample_lr": ("C4", ":", r"$2/\max\,\|x\|^2$"),
}


class LrBounds(Protocol):
    """The learning-rate bounds the stability map draws (``linmnist.report.tables.Bounds``)."""

    @property
    def lr_max(self) -> float: ...

    @property
    def mean_sample_lr(self) -> float: ...

    @property
    def per_sample_lr(self) -> float: ...


COLUMN_LABELS = {
    "final_train_loss_mean": "final training loss",
    "final_train_acc_mean": "final training accuracy",
    "final_test_acc_mean": "final test accuracy",
}


def _check_columns(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}; it has {list(frame.columns)}")


def _scale(metric: str) -> float:
    return 100.0 if metric.endswith("_acc") else 1.0


def seed_band(history: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, min and max of ``metric`` over seeds at each commonly recorded iteration.

    Parameters
    ----------
    history : DataFrame
        Columns iteration, ``metric`` and optionally seed.
    metric : str
        One of train_loss, train_acc, test_acc.

    Returns
    -------
    DataFrame
        Columns iteration, mean, low, high, n (the number of seeds with a finite value),
        restricted to iterations recorded by a majority of the seeds; rows where every
        seed had diverged are dropped.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    _check_columns(history, "history", ["iteration", metric])
    seeds = history["seed"] if "seed" in history.columns else pd.Series(0, index=history.index)
    table = pd.DataFrame({"iteration": history["iteration"], "seed": seeds, "v": history[metric]})
    recorded = table.groupby("iteration")["seed"].nunique()
    majority = seeds.nunique() // 2 + 1
    common = recorded.index[recorded >= majority]
    table = table[table["iteration"].isin(common)]
    finite = table[np.isfinite(table["v"].to_numpy(dtype=float))]
    grouped = finite.groupby("iteration")["v"]
    band = pd.DataFrame(
        {"mean": grouped.mean(), "low": grouped.min(), "high": grouped.max(), "n": grouped.size()}
    )
    return band.reset_index()


def _fidelity_seed(history: pd.DataFrame) -> pd.DataFrame | None:
    """The history of the seed recorded at the most iterations, if it is denser than the band."""
    if "seed" not in history.columns or history["seed"].nunique() < 2:
        return None
    counts = history.groupby("seed")["iteration"].size()
    if counts.max() <= counts.min():
        return None
    return history[history["seed"] == counts.idxmax()]


def _draw_metric(ax, history: pd.DataFrame, metric: str, *, color: str, label: str) -> None:
    scale = _scale(metric)
    dense = _fidelity_seed(history)
    if dense is not None:
        seed = int(dense["seed"].iloc[0])
        ax.plot(
            dense["iteration"],
            dense[metric] * scale,
            color=color,
            linewidth=0.5,
            alpha=0.45,
            label=f"{label}, seed {seed} (every iteration)",
        )
    band = seed_band(history, metric)
    if band.empty:
        return
    n_seeds = history["seed"].nunique() if "seed" in history.columns else 1
    mean_label = f"{label}, mean of {n_seeds} seeds" if n_seeds > 1 else label
    ax.plot(band["iteration"], band["mean"] * scale, color=color, linewidth=1.4, label=mean_label)
    if n_seeds > 1:
        ax.fill_between(
            band["iteration"], band["low"] * scale, band["high"] * scale, color=color, alpha=0.2
        )


def _mark_divergence(ax, diverged_at: Sequence[int], n_seeds: int) -> None:
    """Mark the iterations at which seeds diverged and say so in the panel."""
    its = sorted(int(k) for k in diverged_at)
    if not its:
        return
    for k in its:
        ax.axvline(k, color="C3", linewidth=0.8, linestyle=":")
    span = f"{its[0]}" if its[0] == its[-1] else f"{its[0]}-{its[-1]}"
    ax.text(
        0.5,
        0.5,
        f"diverged at iteration {span}\n({len(its)} of {n_seeds} seeds)",
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="C3",
        fontsize=8,
        bbox={"facecolor": "white", "edgecolor": "C3", "alpha": 0.85},
    )


def _loss_limits(values: np.ndarray) -> tuple[float, float] | None:
    """Limits that hold every finite value of ``values``, with a margin."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    low, high = float(finite.min()), float(finite.max())
    pad = 0.05 * max(high - low, 1e-3)
    return low - pad, high + pad


def digit_image(image: np.ndarray, *, title: str) -> Figure:
    """One grey-scale image, without axes ticks.

    Parameters
    ----------
    image : ndarray (28, 28) or (784,)
        Pixel values (uint8 or floats in [0, 1]); a flat 784-vector is reshaped.
    title : str
        The figure title, e.g. "Training sample 696 (label 2)".
    """
    pixels = np.asarray(image)
    if pixels.ndim == 1:
        side = int(round(np.sqrt(pixels.size)))
        if side * side != pixels.size:
            raise ValueError(f"image of {pixels.size} pixels is not square")
        pixels = pixels.reshape(side, side)
    if pixels.ndim != 2:
        raise ValueError(f"image must be 2-D or a flat square image, got shape {pixels.shape}")
    fig = Figure(figsize=(2.6, 2.8), dpi=DPI)
    ax = fig.subplots()
    ax.imshow(pixels, cmap="gray_r", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def training_curves(
    history: pd.DataFrame,
    *,
    title: str,
    reference=None,
    reference_label: str = "closed-form optimum",
    study: pd.DataFrame | None = None,
    diverged_at: Sequence[int] = (),
) -> Figure:
    """Training loss (left) and train/test accuracy (right) against the iteration.

    Parameters
    ----------
    history : DataFrame
        Columns iteration, train_loss, train_acc, test_acc, and seed for several seeds.
    title : str
        The figure title; it must name the run's configuration.
    reference : object, optional
        Anything with ``loss``, ``train_acc`` and ``test_acc`` attributes (the result of
        ``linmnist.engine.analysis.least_squares``), drawn as dashed horizontal lines.
    reference_label : str
        Legend text of the reference lines.
    study : DataFrame, optional
        The study's reported points, columns iteration, train_loss, train_acc, test_acc
        (NaN where not reported), drawn as black markers.
    diverged_at : sequence of int
        Iterations at which seeds diverged; marked on both panels.
    """
    _check_columns(history, "history", ["iteration", *METRICS])
    n_seeds = history["seed"].nunique() if "seed" in history.columns else 1
    fig = Figure(figsize=(PRINT_WIDTH, 3.6), dpi=DPI)
    ax_loss, ax_acc = fig.subplots(1, 2)
    _draw_metric(ax_loss, history, "train_loss", color=COLORS["train_loss"], label="training loss")
    _draw_metric(ax_acc, history, "train_acc", color=COLORS["train_acc"], label="train")
    _draw_metric(ax_acc, history, "test_acc", color=COLORS["test_acc"], label="test")
    if reference is not None:
        ax_loss.axhline(
            reference.loss, **REFERENCE_STYLE, label=f"{reference_label} ({reference.loss:.4f})"
        )
        ax_acc.axhline(
            100 * reference.train_acc,
            **REFERENCE_STYLE,
            label=f"{reference_label}, train ({100 * reference.train_acc:.2f} %)",
        )
        ax_acc.axhline(
            100 * reference.test_acc,
            color="0.35",
            linestyle="-.",
            linewidth=1.0,
            label=f"{reference_label}, test ({100 * reference.test_acc:.2f} %)",
        )
    if study is not None:
        _check_columns(study, "study", ["iteration", *METRICS])
        loss = study.dropna(subset=["train_loss"])
        ax_loss.plot(loss["iteration"], loss["train_loss"], "kx", label="study (one unseeded run)")
        for metric, marker in (("train_acc", "ks"), ("test_acc", "k^")):
            points = study.dropna(subset=[metric])
            ax_acc.plot(
                points["iteration"],
                100 * points[metric],
                marker,
                markerfacecolor="none",
                label=f"study, {metric.split('_')[0]}",
            )
    limits = _loss_limits(history["train_loss"].to_numpy(dtype=float))
    if limits is not None and not diverged_at:
        ax_loss.set_ylim(
            min(limits[0], reference.loss - 0.01) if reference is not None else limits[0],
            limits[1],
        )
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        _mark_divergence(ax, diverged_at, n_seeds)
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("Training loss")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("Accuracy")
    ax_loss.legend(fontsize=LEGEND_SIZE)
    ax_acc.legend(fontsize=LEGEND_SIZE, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _grid_axes(values: Sequence[float], batch_sizes: Sequence[int], *, sharey: bool):
    width = min(PRINT_WIDTH, 1.65 * len(batch_sizes) + 0.6)
    fig = Figure(figsize=(width, 1.75 * len(values) + 0.9), dpi=DPI)
    axes = fig.subplots(len(values), len(batch_sizes), sharex=True, sharey=sharey, squeeze=False)
    return fig, axes


def grid_curves(histories: pd.DataFrame, seeds: pd.DataFrame, *, metric: str) -> Figure:
    """Small multiples of one metric: a row per learning rate, a column per batch size.

    Parameters
    ----------
    histories : DataFrame
        Columns lr, batch_size, seed, iteration and ``metric``: every seed's history.
    seeds : DataFrame
        One row per run, columns lr, batch_size, seed, diverged_at (None/NaN when the
        run did not diverge) and optionally status (``linmnist.experiments.results.load_task``); a
        panel whose seeds diverged says at which iteration, a failed cell says so.
    metric : str
        train_loss, train_acc or test_acc.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    columns = ["lr", "batch_size", "seed", "iteration", metric]
    if histories.empty:  # every cell failed: the panels say so
        histories = pd.DataFrame(columns=columns)
    _check_columns(histories, "histories", columns)
    _check_columns(seeds, "seeds", ["lr", "batch_size", "seed", "diverged_at"])
    lrs = sorted(seeds["lr"].unique(), reverse=True)
    batch_sizes = sorted(seeds["batch_size"].unique())
    fig, axes = _grid_axes(lrs, batch_sizes, sharey=False)
    scale = _scale(metric)
    converged = histories.merge(
        seeds[seeds["diverged_at"].isna()][["lr", "batch_size", "seed"]],
        on=["lr", "batch_size", "seed"],
    )
    for i, lr in enumerate(lrs):
        for j, batch_size in enumerate(batch_sizes):
            ax = axes[i, j]
            cell = histories[(histories["lr"] == lr) & (histories["batch_size"] == batch_size)]
            runs = seeds[(seeds["lr"] == lr) & (seeds["batch_size"] == batch_size)]
            if not cell.empty:
                _draw_metric(ax, cell, metric, color=COLORS[metric], label=METRICS[metric])
            failed = "status" in runs.columns and (runs["status"] != "ok").any()
            runs = runs.dropna(subset=["seed"])
            diverged = runs["diverged_at"].dropna().astype(int).tolist()
            _mark_divergence(ax, diverged, len(runs))
            if failed or runs.empty:
                note = "failed" if failed else "no result"
                ax.text(
                    0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color="C3"
                )
            ax.set_title(f"lr = {lr:g}, B = {batch_size}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            # Each panel's limits hold all its converged seeds (a noisy panel is not clipped).
            mine = converged[(converged["lr"] == lr) & (converged["batch_size"] == batch_size)]
            limits = _loss_limits(mine[metric].to_numpy(dtype=float) * scale)
            if limits is not None:
                ax.set_ylim(*limits)
            if i == len(lrs) - 1:
                ax.set_xlabel("iteration")
            if j == 0:
                ax.set_ylabel(METRICS[metric], fontsize=9)
    n_seeds = seeds.groupby(["lr", "batch_size"])["seed"].nunique().max()
    n_seeds = 0 if pd.isna(n_seeds) else int(n_seeds)
    fig.suptitle(
        f"{METRICS[metric].split(' (')[0].capitalize()} of every learning rate x batch size run "
        f"(B: batch size)\nmean and min-max over {n_seeds} seeds"
        f"{'; thin line: one seed' if n_seeds > 1 else ''}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def accuracy_heatmap(
    table: pd.DataFrame, *, value: str = "final_test_acc_mean", title: str | None = None
) -> Figure:
    """Heatmap of an accuracy over learning rate (rows) x batch size (columns).

    Parameters
    ----------
    table : DataFrame
        One row per (lr, batch_size) with the column ``value`` (a fraction) and
        ``n_diverged``/``n_seeds``; cells where every seed diverged are grey and say so.
    value : str
        The column to show, default the mean final test accuracy.
    title : str, optional
        Defaults to a title naming the column.
    """
    accuracies = [c for c in COLUMN_LABELS if c.endswith("_acc_mean")]
    if value not in accuracies:
        raise ValueError(f"value must be one of {accuracies}, got {value!r}")
    _check_columns(table, "table", ["lr", "batch_size", value, "n_diverged", "n_seeds"])
    lrs = sorted(table["lr"].unique(), reverse=True)
    batch_sizes = sorted(table["batch_size"].unique())
    grid = np.full((len(lrs), len(batch_sizes)), np.nan)
    labels = np.full(grid.shape, "no result", dtype=object)
    for row in table.itertuples(index=False):
        i, j = lrs.index(row.lr), batch_sizes.index(row.batch_size)
        acc = getattr(row, value)
        if row.n_diverged == row.n_seeds and row.n_seeds > 0:
            labels[i, j] = "diverged"
        elif np.isfinite(acc):
            grid[i, j] = 100 * acc
            labels[i, j] = f"{100 * acc:.2f} %"
            if row.n_diverged:
                labels[i, j] += f"\n({row.n_diverged}/{row.n_seeds} diverged)"
    fig = Figure(
        figsize=(min(PRINT_WIDTH, 1.2 * len(batch_sizes) + 2.4), 0.8 * len(lrs) + 1.5), dpi=DPI
    )
    ax = fig.subplots()
    shown = grid[np.isfinite(grid)]
    low, high = (shown.min() - 1, shown.max() + 0.5) if shown.size else (0, 100)
    cmap = colormaps["YlGn"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=low, vmax=high, aspect="auto")
    for i in range(len(lrs)):
        for j in range(len(batch_sizes)):
            dark = np.isfinite(grid[i, j]) and (grid[i, j] - low) > 0.65 * (high - low)
            color = "white" if dark else "black"
            ax.text(j, i, labels[i, j], ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(batch_sizes)), [str(b) for b in batch_sizes])
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_xlabel("batch size")
    ax.set_ylabel("learning rate")
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label("accuracy (%)")
    ax.set_title(title or f"{COLUMN_LABELS[value].capitalize()}, mean over seeds", fontsize=10)
    fig.tight_layout()
    return fig


def stability_plot(
    table: pd.DataFrame, *, lr_max: float, value: str = "final_train_loss_mean"
) -> Figure:
    """Final training loss against the learning rate, one line per batch size.

    The gradient-descent stability threshold ``lr_max`` = 2 / lambda_max is drawn as a
    vertical line; learning rates at which every seed diverged are drawn as red crosses
    at the top of the axis.

    Parameters
    ----------
    table : DataFrame
        One row per (lr, batch_size) with ``value``, n_diverged and n_seeds.
    lr_max : float
        2 / lambda_max of X X^T / N, from ``linmnist.engine.analysis.stability_threshold``.
    value : str
        The column on the y-axis, default the mean final training loss.
    """
    if value not in COLUMN_LABELS:
        raise ValueError(f"value must be one of {sorted(COLUMN_LABELS)}, got {value!r}")
    _check_columns(table, "table", ["lr", "batch_size", value, "n_diverged", "n_seeds"])
    if not (np.isfinite(lr_max) and lr_max > 0):
        raise ValueError(f"lr_max must be a positive finite number, got {lr_max!r}")
    fig = Figure(figsize=(6.4, 3.8), dpi=DPI)
    ax = fig.subplots()
    scale = _scale(value.removesuffix("_mean").removeprefix("final_"))
    finite = table[value].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    top = (finite.max() * scale * 1.08) if finite.size else 1.0
    groups = list(table.sort_values("lr").groupby("batch_size"))
    # Larger batch sizes first and wider, so a line lying on another stays visible.
    for k, (batch_size, rows) in enumerate(groups):
        ok = rows[rows["n_diverged"] < rows["n_seeds"]]
        ax.plot(
            ok["lr"],
            ok[value] * scale,
            **batch_style(batch_size),
            markerfacecolor="none",
            markersize=5 + 2 * (len(groups) - k),
            linewidth=1.0 + 0.6 * (len(groups) - k),
            zorder=2 + k,
            label=f"batch size {batch_size}",
        )
        bad = rows[(rows["n_diverged"] == rows["n_seeds"]) & (rows["n_seeds"] > 0)]
        ax.plot(bad["lr"], np.full(len(bad), top), "x", color="C3", markersize=9, mew=2)
    if ((table["n_diverged"] == table["n_seeds"]) & (table["n_seeds"] > 0)).any():
        ax.plot([], [], "x", color="C3", mew=2, label="diverged (every seed)")
    ax.axvline(lr_max, color="C3", linestyle="--", linewidth=1.2)
    ax.text(
        lr_max,
        0.02,
        f" $2/\\lambda_{{\\max}}$ = {lr_max:.4f}",
        transform=ax.get_xaxis_transform(),
        color="C3",
        fontsize=8,
    )
    ax.set_xscale("log")
    lrs = table["lr"].to_numpy(dtype=float)
    ax.set_xlim(min(lrs.min(), lr_max) / 2, max(lrs.max(), lr_max) * 2)
    ax.set_xlabel("learning rate (log scale)")
    label = COLUMN_LABELS[value]
    ax.set_ylabel(label + (" (%)" if scale != 1 else ""))
    ax.set_title(
        f"{label.capitalize()} against the learning rate,\nwith the stability threshold",
        fontsize=10,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=LEGEND_SIZE)
    fig.tight_layout()
    return fig


def subset_curves(histories: pd.DataFrame, *, title: str) -> Figure:
    """Training on N' images: loss on S', train/test accuracy, and the train-test gap.

    Parameters
    ----------
    histories : DataFrame
        Columns n_prime, seed, iteration, train_loss, train_acc (on the subset S'),
        test_acc (on the full test set).
    title : str
        The figure title; it must call N' the training-set size (not the batch size).
    """
    if histories.empty:  # every cell failed: empty panels, and the key says so
        histories = pd.DataFrame(columns=["n_prime", "seed", "iteration", *METRICS])
    _check_columns(histories, "histories", ["n_prime", "iteration", *METRICS])
    fig = Figure(figsize=(PRINT_WIDTH, 5.6), dpi=DPI)
    (ax_loss, ax_acc), (ax_gap, ax_key) = fig.subplots(2, 2)
    for n_prime, history in histories.groupby("n_prime"):
        color = size_color(n_prime)
        for ax, metric, style in (
            (ax_loss, "train_loss", "-"),
            (ax_acc, "train_acc", "-"),
            (ax_acc, "test_acc", "--"),
        ):
            band = seed_band(history, metric)
            scale = _scale(metric)
            label = f"N' = {n_prime}" if metric != "test_acc" else None
            ax.plot(band["iteration"], band["mean"] * scale, style, color=color, label=label)
            ax.fill_between(
                band["iteration"],
                band["low"] * scale,
                band["high"] * scale,
                color=color,
                alpha=0.15,
            )
        train = seed_band(history, "train_acc").set_index("iteration")["mean"]
        test = seed_band(history, "test_acc").set_index("iteration")["mean"]
        gap = (train - test).dropna()
        ax_gap.plot(gap.index, 100 * gap.to_numpy(), color=color, label=f"N' = {n_prime}")
    ax_acc.plot([], [], "k-", label="on S' (training)")
    ax_acc.plot([], [], "k--", label="on the test set")
    ax_gap.axhline(0, color="0.35", linewidth=0.8)
    ax_loss.set_title("Training loss on S'")
    ax_acc.set_title("Accuracy")
    ax_gap.set_title("Train - test accuracy gap")
    ax_loss.set_ylabel("training loss")
    ax_acc.set_ylabel("accuracy (%)")
    ax_gap.set_ylabel("gap (percentage points)")
    for ax in (ax_loss, ax_acc, ax_gap):
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    # One key for the three panels, in the fourth.
    handles, labels = ax_acc.get_legend_handles_labels()
    if histories.empty:
        ax_key.text(0.5, 0.8, "no results: every cell failed", ha="center", color="C3")
    ax_key.axis("off")
    ax_key.legend(handles, labels, fontsize=LEGEND_SIZE + 1, loc="center", frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def stability_map(table: pd.DataFrame, bounds: LrBounds, *, study_lrs: Sequence[float]) -> Figure:
    """Final test accuracy against the learning rate per batch size, and where runs diverge.

    Top panel: the mean final test accuracy of the seeds that did not diverge, with their
    min-max band; bottom panel: one row per batch size, a marker per learning rate coloured
    by the fraction of seeds that diverged (a cross where all did). Both panels mark the
    three bounds as vertical lines and the study's learning rates as triangles.

    Parameters
    ----------
    table : DataFrame
        ``tables.accuracy_table(seeds)``.
    bounds : tables.Bounds
        ``tables.predicted_bounds(X)``.
    study_lrs : sequence of float
        Learning rates marked as the study's (``linmnist.report.study.STUDY_LRS``).
    """
    _check_columns(
        table,
        "table",
        ["batch_size", "lr", "n_seeds", "n_diverged", "final_test_acc_mean"]
        + ["final_test_acc_min", "final_test_acc_max"],
    )
    fig = Figure(figsize=(PRINT_WIDTH, 6.4), dpi=DPI)
    top, bottom = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1.0], "hspace": 0.08}
    )
    sizes = sorted(table["batch_size"].unique())
    for batch_size in sizes:
        style = batch_style(batch_size)
        color = style["color"]
        rows = table[table["batch_size"] == batch_size].sort_values("lr")
        ok = rows[rows["n_diverged"] < rows["n_seeds"]]
        top.fill_between(
            ok["lr"],
            100 * ok["final_test_acc_min"],
            100 * ok["final_test_acc_max"],
            color=color,
            alpha=0.25,
            linewidth=0,
        )
        top.plot(
            ok["lr"],
            100 * ok["final_test_acc_mean"],
            **style,
            markersize=4,
            markerfacecolor="none",
            label=f"batch size {batch_size}",
        )
    top.set_ylabel("final test accuracy (%)")
    top.set_title(
        "Stability map: final test accuracy and divergence against the learning rate",
        pad=12,
        fontsize=10,
    )
    top.grid(alpha=0.3, which="both")
    fraction = (table["n_diverged"] / table["n_seeds"].where(table["n_seeds"] > 0)).to_numpy()
    cmap = colormaps["RdYlGn_r"]
    for row, batch_size in enumerate(sizes):
        mine = (table["batch_size"] == batch_size).to_numpy()
        lrs, frac = table["lr"].to_numpy(dtype=float)[mine], fraction[mine]
        done = np.isfinite(frac)
        every = done & (frac == 1)
        bottom.scatter(
            lrs[done & ~every],
            np.full((done & ~every).sum(), row),
            c=cmap(frac[done & ~every]),
            s=36,
            edgecolors="0.3",
            linewidths=0.5,
        )
        bottom.scatter(lrs[every], np.full(every.sum(), row), marker="x", color=cmap(1.0), s=40)
    bottom.set_yticks(range(len(sizes)), [f"B = {b}" for b in sizes])
    bottom.set_ylim(-0.6, len(sizes) + 0.5)
    bottom.scatter([], [], c=[cmap(0.0)], s=36, edgecolors="0.3", label="none")
    bottom.scatter([], [], c=[cmap(0.5)], s=36, edgecolors="0.3", label="some")
    bottom.scatter([], [], marker="x", color=cmap(1.0), label="all")
    bottom.legend(
        fontsize=LEGEND_SIZE,
        loc="upper left",
        ncol=4,
        title="seeds diverged:",
        title_fontsize=LEGEND_SIZE,
        alignment="left",
        borderpad=0.3,
        handletextpad=0.2,
        columnspacing=1.0,
    )
    for name, (color, style, label) in BOUND_STYLES.items():
        value = getattr(bounds, name)
        for ax in (top, bottom):
            ax.axvline(value, color=color, linestyle=style, linewidth=1.1)
        top.plot([], [], color=color, linestyle=style, label=f"{label} = {value:.4f}")
    for lr in study_lrs:
        top.plot(
            lr,
            1.0,
            "v",
            color="0.2",
            markersize=7,
            transform=top.get_xaxis_transform(),
            clip_on=False,
        )
    top.plot([], [], "v", color="0.2", label="the study's lr")
    top.legend(fontsize=LEGEND_SIZE, loc="lower left", ncol=2)
    bottom.set_xscale("log")
    lrs = np.concatenate([table["lr"].to_numpy(dtype=float), list(study_lrs)])
    bottom.set_xlim(lrs.min() / 1.5, lrs.max() * 1.5)
    bottom.set_xlabel("learning rate (log scale)")
    fig.subplots_adjust(left=0.12, right=0.97, top=0.94, bottom=0.09)
    return fig
