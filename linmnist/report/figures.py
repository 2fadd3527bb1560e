"""Matplotlib figures (built without pyplot) shared by the notebooks and the report.

Accuracies are fractions in the data, percentages on the axes; seeds are drawn as their mean
with its 95 % CI band. Each batch size has one style (``batch_style``) and each N' one colour
(``size_color``) in every figure.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from linmnist.experiments.sizes import SIZE_COLUMNS
from linmnist.report.tables import Bounds, check_frame, span
from linmnist.report.uncertainty import ci95, group_ci95

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
# The learning-rate bounds of the stability map: colour, line style, legend label.
BOUND_STYLES = {
    "lr_max": ("C3", "--", r"$2/\lambda_{\max}$"),
    "mean_sample_lr": ("C2", "-.", r"$2/\mathrm{mean}\,\|x\|^2$"),
    "per_sample_lr": ("C4", ":", r"$2/\max\,\|x\|^2$"),
}
COLUMN_LABELS = {
    "final_train_loss_mean": "final training loss",
    "final_train_acc_mean": "final training accuracy",
    "final_test_acc_mean": "final test accuracy",
}
# The predicted expected loss (``linmnist.experiments.theory``), in every figure that has it.
PREDICTED_STYLE: dict[str, Any] = {"linestyle": (0, (7, 2.5)), "linewidth": 1.1}
PREDICTED_LABEL = "predicted from the images"
ITERATION_LABEL = "iteration (0: after the first update)"
_BOX = {"facecolor": "white", "edgecolor": "C3"}


def _color(value: int, known: dict[int, str], cmap: str) -> str:
    """``known[value]``, else a colour of ``cmap`` placed by log10(value) in [0, 5]."""
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
    k = int(round(math.log10(max(float(b), 1.0)) * 2))
    return {
        "color": batch_color(b),
        "marker": BATCH_MARKERS.get(b, _OTHER_MARKERS[k % len(_OTHER_MARKERS)]),
        "linestyle": BATCH_LINESTYLES.get(b, _OTHER_LINESTYLES[k % len(_OTHER_LINESTYLES)]),
    }


def size_color(n_prime: int) -> str:
    """The colour of a training-set size N' in every figure (``SIZE_COLORS``, or from plasma)."""
    return _color(n_prime, SIZE_COLORS, "plasma")


def _scale(metric: str) -> float:
    return 100.0 if metric.endswith("_acc") else 1.0


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")


