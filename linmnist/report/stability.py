"""The stability map: where minibatch SGD on the quadratic loss diverges, per batch size.

The ``stability`` sweep of ``linmnist/grids.toml`` trains every learning rate of a log grid
with every batch size over a few seeds. From its results (``load_task(runs_dir,
"stability")``, one row per cell and seed):

* ``accuracy_table``: final test accuracy against the learning rate per batch size, mean and
  spread over the seeds that did not diverge, and how many seeds diverged;
* ``divergence_boundary``: per batch size, the largest learning rate at which no seed
  diverged and the smallest at which one did; the observed boundary lies between them;
* ``predicted_bounds``: the learning rates the training inputs X predict:
  2 / lambda_max of X X^T / N, below which full-batch gradient descent is stable
  (``linmnist.engine.analysis.stability_threshold``); 2 / max ||x||^2, below which a step on one
  sample never overshoots on any training image (it multiplies that sample's residual by
  1 - lr ||x||^2); and 2 / mean ||x||^2, the classical step-size limit of single-sample
  least mean squares;
* ``study_positions``: where the study's learning rates sit on the map;
* ``sweep_run``: the logged run that computed the whole sweep (its measured wall time), and
  ``cost_text`` saying it;
* ``format_accuracy``, ``format_boundary``: the tables as display strings;
* ``discussion``: the section's text, every number taken from the above;
* ``stability_map``: the figure.

A run "diverges" as ``linmnist.engine.sgd.train`` defines it: its training loss became non-finite
or exceeded ``linmnist.engine.sgd.DIVERGENCE_LOSS``, and it was stopped there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from linmnist.engine.analysis import stability_threshold
from linmnist.experiments.results import read_run_log
from linmnist.report.summary import check_frame, seed_outcomes

# The study's three learning rates (SPEC, Task 3).
STUDY_LRS = (0.1, 0.01, 0.001)
TASK = "stability"
# The training loss at W = 0: 0.5 ||y||^2 = 0.5 for every one-hot label.
INITIAL_LOSS = 0.5
DPI = 110
BOUND_STYLES = {
    "lr_max": ("C3", "--", r"$2/\lambda_{\max}$"),
    "mean_sample_lr": ("C2", "-.", r"$2/\mathrm{mean}\,\|x\|^2$"),
    "per_sample_lr": ("C4", ":", r"$2/\max\,\|x\|^2$"),
}
_SEED_COLUMNS = ("lr", "batch_size", "status", "seed", "diverged_at", "final_test_acc")


@dataclass(frozen=True)
class Bounds:
    """Learning-rate bounds computed from the training inputs.

    Attributes
    ----------
    lambda_max : float
        Largest eigenvalue of X X^T / N.
    lr_max : float
        2 / lambda_max: the full-batch gradient-descent limit.
    curvature_mean, curvature_max : float
        Mean and maximum over the training samples of the per-sample curvature ||x||^2.
    mean_sample_lr : float
        2 / curvature_mean: the step-size limit of single-sample least mean squares.
    per_sample_lr : float
        2 / curvature_max: below it no single-sample step overshoots on any sample.
    n_samples : int
        Training samples N.
    """

    lambda_max: float
    lr_max: float
    curvature_mean: float
    curvature_max: float
    mean_sample_lr: float
    per_sample_lr: float
    n_samples: int


def predicted_bounds(X: np.ndarray) -> Bounds:
    """The learning-rate bounds of the training inputs ``X`` (D, N), feature-major."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(f"X must be a 2-D (features, samples) array with samples, got {X.shape}")
    threshold = stability_threshold(X)
    norms = np.einsum("ij,ij->j", X, X, dtype=np.float64)
    mean, peak = float(norms.mean()), float(norms.max())
    return Bounds(
        lambda_max=threshold.lambda_max,
        lr_max=threshold.lr_max,
        curvature_mean=mean,
        curvature_max=peak,
        mean_sample_lr=2.0 / mean,
        per_sample_lr=2.0 / peak,
        n_samples=X.shape[1],
    )