def _plain(axis, minor=None) -> None:
    """Tick labels of ``axis`` as plain numbers (``{:g}``); the minor ones by ``minor``."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor) if minor else NullFormatter())


def seed_band(history: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and 95 % CI of ``metric`` over seeds, at iterations most seeds recorded."""
    _check_metric(metric)
    check_frame(history, "history", ["iteration", metric])
    seeds = history["seed"] if "seed" in history.columns else pd.Series(0, index=history.index)
    table = pd.DataFrame({"iteration": history["iteration"], "seed": seeds, "v": history[metric]})
    recorded = table.groupby("iteration")["seed"].nunique()
    common = recorded.index[recorded >= seeds.nunique() // 2 + 1]
    table = table[table["iteration"].isin(common)]
    grouped = table[np.isfinite(table["v"].to_numpy(dtype=float))].groupby("iteration")["v"]
    mean, half = grouped.mean(), group_ci95(grouped).fillna(0.0)
    band = {"mean": mean, "low": mean - half, "high": mean + half, "n": grouped.size()}
    return pd.DataFrame(band).reset_index()


def _band(ax, x, band: pd.DataFrame, scale: float, alpha: float, *fmt, **style) -> None:
    """``band``'s mean (times ``scale``) against ``x`` as a line, its CI as a shaded band."""
    ax.plot(x, band["mean"] * scale, *fmt, **style)
    ax.fill_between(x, band["low"] * scale, band["high"] * scale, color=style["color"], alpha=alpha)


def _draw_metric(ax, history: pd.DataFrame, metric: str, *, color: str, label: str) -> None:
    """The seeds' mean and 95 % CI of ``metric``, over the densest seed's thin line."""
    scale = _scale(metric)
    n_seeds = history["seed"].nunique() if "seed" in history.columns else 1
    counts = history.groupby("seed")["iteration"].size() if n_seeds > 1 else pd.Series([0])
    if counts.max() > counts.min():
        dense = history[history["seed"] == counts.idxmax()]
        label_dense = f"{label}, seed {int(counts.idxmax())} (every iteration)"
        ax.plot(dense["iteration"], dense[metric] * scale, color=color, linewidth=0.5,
                alpha=0.45, label=label_dense)  # fmt: skip
    band = seed_band(history, metric)
    if band.empty:
        return
    if n_seeds == 1:
        ax.plot(band["iteration"], band["mean"] * scale, color=color, linewidth=1.4, label=label)
        return
    label = f"{label}, mean of {n_seeds} seeds"
    _band(ax, band["iteration"], band, scale, 0.2, color=color, linewidth=1.4, label=label)


def _note(ax, x: float, y: float, text: str, color: str = "C3", **style) -> None:
    """``text`` at (``x``, ``y``) in axes fractions, centred, in ``color``."""
    ax.text(x, y, text, transform=ax.transAxes, ha=style.pop("ha", "center"),
            va=style.pop("va", "center"), color=color, **style)  # fmt: skip


def _mark_divergence(
    ax, diverged_at: Sequence[int], n_seeds: int, *, y: float = 0.5, extra: str = ""
) -> None:
    """Where seeds diverged: dotted lines, red crosses on top and a note at height ``y``."""
    its = sorted(int(k) for k in diverged_at)
    if not its:
        return
    for k in sorted(set(its)):
        ax.axvline(k, color="C3", linewidth=0.8, linestyle=":")
    top = ax.get_xaxis_transform()
    ax.plot(its, np.ones(len(its)), "x", color="C3", mew=1.5, transform=top, clip_on=False)
    text = f"diverged at\niteration {span(its)}\n({len(its)} of {n_seeds} seeds)"
    _note(ax, 0.5, y, text + (f"\n{extra}" if extra else ""), fontsize=8,
          bbox={**_BOX, "alpha": 0.85, "pad": 2})  # fmt: skip


def _draw_predicted(ax, predicted: pd.DataFrame, metric: str, color: str = "black", label=None):
    """The predicted curve of ``metric`` (its finite values) as a dashed line."""
    finite = predicted[np.isfinite(predicted[metric].to_numpy(dtype=float))]
    ax.plot(finite["iteration"], finite[metric] * _scale(metric), color=color, label=label,
            **PREDICTED_STYLE)  # fmt: skip


def digit_image(image: np.ndarray, *, title: str) -> Figure:
    """One grey-scale ``image`` ((28, 28), or a flat square vector) under ``title``."""
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
    ax.set(xticks=[], yticks=[])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _draw_reference(ax_loss, ax_acc, reference, label: str) -> None:
    """The closed-form optimum as horizontal lines: loss, train and test accuracy."""
    ax_loss.axhline(reference.loss, **REFERENCE_STYLE, label=f"{label} ({reference.loss:.4f})")
    for split, style in (("train", "--"), ("test", "-.")):
        value = 100 * getattr(reference, f"{split}_acc")
        shown = f"{label}, {split} ({value:.2f} %)"
        ax_acc.axhline(value, **{**REFERENCE_STYLE, "linestyle": style}, label=shown)


def _draw_study(ax_loss, ax_acc, study: pd.DataFrame) -> None:
    """The study's reported points as black markers."""
    check_frame(study, "study", ["iteration", *METRICS])
    loss = study.dropna(subset=["train_loss"])
    ax_loss.plot(loss["iteration"], loss["train_loss"], "kx", label="study (one unseeded run)")
    for metric, marker in (("train_acc", "ks"), ("test_acc", "k^")):
        points = study.dropna(subset=[metric])
        label = f"study, {metric.split('_')[0]}"
        ax_acc.plot(points["iteration"], 100 * points[metric], marker, markerfacecolor="none",
                    label=label)  # fmt: skip


def training_curves(
    history: pd.DataFrame,
    *,
    title: str,
    reference=None,
    reference_label: str = "closed-form optimum",
    study: pd.DataFrame | None = None,
    diverged_at: Sequence[int] = (),
    predicted: pd.DataFrame | None = None,
) -> Figure:
    """Training loss (left) and train/test accuracy (right) of ``history`` against the iteration,
    with the optional ``reference``, ``predicted`` loss, ``study`` points and ``diverged_at``."""
    check_frame(history, "history", ["iteration", *METRICS])
    n_seeds = history["seed"].nunique() if "seed" in history.columns else 1
    fig = Figure(figsize=(PRINT_WIDTH, 4.9), dpi=DPI)
    ax_loss, ax_acc = fig.subplots(1, 2, sharex=True)
    _draw_metric(ax_loss, history, "train_loss", color=COLORS["train_loss"], label="training loss")
    _draw_metric(ax_acc, history, "train_acc", color=COLORS["train_acc"], label="train")
    _draw_metric(ax_acc, history, "test_acc", color=COLORS["test_acc"], label="test")
    if predicted is not None:
        check_frame(predicted, "predicted", ["iteration", "train_loss"])
        _draw_predicted(ax_loss, predicted, "train_loss", label=PREDICTED_LABEL)
    if reference is not None:
        _draw_reference(ax_loss, ax_acc, reference, reference_label)
    if study is not None:
        _draw_study(ax_loss, ax_acc, study)
    loss = history["train_loss"].to_numpy(dtype=float)
    loss = loss[np.isfinite(loss)]
    if loss.size and not diverged_at:
        low, high = float(loss.min()), float(loss.max())
        pad = 0.05 * max(high - low, 1e-3)
        low = low - pad if reference is None else min(low - pad, reference.loss - 0.01)
        ax_loss.set_ylim(low, high + pad)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel(ITERATION_LABEL)
        ax.grid(alpha=0.3)
        _mark_divergence(ax, diverged_at, n_seeds)
    _clip_percent(ax_acc)
    ax_loss.set(ylabel="training loss", title="Training loss")
    ax_acc.set(ylabel="accuracy (%)", title="Accuracy")
    _key_below(fig, (ax_loss, ax_acc), title)
    return fig


def _key_below(fig: Figure, axes, title: str, bottom: float | None = None) -> None:
    """One two-column key for the panels ``axes`` below them (above ``bottom``), and the title."""
    pairs = [ax.get_legend_handles_labels() for ax in axes]
    handles, labels = [h for p in pairs for h in p[0]], [text for p in pairs for text in p[1]]
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=LEGEND_SIZE, frameon=False)
    fig.suptitle(title, fontsize=10)
    bottom = 0.034 * math.ceil(len(labels) / 2) + 0.01 if bottom is None else bottom
    fig.tight_layout(rect=(0, bottom, 1, 1))


def _shared_limits(values: np.ndarray, *, log: bool, room: float = 1.6) -> tuple[float, float]:
    """Limits holding every finite value, ``room`` (a factor) above a loss for diverging runs."""
    finite = values[np.isfinite(values) & ((values > 0) if log else True)]
    if finite.size == 0:
        return (0.1, 1.0) if log else (0.0, 100.0)
    low, high = float(finite.min()), float(finite.max())
    if log:
        return low / 1.08, high * room
    pad = 0.05 * max(high - low, 1.0)
    return max(low - pad, 0.0), min(high + pad, 100.0)


def _draw_diverged(ax, runs: pd.DataFrame, metric: str, limits: tuple[float, float]) -> str:
    """Each diverged seed as a thin line, clipped to ``limits``; returns the clip legend."""
    low, high = limits
    clipped = set()
    for _, rows in runs.groupby("seed"):
        x = rows["iteration"].to_numpy()
        y = rows[metric].to_numpy(dtype=float) * _scale(metric)
        keep = np.isfinite(y)
        x, y = x[keep], y[keep]
        ax.plot(x, y, color=COLORS[metric], linewidth=0.7, marker=".", markersize=3, alpha=0.7)
        for side, marker, edge in ((y > high, "^", high), (y < low, "v", low)):
            if not side.any():  # an empty unclipped line would stretch the layout to (0, 0)
                continue
            clipped.add(marker)
            ax.plot(x[side], np.full(side.sum(), edge), marker, color=COLORS[metric],
                    markersize=4, clip_on=False, linestyle="none")  # fmt: skip
    names = {"^": "\u25b2 above the axis", "v": "\u25bc below the axis"}
    return "\n".join(names[m] for m in sorted(clipped))


def _grid_panel(ax, cell: pd.DataFrame, runs: pd.DataFrame, metric: str, limits, last: int,
                predicted: pd.DataFrame) -> None:  # fmt: skip
    """One configuration: its non-diverged seeds' mean and CI, diverged seeds clipped, notes."""
    failed = "status" in runs.columns and (runs["status"] != "ok").any()
    runs = runs.dropna(subset=["seed"])
    diverged = runs[runs["diverged_at"].notna()]
    kept = cell[~cell["seed"].isin(diverged["seed"])]
    if not kept.empty:
        _draw_metric(ax, kept, metric, color=COLORS[metric], label=METRICS[metric])
    extra = _draw_diverged(ax, cell[cell["seed"].isin(diverged["seed"])], metric, limits)
    if not predicted.empty:
        _draw_predicted(ax, predicted, metric)
    stops = diverged["diverged_at"].astype(int).tolist()
    # A panel whose every seed diverged gets the short x range of its runs.
    ax.set_xlim(0, max(stops) + 1 if stops and kept.empty else last)
    _mark_divergence(ax, stops, len(runs), y=0.35 if metric == "train_loss" else 0.65, extra=extra)
    unstable = int((runs["outcome"] == "unstable").sum()) if "outcome" in runs else 0
    if unstable:
        # Where the curves are not: high for a loss, low for an accuracy.
        y, va = (0.93, "top") if metric == "train_loss" else (0.05, "bottom")
        _note(ax, 0.5, y, f"unstable: {unstable} of {len(runs)} seeds\n(clipped to the axis)",
              va=va, fontsize=7, bbox={**_BOX, "alpha": 0.9})  # fmt: skip
    if failed or runs.empty:
        _note(ax, 0.5, 0.5, "failed" if failed else "no result")


def grid_curves(
    histories: pd.DataFrame,
    seeds: pd.DataFrame,
    *,
    metric: str,
    predicted: pd.DataFrame | None = None,
) -> Figure:
    """Small multiples of ``metric``: a row per lr, a column per batch size."""
    _check_metric(metric)
    columns = ["lr", "batch_size", "seed", "iteration", metric]
    if predicted is None:
        predicted = pd.DataFrame(columns=["lr", "batch_size", "iteration", metric])
    check_frame(predicted, "predicted", ["lr", "batch_size", "iteration", metric])
    if histories.empty:  # every cell failed: the panels say so
        histories = pd.DataFrame(columns=columns)
    check_frame(histories, "histories", columns)
    check_frame(seeds, "seeds", ["lr", "batch_size", "seed", "diverged_at"])
    lrs = sorted(seeds["lr"].unique(), reverse=True)
    batch_sizes = sorted(seeds["batch_size"].unique())
    width = min(PRINT_WIDTH, max(1.65 * len(batch_sizes) + 0.6, 4.8))
    fig = Figure(figsize=(width, 1.75 * len(lrs) + 1.0), dpi=DPI)
    axes = fig.subplots(len(lrs), len(batch_sizes), sharex=False, sharey=True, squeeze=False)
    # The shared axis is set by the stable seeds: an unstable run's growing loss would squash
    # every other panel (it is drawn clipped, and its panel says so).
    keys = ["lr", "batch_size", "seed"]
    stable = seeds["outcome"] == "stable" if "outcome" in seeds else seeds["diverged_at"].isna()
    values = histories.merge(seeds[stable][keys], on=keys)[metric].to_numpy(dtype=float)
    limits = _shared_limits(values * _scale(metric), log=metric == "train_loss")
    last = int(histories["iteration"].max()) if len(histories) else 1
    for (i, lr), (j, batch_size) in itertools.product(enumerate(lrs), enumerate(batch_sizes)):
        ax = axes[i, j]
        cell, runs, curve = (
            frame[(frame["lr"] == lr) & (frame["batch_size"] == batch_size)]
            for frame in (histories, seeds, predicted)
        )
        _grid_panel(ax, cell, runs, metric, limits, last, curve)
        ax.set_title(f"lr = {lr:g}, B = {batch_size}", fontsize=9)
        ax.grid(alpha=0.3, which="both" if metric == "train_loss" else "major")
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        if i == len(lrs) - 1:
            ax.set_xlabel("iteration")
        if j == 0:
            ax.set_ylabel(METRICS[metric], fontsize=9)
    _shared_y(axes[0, 0], limits, log=metric == "train_loss")
    fig.suptitle(_grid_title(seeds, metric), fontsize=10)
    if predicted.empty:
        fig.tight_layout()
        return fig
    key = [Line2D([], [], color=COLORS[metric], linewidth=1.4, label="mean of the seeds"),
           Line2D([], [], color="black", label=PREDICTED_LABEL, **PREDICTED_STYLE)]  # fmt: skip
    fig.legend(handles=key, loc="lower center", ncol=2, fontsize=LEGEND_SIZE, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _shared_y(ax, limits: tuple[float, float], *, log: bool) -> None:
    """The one vertical axis of the panels: limits, and plain tick labels on a log scale."""
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(FixedLocator(_log_ticks(*limits)))
        _plain(ax.yaxis)
    ax.set_ylim(*limits)


def _log_ticks(low: float, high: float, most: int = 8) -> list[float]:
    """The coarsest round ticks (10^k; 1, 3 x 10^k; ...) giving 3 to ``most`` in [low, high]."""
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    halves = tuple(m / 10 for m in range(10, 100, 5))  # 1, 1.5, 2, ..., 9.5
    steps = ((1,), (1, 3), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 6, 8), halves)
    candidates = [
        [t for t in (round(m * 10.0**k, 12) for k in decades for m in step) if low <= t <= high]
        for step in steps
    ]
    fitting = [ticks for ticks in candidates if 3 <= len(ticks) <= most]
    return fitting[0] if fitting else min(candidates, key=lambda t: abs(len(t) - 3))