def accuracy_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per (batch size, lr), over the seeds that did not diverge.

    Parameters
    ----------
    seeds : DataFrame
        ``linmnist.experiments.results.load_task(runs_dir, "stability")``.

    Returns
    -------
    DataFrame
        One row per cell, sorted by batch size then lr, columns batch_size, lr, status
        ("ok" or "failed"), n_seeds, n_diverged, diverged_at_min, diverged_at_max,
        final_test_acc_mean, final_test_acc_sd, final_test_acc_min, final_test_acc_max
        (fractions; NaN when every seed diverged) and final_train_loss_mean when present.
    """
    check_frame(seeds, "seeds", _SEED_COLUMNS)
    rows = []
    for (batch_size, lr), group in seeds.groupby(["batch_size", "lr"], sort=True):
        counts, _, converged = seed_outcomes(group)
        acc = converged["final_test_acc"].astype(float)
        row = {
            "batch_size": int(batch_size),
            "lr": float(lr),
            **counts,
            "final_test_acc_mean": acc.mean() if len(acc) else math.nan,
            "final_test_acc_sd": acc.std(ddof=1) if len(acc) > 1 else math.nan,
            "final_test_acc_min": acc.min() if len(acc) else math.nan,
            "final_test_acc_max": acc.max() if len(acc) else math.nan,
        }
        if "final_train_loss" in converged:
            loss = converged["final_train_loss"].astype(float)
            row["final_train_loss_mean"] = loss.mean() if len(loss) else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        raise ValueError("seeds holds no cell of the sweep")
    return table.astype({"diverged_at_min": "Int64", "diverged_at_max": "Int64"})


def divergence_boundary(table: pd.DataFrame) -> pd.DataFrame:
    """The observed divergence boundary of each batch size.

    Parameters
    ----------
    table : DataFrame
        ``accuracy_table(seeds)``; failed cells and cells without seeds are left out.

    Returns
    -------
    DataFrame
        Indexed by batch_size, columns: largest_stable_lr (the largest lr below
        first_diverging_lr, where no seed diverged; NaN if divergence starts at the sweep's
        smallest lr), first_diverging_lr (the smallest lr at which a seed diverged; NaN if
        none did), diverged_there ("k/n" seeds at first_diverging_lr; missing if none),
        diverged_at_there
        (the earliest iteration at which one of them diverged), all_diverge_lr (the
        smallest lr from which every seed diverged at every larger lr of the sweep; NaN if
        none), and lr_low, lr_high (the sweep's range of lr for that batch size).
    """
    check_frame(table, "table", ["batch_size", "lr", "status", "n_seeds", "n_diverged"])
    rows = []
    for batch_size, cells in table.groupby("batch_size", sort=True):
        cells = cells[(cells["status"] == "ok") & (cells["n_seeds"] > 0)].sort_values("lr")
        if cells.empty:
            continue
        lrs = cells["lr"].to_numpy(dtype=float)
        some = (cells["n_diverged"] > 0).to_numpy()
        every = (cells["n_diverged"] == cells["n_seeds"]).to_numpy()
        first = int(np.argmax(some)) if some.any() else len(lrs)
        tail = np.flatnonzero(~every)
        start = tail[-1] + 1 if len(tail) else 0
        row = {
            "batch_size": int(batch_size),
            "largest_stable_lr": lrs[first - 1] if first > 0 else math.nan,
            "first_diverging_lr": lrs[first] if first < len(lrs) else math.nan,
            "diverged_there": None,
            "diverged_at_there": pd.NA,
            "all_diverge_lr": lrs[start] if start < len(lrs) else math.nan,
            "lr_low": lrs[0],
            "lr_high": lrs[-1],
        }
        if first < len(lrs):
            there = cells.iloc[first]
            row["diverged_there"] = f"{int(there['n_diverged'])}/{int(there['n_seeds'])}"
            row["diverged_at_there"] = there["diverged_at_min"]
        rows.append(row)
    if not rows:
        raise ValueError("table holds no finished cell of the sweep")
    boundary = pd.DataFrame(rows).set_index("batch_size")
    return boundary.astype({"diverged_at_there": "Int64"})


def study_positions(
    table: pd.DataFrame, bounds: Bounds, *, lrs: Sequence[float] = STUDY_LRS
) -> pd.DataFrame:
    """Where the study's learning rates sit: their ratio to each bound and the sweep's outcome.

    Returns
    -------
    DataFrame
        Indexed by lr, columns ``x 2/lambda_max``, ``x 2/mean||x||^2``, ``x 2/max||x||^2``
        (lr divided by each bound), then one column per batch size of the sweep,
        ``batch size B``: "diverged (k/n seeds)", the mean final test accuracy in %
        (with "k/n diverged" when some seeds did), or "not in the sweep".
    """
    check_frame(table, "table", ["batch_size", "lr", "n_seeds", "n_diverged"])
    rows = []
    for lr in lrs:
        row = {
            "lr": lr,
            "x 2/lambda_max": lr / bounds.lr_max,
            "x 2/mean||x||^2": lr / bounds.mean_sample_lr,
            "x 2/max||x||^2": lr / bounds.per_sample_lr,
        }
        for batch_size, cells in table.groupby("batch_size", sort=True):
            match = cells[np.isclose(cells["lr"], lr, rtol=1e-9, atol=0)]
            row[f"batch size {batch_size}"] = (
                _outcome(match.iloc[0]) if len(match) else ("not in the sweep")
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("lr")


def format_accuracy(table: pd.DataFrame) -> pd.DataFrame:
    """``accuracy_table`` as display strings: lr down, batch size across, "mean ± sd" of the
    final test accuracy in %, with the seeds that diverged ("diverged (k/n)" when all did)."""
    check_frame(table, "table", ["batch_size", "lr", "n_seeds", "n_diverged"])
    cells = table.assign(text=[_accuracy_text(row) for _, row in table.iterrows()])
    frame = cells.pivot(index="lr", columns="batch_size", values="text")
    frame.columns = [f"batch size {b}" for b in frame.columns]
    frame.index.name = "learning rate"
    return frame.fillna("–")


def _accuracy_text(cell: pd.Series) -> str:
    if cell["n_seeds"] == 0:
        return "failed"
    k, n = int(cell["n_diverged"]), int(cell["n_seeds"])
    if k == n:
        return f"diverged ({k}/{n})"
    text = f"{100 * cell['final_test_acc_mean']:.2f}"
    if n - k > 1:
        text += f" ± {100 * cell['final_test_acc_sd']:.2f}"
    return text + (f" ({k}/{n} diverged)" if k else "")


def format_boundary(boundary: pd.DataFrame, bounds: Bounds) -> pd.DataFrame:
    """``divergence_boundary`` as display strings, with the first diverging lr as a multiple
    of 2/lambda_max and of 2/max||x||^2."""
    check_frame(
        boundary,
        "boundary",
        ["largest_stable_lr", "first_diverging_lr", "diverged_there", "diverged_at_there"]
        + ["all_diverge_lr"],
    )

    def lr(value: float) -> str:
        return "–" if math.isnan(value) else f"{value:g}"

    rows = []
    for batch_size, row in boundary.iterrows():
        first = row["first_diverging_lr"]
        rows.append(
            {
                "batch size": batch_size,
                "largest stable lr": lr(row["largest_stable_lr"]),
                "first diverging lr": lr(first),
                "seeds diverged there": (
                    "–" if pd.isna(row["diverged_there"]) else row["diverged_there"]
                ),
                "first divergence at iteration": (
                    "–" if pd.isna(row["diverged_at_there"]) else int(row["diverged_at_there"])
                ),
                "every seed diverges from lr": lr(row["all_diverge_lr"]),
                "first diverging / (2/lambda_max)": (
                    "–" if math.isnan(first) else f"{first / bounds.lr_max:.2f}"
                ),
                "first diverging / (2/max||x||^2)": (
                    "–" if math.isnan(first) else f"{first / bounds.per_sample_lr:.1f}"
                ),
            }
        )
    return pd.DataFrame(rows).set_index("batch size")


def cost_text(run: pd.Series | None, *, cells: int, runs: int) -> str:
    """One sentence on the sweep's measured wall time, from ``sweep_run`` (its log line)."""
    if run is None:
        return (
            f"No single logged run computed all {cells} cells of the sweep (it was resumed "
            "or run together with other tasks), so no wall time is quoted for it."
        )
    where = "a Dask cluster" if run["executor"] == "dask" else "the local executor"
    return (
        f"The sweep's {cells} cells ({runs} training runs) took {run['wall_seconds'] / 60:.1f} "
        f"minutes of wall time ({run['wall_seconds']:.0f} s) with {where}, {int(run['jobs'])} "
        f"job(s) of {int(run['threads_per_job'])} BLAS thread(s), on a machine with "
        f"{int(run['cores'])} cores available (run finished "
        f"{run['finished']:%Y-%m-%d %H:%M} UTC)."
    )


def _outcome(cell: pd.Series) -> str:
    if cell["n_seeds"] == 0:
        return "failed"
    k, n = int(cell["n_diverged"]), int(cell["n_seeds"])
    if k == n:
        return f"diverged ({k}/{n} seeds)"
    text = f"{100 * cell['final_test_acc_mean']:.2f} %"
    return text + (f" ({k}/{n} diverged)" if k else "")


def sweep_run(runs_dir: str | Path, *, cells: int) -> pd.Series | None:
    """The latest logged run of the sweep alone that computed all its ``cells`` cells.

    Returns
    -------
    Series or None
        Its line of ``runs_dir/runs.jsonl`` (``linmnist.experiments.results.RUN_LOG_FIELDS``:
        finished,
        executor, jobs, threads_per_job, cores, wall_seconds, ...); None when no single run
        computed the whole sweep (e.g. it was interrupted and resumed).
    """
    if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
        raise ValueError(f"cells must be an integer >= 1, got {cells!r}")
    log = read_run_log(runs_dir)
    whole = log[(log["tasks"] == TASK) & (log["cells"] == cells) & (log["ok"] == cells)]
    return None if whole.empty else whole.iloc[-1]


def discussion(
    table: pd.DataFrame,
    bounds: Bounds,
    *,
    iterations: int,
    study_lrs: Sequence[float] = STUDY_LRS,
) -> str:
    """The stability section's text (Markdown), every number from ``table`` and ``bounds``.

    Parameters
    ----------
    table : DataFrame
        ``accuracy_table(seeds)``; its boundary is ``divergence_boundary(table)``.
    bounds : Bounds
        ``predicted_bounds(X)``.
    iterations : int
        Iterations of each run of the sweep (divergence is observed within them).
    study_lrs : sequence of float
        The study's learning rates, placed on the map in the last paragraph.
    """
    boundary = divergence_boundary(table)
    names = {
        "lr_max": "$2/\\lambda_{\\max}$",
        "mean_sample_lr": "$2/\\mathrm{mean} \\lVert x \\rVert^2$",
        "per_sample_lr": "$2/\\max \\lVert x \\rVert^2$",
    }
    lines = [
        f"The data give three learning rates. Full-batch gradient descent is stable below "
        f"{names['lr_max']} = {bounds.lr_max:.4f} ($\\lambda_{{\\max}}$ = "
        f"{bounds.lambda_max:.2f}, the largest eigenvalue of $X X^\\top / N$). A step on a "
        f"single sample multiplies its residual by $1 - \\eta \\lVert x \\rVert^2$; the "
        f"per-sample curvature $\\lVert x \\rVert^2$ has mean {bounds.curvature_mean:.1f} "
        f"and maximum {bounds.curvature_max:.1f}, so no single-sample step overshoots below "
        f"{names['per_sample_lr']} = {bounds.per_sample_lr:.4f}, and "
        f"{names['mean_sample_lr']} = {bounds.mean_sample_lr:.4f} is the classical "
        f"step-size limit of single-sample least mean squares.",
        "",
        f"Observed within {iterations} iterations:",
        "",
    ]
    for batch_size, row in boundary.iterrows():
        stable, diverging = row["largest_stable_lr"], row["first_diverging_lr"]
        if math.isnan(diverging):
            lines.append(
                f"- batch size {batch_size}: no run diverged, up to lr = {stable:g} "
                f"({stable / bounds.lr_max:.2f} × {names['lr_max']})."
            )
            continue
        if math.isnan(stable):
            lines.append(
                f"- batch size {batch_size}: {row['diverged_there']} seeds diverge already at "
                f"the sweep's smallest lr, {diverging:g}."
            )
            continue
        inside = [
            f"{names[name]} = {getattr(bounds, name):.4f}"
            for name in names
            if stable < getattr(bounds, name) <= diverging
        ]
        text = (
            f"- batch size {batch_size}: stable up to lr = {stable:g}; "
            f"{row['diverged_there']} seeds diverge at lr = {diverging:g} (from iteration "
            f"{row['diverged_at_there']}). The boundary lies in ({stable:g}, {diverging:g}], "
            f"which contains {' and '.join(inside) if inside else 'none of the three'}; it is "
            f"{stable / bounds.per_sample_lr:.1f}-{diverging / bounds.per_sample_lr:.1f} × "
            f"{names['per_sample_lr']}."
        )
        loss = _cell(table, batch_size, stable).get("final_train_loss_mean", math.nan)
        if loss > INITIAL_LOSS:
            text += (
                f" At lr = {stable:g} the runs do not blow up but end at a training loss of "
                f"{loss:.2f}, above the {INITIAL_LOSS} of W = 0."
            )
        lines.append(text)
    positions = study_positions(table, bounds, lrs=study_lrs)
    lines += ["", "The study's learning rates (mean final test accuracy per batch size):", ""]
    for lr, row in positions.iterrows():
        outcomes = "; ".join(
            f"{column}: {row[column]}" for column in positions.columns if column.startswith("batch")
        )
        lines.append(
            f"- lr = {lr:g} is {row['x 2/lambda_max']:.2f} × {names['lr_max']} and "
            f"{row['x 2/mean||x||^2']:.2f} × {names['mean_sample_lr']}: {outcomes}."
        )
    return "\n".join(lines)


def _cell(table: pd.DataFrame, batch_size: int, lr: float) -> pd.Series:
    rows = table[(table["batch_size"] == batch_size) & np.isclose(table["lr"], lr, atol=0)]
    return rows.iloc[0]


def stability_map(
    table: pd.DataFrame, bounds: Bounds, *, study_lrs: Sequence[float] = STUDY_LRS
) -> Figure:
    """Final test accuracy against the learning rate per batch size, and where runs diverge.

    Top panel: the mean final test accuracy of the seeds that did not diverge, with their
    min-max band; bottom panel: one row per batch size, a marker per learning rate coloured
    by the fraction of seeds that diverged (a cross where all did). Both panels mark the
    three bounds as vertical lines and the study's learning rates as triangles.

    Parameters
    ----------
    table : DataFrame
        ``accuracy_table(seeds)``.
    bounds : Bounds
        ``predicted_bounds(X)``.
    study_lrs : sequence of float
        Learning rates marked as the study's.
    """
    check_frame(
        table,
        "table",
        ["batch_size", "lr", "n_seeds", "n_diverged", "final_test_acc_mean"]
        + ["final_test_acc_min", "final_test_acc_max"],
    )
    fig = Figure(figsize=(7.6, 6.2), dpi=DPI)
    top, bottom = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1.0], "hspace": 0.08}
    )
    sizes = sorted(table["batch_size"].unique())
    palette = colormaps["viridis"](np.linspace(0.0, 0.85, max(len(sizes), 1)))
    for color, batch_size in zip(palette, sizes, strict=True):
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
            "o-",
            color=color,
            markersize=3.5,
            label=f"batch size {batch_size}",
        )
    top.set_ylabel("final test accuracy (%)")
    top.set_title(
        "Stability map: final test accuracy and divergence against the learning rate", pad=12
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
        fontsize=7,
        loc="upper left",
        ncol=4,
        title="seeds diverged:",
        title_fontsize=7,
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
    top.legend(fontsize=7, loc="lower left", ncol=2)
    bottom.set_xscale("log")
    lrs = np.concatenate([table["lr"].to_numpy(dtype=float), [b for b in study_lrs]])
    bottom.set_xlim(lrs.min() / 1.5, lrs.max() * 1.5)
    bottom.set_xlabel("learning rate (log scale)")
    fig.subplots_adjust(left=0.12, right=0.97, top=0.94, bottom=0.09)
    return fig