def _grid_title(seeds: pd.DataFrame, metric: str) -> str:
    n_seeds = seeds.groupby(["lr", "batch_size"])["seed"].nunique().max()
    n_seeds = 0 if pd.isna(n_seeds) else int(n_seeds)
    spread = f"mean and 95 % CI of the mean over {n_seeds} seeds;\nthin line: one seed "
    spread = spread + "evaluated after every iteration" if n_seeds > 1 else "one seed"
    scale = ", log scale" if metric == "train_loss" else ""
    name = METRICS[metric].split(" (")[0].capitalize()
    return f"{name}{scale}, per learning rate x batch size (B);\n{spread}"


def examples_seen(histories: pd.DataFrame, seeds: pd.DataFrame) -> Figure:
    """Training loss against examples seen, a line per batch size, a panel per lr."""
    check_frame(histories, "histories", ["lr", "batch_size", "seed", "iteration", "train_loss"])
    check_frame(seeds, "seeds", ["lr", "batch_size", "seed", "diverged_at"])
    diverged = seeds.groupby("lr")["diverged_at"].apply(lambda d: d.notna().any())
    lrs = sorted(diverged.index[~diverged], reverse=True) or [None]
    fig = Figure(figsize=(min(PRINT_WIDTH, 2.2 + 2.6 * len(lrs)), 3.4), dpi=DPI)
    axes = fig.subplots(1, len(lrs), sharey=True, squeeze=False)[0]
    # An unstable seed's growing loss would set the shared axis.
    unstable = seeds[seeds["outcome"] == "unstable"] if "outcome" in seeds else seeds.iloc[:0]
    values = []
    for ax, lr in zip(axes, lrs, strict=True):
        left_out = sorted(unstable.loc[unstable["lr"] == lr, "batch_size"].unique())
        for batch_size, runs in histories[histories["lr"] == lr].groupby("batch_size", sort=True):
            if batch_size in left_out:
                continue
            band = seed_band(runs, "train_loss")
            _band(ax, (band["iteration"] + 1) * batch_size, band, 1.0, 0.2,
                  **batch_style(batch_size), markevery=0.2, markersize=4,
                  label=f"B = {batch_size}")  # fmt: skip
            values.append(band["mean"].to_numpy(dtype=float))
        ax.set_xscale("log")
        ax.set_xlabel("examples seen (log scale)")
        ax.grid(alpha=0.3, which="major")
        title = "no learning rate without divergence" if lr is None else f"lr = {lr:g}"
        if left_out:
            title += f"\n(B = {', '.join(map(str, left_out))} left out: unstable)"
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0].set_ylabel("training loss (log scale)")
    if values:
        _shared_y(axes[0], _shared_limits(np.concatenate(values), log=True, room=1.1), log=True)
        axes[-1].legend(fontsize=LEGEND_SIZE, loc="lower left")
    fig.suptitle("Training loss against the examples seen, per batch size B\n"
                 "mean and 95 % CI of the mean over seeds", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def _heatmap_cells(
    table: pd.DataFrame, value: str, lrs: list, batch_sizes: list
) -> tuple[np.ndarray, np.ndarray]:
    """The accuracies (%) of ``accuracy_heatmap`` (NaN: no stable seed) and each cell's text."""
    grid = np.full((len(lrs), len(batch_sizes)), np.nan)
    labels = np.full(grid.shape, "no result", dtype=object)
    for row in table.itertuples(index=False):
        i, j = lrs.index(row.lr), batch_sizes.index(row.batch_size)
        acc = getattr(row, value)
        unstable = getattr(row, "n_unstable", 0)
        if row.n_diverged == row.n_seeds and row.n_seeds > 0:
            labels[i, j] = "diverged"
        elif row.n_seeds > 0 and row.n_diverged + unstable == row.n_seeds:
            labels[i, j] = "unstable"
        elif np.isfinite(acc):
            grid[i, j] = 100 * acc
            ci = getattr(row, value.replace("_mean", "_ci"), math.nan)
            labels[i, j] = f"{100 * acc:.2f} %" + (f"\n± {100 * ci:.2f}" if np.isfinite(ci) else "")
            if row.n_diverged:
                labels[i, j] += f"\n({row.n_diverged}/{row.n_seeds} diverged)"
    return grid, labels


def accuracy_heatmap(
    table: pd.DataFrame, *, value: str = "final_test_acc_mean", title: str | None = None
) -> Figure:
    """Heatmap of the accuracy ``value`` of ``table``, lr (rows) x batch size (columns)."""
    accuracies = [c for c in COLUMN_LABELS if c.endswith("_acc_mean")]
    if value not in accuracies:
        raise ValueError(f"value must be one of {accuracies}, got {value!r}")
    check_frame(table, "table", ["lr", "batch_size", value, "n_diverged", "n_seeds"])
    lrs = sorted(table["lr"].unique(), reverse=True)
    batch_sizes = sorted(table["batch_size"].unique())
    grid, labels = _heatmap_cells(table, value, lrs, batch_sizes)
    size = (min(PRINT_WIDTH, 1.2 * len(batch_sizes) + 2.4), 0.8 * len(lrs) + 1.5)
    fig = Figure(figsize=size, dpi=DPI)
    ax = fig.subplots()
    shown = grid[np.isfinite(grid)]
    low, high = (shown.min() - 1, shown.max() + 0.5) if shown.size else (0, 100)
    cmap = colormaps["YlGn"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=low, vmax=high, aspect="auto")
    for i, j in itertools.product(range(len(lrs)), range(len(batch_sizes))):
        dark = np.isfinite(grid[i, j]) and (grid[i, j] - low) > 0.65 * (high - low)
        color = "white" if dark else "black"
        ax.text(j, i, labels[i, j], ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(batch_sizes)), [str(b) for b in batch_sizes])
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set(xlabel="batch size", ylabel="learning rate")
    fig.colorbar(image, ax=ax).set_label("accuracy (%)")
    title = title or f"{COLUMN_LABELS[value].capitalize()}, mean ± 95 % CI over seeds"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def stability_plot(
    table: pd.DataFrame, *, lr_max: float, value: str = "final_train_loss_mean"
) -> Figure:
    """``value`` against the learning rate per batch size, ``lr_max`` marked."""
    if value not in COLUMN_LABELS:
        raise ValueError(f"value must be one of {sorted(COLUMN_LABELS)}, got {value!r}")
    check_frame(table, "table", ["lr", "batch_size", value, "n_diverged", "n_seeds"])
    if not (np.isfinite(lr_max) and lr_max > 0):
        raise ValueError(f"lr_max must be a positive finite number, got {lr_max!r}")
    fig = Figure(figsize=(6.4, 3.8), dpi=DPI)
    ax = fig.subplots()
    scale = _scale(value.removesuffix("_mean").removeprefix("final_"))
    ci = value.replace("_mean", "_ci")
    groups = list(table.sort_values("lr").groupby("batch_size"))
    # Larger batch sizes first and wider, so a line lying on another stays visible.
    for k, (batch_size, rows) in enumerate(groups):
        wider = len(groups) - k
        ok = rows[rows["n_diverged"] < rows["n_seeds"]]
        ax.plot(ok["lr"], ok[value] * scale, **batch_style(batch_size), markerfacecolor="none",
                markersize=5 + 2 * wider, linewidth=1.0 + 0.6 * wider, zorder=2 + k,
                label=f"batch size {batch_size}")  # fmt: skip
        if ci in ok.columns:
            ax.errorbar(ok["lr"], ok[value] * scale, yerr=ok[ci] * scale, fmt="none",
                        ecolor=batch_color(batch_size), capsize=3, zorder=2 + k)  # fmt: skip
        bad = rows[(rows["n_diverged"] == rows["n_seeds"]) & (rows["n_seeds"] > 0)]
        # At the top of the axis (a fraction of its height), above every error bar.
        ax.plot(bad["lr"], np.full(len(bad), 0.95), "x", color="C3", markersize=9, mew=2,
                transform=ax.get_xaxis_transform())  # fmt: skip
    if ((table["n_diverged"] == table["n_seeds"]) & (table["n_seeds"] > 0)).any():
        ax.plot([], [], "x", color="C3", mew=2, label="diverged (every seed)")
    ax.axvline(lr_max, color="C3", linestyle="--", linewidth=1.2)
    ax.text(lr_max, 0.02, f" $2/\\lambda_{{\\max}}$ = {lr_max:.4f}",
            transform=ax.get_xaxis_transform(), color="C3", fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    lrs = table["lr"].to_numpy(dtype=float)
    ax.set_xlim(min(lrs.min(), lr_max) / 2, max(lrs.max(), lr_max) * 2)
    ax.set_xlabel("learning rate (log scale)")
    label = COLUMN_LABELS[value]
    ax.set_ylabel(label + (" (%)" if scale != 1 else ""))
    title = f"{label.capitalize()} against the learning rate,\nwith the stability threshold"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=LEGEND_SIZE)
    fig.tight_layout()
    return fig


def _draw_subset(axes, n_prime: int, history: pd.DataFrame, optimum, predicted) -> None:
    """One N' of ``subset_curves`` in its colour on the (loss, accuracy, gap) panels."""
    ax_loss, ax_acc, ax_gap = axes
    color = size_color(n_prime)
    label = f"N' = {n_prime}"
    bands = {metric: seed_band(history, metric) for metric in METRICS}
    for ax, metric, style in ((ax_loss, "train_loss", "-"), (ax_acc, "train_acc", "-"),
                              (ax_acc, "test_acc", "--")):  # fmt: skip
        band = bands[metric]
        shown = label if metric != "test_acc" else None
        _band(ax, band["iteration"], band, _scale(metric), 0.15, style, color=color, label=shown)
    if optimum is not None and n_prime in optimum:
        ax_loss.axhline(optimum[n_prime], color=color, linestyle=":", linewidth=1.2)
    if predicted is not None:
        _draw_predicted(ax_loss, predicted[predicted["n_prime"] == n_prime], "train_loss")
    train, test = (bands[m].set_index("iteration")["mean"] for m in ("train_acc", "test_acc"))
    gap = (train - test).dropna()
    ax_gap.plot(gap.index, 100 * gap.to_numpy(), color=color, label=label)


def subset_curves(
    histories: pd.DataFrame,
    *,
    title: str,
    optimum: dict[int, float] | None = None,
    predicted: pd.DataFrame | None = None,
) -> Figure:
    """Training on N' images: loss and accuracy on S', test accuracy and gap, per N'."""
    if histories.empty:  # every cell failed: empty panels, and the key says so
        histories = pd.DataFrame(columns=["n_prime", "seed", "iteration", *METRICS])
    check_frame(histories, "histories", ["n_prime", "iteration", *METRICS])
    fig = Figure(figsize=(PRINT_WIDTH, 5.6), dpi=DPI)
    (ax_loss, ax_acc), (ax_gap, ax_key) = fig.subplots(2, 2)
    ax_acc.sharex(ax_loss)
    ax_gap.sharex(ax_loss)
    for n_prime, history in histories.groupby("n_prime"):
        _draw_subset((ax_loss, ax_acc, ax_gap), n_prime, history, optimum, predicted)
    ax_acc.plot([], [], "k-", label="on S' (training)")
    ax_acc.plot([], [], "k--", label="on the test set")
    if optimum is not None:
        ax_acc.plot([], [], "k:", label="least-squares optimum on S'\n(training loss)")
    if predicted is not None:
        label = f"training loss {PREDICTED_LABEL}\n(black, long dashes)"
        ax_acc.plot([], [], color="k", label=label, **PREDICTED_STYLE)
    ax_gap.axhline(0, color="0.35", linewidth=0.8)
    for ax, name, ylabel in (
        (ax_loss, "Training loss on S'", "training loss"),
        (ax_acc, "Accuracy", "accuracy (%)"),
        (ax_gap, "Train - test accuracy gap", "gap (percentage points)"),
    ):
        ax.set(title=name, ylabel=ylabel, xlabel=ITERATION_LABEL)
        ax.grid(alpha=0.3)
    _clip_percent(ax_acc)
    # One key for the three panels, in the fourth.
    handles, labels = ax_acc.get_legend_handles_labels()
    if histories.empty:
        ax_key.text(0.5, 0.8, "no results: every cell failed", ha="center", color="C3")
    ax_key.axis("off")
    ax_key.legend(handles, labels, fontsize=LEGEND_SIZE + 1, loc="center", frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def size_curves(sizes: pd.DataFrame, *, inputs: int, title: str) -> Figure:
    """Task 5 against N': losses and test accuracy of least squares and SGD."""
    check_frame(sizes, "sizes", SIZE_COLUMNS)
    fig = Figure(figsize=(PRINT_WIDTH, 4.6), dpi=DPI)
    ax_loss, ax_acc = fig.subplots(1, 2, sharex=True)
    fits = {"least squares (converged SGD)": ("ls", "C3"), "SGD at the budget": ("sgd", "C0")}
    for label, (key, color) in fits.items():
        _mean_band(ax_loss, sizes, f"{key}_test_loss", color=color, label=f"{label}, test")
        _mean_band(ax_loss, sizes, f"{key}_train_loss", color=color, linestyle=":",
                   label=f"{label}, on S'")  # fmt: skip
        _mean_band(ax_acc, sizes, f"{key}_test_acc", scale=100.0, color=color, label=label)
    predicted = sizes.groupby("n_prime")[["predicted_train_loss", "predicted_test_loss"]].mean()
    for column in predicted.columns:
        label = f"SGD {PREDICTED_LABEL}" if column.endswith("test_loss") else None  # type: ignore[assignment]
        ax_loss.plot(predicted.index, predicted[column], color="black", label=label,
                     **PREDICTED_STYLE)  # fmt: skip
    for ax in (ax_loss, ax_acc):
        ax.axvline(inputs, color="0.4", linewidth=0.9, linestyle="-.")
        ax.set_xscale("log")
        ax.set_xlabel("training-set size N' (log scale)")
        ax.grid(alpha=0.3, which="both")
    ax_loss.text(inputs, 0.98, f" N' = {inputs}", transform=ax_loss.get_xaxis_transform(),
                 va="top", fontsize=8, color="0.3")  # fmt: skip
    ax_loss.set_yscale("log")
    # The interpolating fit's loss on S' (0 up to rounding below N' = inputs) leaves the axis.
    floor = sizes.groupby("n_prime")["sgd_train_loss"].mean().min()
    if np.isfinite(floor) and floor > 0:
        ax_loss.set_ylim(bottom=floor / 3)
    ax_loss.set(ylabel="loss (log scale)", title="Loss on the test set and on S'")
    ax_acc.set(ylabel="test accuracy (%)", title="Test accuracy")
    _clip_percent(ax_acc)
    _key_below(fig, (ax_loss,), title, bottom=0.17)
    return fig


def _mean_band(ax, frame: pd.DataFrame, column: str, *, scale: float = 1.0, **style) -> None:
    """The mean of ``column`` over seeds against N' with its 95 % CI as a band."""
    stats = frame.groupby("n_prime")[column].agg(["mean", ci95]).fillna({"ci95": 0.0})
    x, mean, half = stats.index.to_numpy(), stats["mean"] * scale, stats["ci95"] * scale
    ax.plot(x, mean, marker="o", markersize=3, **style)
    ax.fill_between(x, mean - half, mean + half, color=style.get("color"), alpha=0.18)


def _clip_percent(ax) -> None:
    """Keep an accuracy axis within 0-100 % (a wide interval of few seeds may pass them)."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0.0), min(high, 100.0))


def spectrum(eigenvalues: np.ndarray, *, mean_norm: float, max_norm: float, title: str) -> Figure:
    """The eigenvalues of S = X X^T / N, largest first, with lambda_max and ||x||^2 marked."""
    values = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    if values.ndim != 1 or values.size == 0 or not values[0] > 0:
        raise ValueError("eigenvalues must be a non-empty 1-D array with a positive maximum")
    shown = values[values > 1e-10 * values[0]]
    fig = Figure(figsize=(PRINT_WIDTH, 3.4), dpi=DPI)
    ax = fig.subplots()
    label = f"eigenvalues of S ({values.size - shown.size} below " + r"$10^{-10}\lambda_{\max}$ "
    ax.plot(np.arange(1, shown.size + 1), shown, ".", color="C0", markersize=3,
            label=label + "left out)")  # fmt: skip
    for value, (color, style), label in (
        (max_norm, ("C4", ":"), r"$\max\,\|x\|^2$"),
        (mean_norm, ("C2", "-."), r"$\mathrm{mean}\,\|x\|^2 = \mathrm{tr}\,S$"),
        (values[0], ("C3", "--"), r"$\lambda_{\max}$"),
    ):
        ax.axhline(
            value, color=color, linestyle=style, linewidth=1.1, label=f"{label} = {value:.3g}"
        )
    ax.set_yscale("log")
    ax.set(xlabel="rank of the eigenvalue (1 = largest)", ylabel="eigenvalue")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=LEGEND_SIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# The states of a sweep cell (``linmnist.report.outcomes.CELL_STATES``) on the stability map:
# a marker shape per kind, hollow where only some seeds, filled where every seed.
STATE_MARKERS = {
    "stable": ("o", "0.65", True),
    "unstable (some seeds)": ("s", "0.1", False),
    "unstable (every seed)": ("s", "0.1", True),
    "diverged (some seeds)": ("X", "0.1", False),
    "diverged (every seed)": ("X", "0.1", True),
}


def _accuracy_panel(ax, table: pd.DataFrame) -> None:
    """Per batch size, the stable seeds' mean final test accuracy and CI against lr."""
    for batch_size, rows in table.sort_values("lr").groupby("batch_size"):
        style = batch_style(batch_size)
        stable = rows[rows["state"] == "stable"]
        mean, ci = 100 * stable["final_test_acc_mean"], 100 * stable["final_test_acc_ci"]
        ax.fill_between(stable["lr"], mean - ci, mean + ci, color=style["color"], alpha=0.25,
                        linewidth=0)  # fmt: skip
        ax.plot(stable["lr"], mean, **style, markersize=4, label=f"batch size {batch_size}")
        # A stable cell between two that are not has no band: its CI as an error bar.
        ok = rows["state"].eq("stable")
        alone = (~ok.shift(1, fill_value=False) & ~ok.shift(-1, fill_value=False))[ok].to_numpy()
        ax.errorbar(stable["lr"][alone], mean[alone], yerr=ci[alone].fillna(0), fmt="none",
                    ecolor=style["color"], capsize=2)  # fmt: skip
        some = rows[rows["state"].isin(STATE_MARKERS) & ~ok & rows["final_test_acc_mean"].notna()]
        ax.errorbar(some["lr"], 100 * some["final_test_acc_mean"], capsize=2,
                    yerr=100 * some["final_test_acc_ci"].fillna(0), fmt=style["marker"],
                    color=style["color"], markerfacecolor="none", markersize=6)  # fmt: skip
    mixed = table["state"].isin(STATE_MARKERS) & (table["state"] != "stable")
    if (mixed & table["final_test_acc_mean"].notna()).any():
        ax.errorbar([], [], fmt="o", color="0.3", markerfacecolor="none", capsize=2,
                    label="mean of the stable seeds\nwhere other seeds were not")  # fmt: skip


def _state_panel(ax, table: pd.DataFrame, sizes: list, edges: pd.DataFrame | None) -> None:
    """A row per batch size, a marker per lr (the cell's state), ``edges`` as bars."""
    for state, (marker, color, filled) in STATE_MARKERS.items():
        cells = table[table["state"] == state]
        rows = [sizes.index(b) for b in cells["batch_size"]]
        ax.scatter(cells["lr"], rows, marker=marker, s=42, facecolors=color if filled else "none",
                   edgecolors=color, linewidths=1.2, label=state)  # fmt: skip
    ax.set_yticks(range(len(sizes)), [f"B = {b}" for b in sizes])
    ax.set_ylim(len(sizes) - 0.5, -0.5)
    if edges is None:
        return
    check_frame(edges, "edges", ["batch_size", "lr_edge"])
    for batch_size, lr in edges[edges["batch_size"].isin(sizes)][["batch_size", "lr_edge"]].values:
        row = sizes.index(batch_size)
        ax.plot([lr, lr], [row - 0.42, row + 0.42], color="black", linewidth=2.2)
    ax.plot([], [], color="black", linewidth=2.2, label="predicted edge")


def stability_map(
    table: pd.DataFrame,
    bounds: Bounds,
    *,
    study_lrs: Sequence[float],
    edges: pd.DataFrame | None = None,
) -> Figure:
    """Final test accuracy and each cell's state against lr, with ``bounds`` and ``edges``."""
    check_frame(
        table, "table", ["batch_size", "lr", "state", "final_test_acc_mean", "final_test_acc_ci"]
    )
    fig = Figure(figsize=(PRINT_WIDTH, 6.6), dpi=DPI)
    top, bottom = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1.0], "hspace": 0.08}
    )
    sizes = sorted(table["batch_size"].unique())
    _accuracy_panel(top, table)
    _state_panel(bottom, table, sizes, edges)
    top.set_ylabel("final test accuracy (%)")
    _clip_percent(top)
    top.set_title("Final test accuracy and stability against the learning rate", pad=12)
    top.grid(alpha=0.3, which="both")
    for name, (color, style, label) in BOUND_STYLES.items():
        value = getattr(bounds, name)
        for ax in (top, bottom):
            ax.axvline(value, color=color, linestyle=style, linewidth=1.1, zorder=0)
        top.plot([], [], color=color, linestyle=style, label=f"{label} = {value:.4f}")
    for lr in study_lrs:
        top.plot(lr, 1.0, "v", color="0.2", markersize=7, clip_on=False,
                 transform=top.get_xaxis_transform())  # fmt: skip
    top.plot([], [], "v", color="0.2", label="the study's lr")
    for ax, title in ((top, None), (bottom, "seeds")):  # each key right of its panel
        ax.legend(fontsize=LEGEND_SIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0, title=title, title_fontsize=LEGEND_SIZE)  # fmt: skip
    bottom.set_xscale("log")
    lrs = np.concatenate([table["lr"].to_numpy(dtype=float), list(study_lrs)])
    bottom.set_xlim(lrs.min() / 1.5, lrs.max() * 1.5)
    bottom.set_xlabel("learning rate (log scale)")
    fig.subplots_adjust(left=0.09, right=0.68, top=0.93, bottom=0.09)
    return fig


def _hero_loss_panel(ax, table: pd.DataFrame, lr_max: float, predicted) -> None:
    """Final training loss of the stable seeds against lr per batch size (prediction dashed)."""
    top = 3 * float(table.loc[table["state"] == "stable", "final_train_loss_mean"].max())
    for batch_size, rows in table.sort_values("lr").groupby("batch_size"):
        style = batch_style(batch_size)
        if predicted is not None:
            mine = predicted[predicted["batch_size"] == batch_size].sort_values("lr")
            mine = mine[np.isfinite(mine["train_loss"]) & (mine["train_loss"] <= top)]
            ax.plot(mine["lr"], mine["train_loss"], color=style["color"], **PREDICTED_STYLE)
        stable = rows[rows["state"] == "stable"]
        ax.plot(stable["lr"], stable["final_train_loss_mean"], **style, markersize=4,
                label=f"B = {batch_size}")  # fmt: skip
        lost = rows[rows["state"] != "stable"]
        ax.plot(lost["lr"], np.ones(len(lost)), "x", color=style["color"], markersize=6,
                clip_on=False, transform=ax.get_xaxis_transform())  # fmt: skip
    ax.axvline(lr_max, **{**REFERENCE_STYLE, "color": "C3"})
    ax.text(lr_max, 0.03, r" $2/\lambda_{\max}$", color="C3", fontsize=LEGEND_SIZE,
            transform=ax.get_xaxis_transform())  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel=r"learning rate $\eta$",
           ylabel="final training loss (stable seeds)")  # fmt: skip
    ax.set_title("(a) what the learning rate buys, per batch size", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    _plain(ax.yaxis, lambda v, _: f"{v:g}")
    ax.plot([], [], "x", color="0.3", label="not stable (at the top)")
    if predicted is not None:
        ax.plot([], [], color="0.3", label=PREDICTED_LABEL, **PREDICTED_STYLE)


def _hero_steps_panel(ax, steps: pd.DataFrame, hyperbola, target: str) -> None:
    """Steps to a target loss against the batch size, with the fitted hyperbola."""
    reached = steps.dropna(subset=["steps"])
    for row in reached.itertuples():
        ax.plot(row.batch_size, row.steps, **{**batch_style(row.batch_size), "linestyle": "none"})
    grid = np.geomspace(reached["batch_size"].min(), reached["batch_size"].max(), 200)
    ax.plot(grid, hyperbola.steps(grid), color="0.2", linewidth=1.2,
            label=r"$S = S_{\min} + E_{\min}/B$")  # fmt: skip
    ax.axvline(hyperbola.b_crit, color="C3", linestyle=":", linewidth=1.2,
               label=rf"$B_{{\mathrm{{crit}}}} = {hyperbola.b_crit:.0f}$")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="batch size $B$", ylabel=f"steps to reach {target}")
    ax.set_title("(b) what the batch size buys, per step", fontsize=9)
    _plain(ax.yaxis, lambda v, _: f"{v:g}" if str(v)[0] in "25" else "")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=LEGEND_SIZE, loc="upper right")


def hero(
    table: pd.DataFrame,
    lr_max: float,
    steps: pd.DataFrame,
    hyperbola,
    *,
    target: str,
    predicted: pd.DataFrame | None = None,
) -> Figure:
    """The summary figure: (a) final loss against lr; (b) steps to ``target`` against B."""
    check_frame(table, "table", ["batch_size", "lr", "state", "final_train_loss_mean"])
    if predicted is not None:
        check_frame(predicted, "predicted", ["batch_size", "lr", "train_loss"])
    check_frame(steps, "steps", ["batch_size", "steps"])
    fig = Figure(figsize=(PRINT_WIDTH, 2.8), dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    _hero_loss_panel(left, table, lr_max, predicted)
    _hero_steps_panel(right, steps, hyperbola, target)
    # The batch sizes' key below both panels: inside (a) it would cover a curve somewhere.
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=LEGEND_SIZE)
    return fig
