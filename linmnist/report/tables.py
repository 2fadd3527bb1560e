"""The report's tables: the result frames aggregated, and the same tables as display strings.

The inputs are the frames that ``linmnist.experiments.results.load_task`` (one row per cell
and seed: status, error, parameters, final metrics, diverged_at, seconds) and
``linmnist.experiments.results.load_history`` return, and the training inputs X. The
aggregating functions (``grid_table``, ``best_lr``, ``task2_table``, ``subset_table``,
``accuracy_table``, ``divergence_boundary``, ``study_positions``, ``predicted_bounds``, ...)
return numbers; the ``format_*`` functions turn their results into display strings (``pct``,
``mean_sd``, ``scientific``), and ``styled`` shows any table to readers (a pandas Styler: the
index as a column, headers in words, a dash for a missing value). The study's own figures
come from ``linmnist.report.study``.

"Final" values are those of the last iteration. Means and standard deviations are over the
seeds that did not diverge; a "best" learning rate is picked on training data, never on the
test set. A run "diverges" as ``linmnist.engine.sgd.train`` defines it: its training loss
became non-finite or exceeded ``linmnist.engine.sgd.DIVERGENCE_LOSS``, and it was stopped.

The stability sweep (the ``stability`` task of ``linmnist/experiments/grids.toml``) trains
every learning rate of a log grid with every batch size over a few seeds; its tables are
``accuracy_table`` (final test accuracy per batch size and lr), ``divergence_boundary``
(per batch size, the largest lr at which no seed diverged and the smallest at which one
did), ``predicted_bounds`` (the learning rates the training inputs predict: 2 / lambda_max
of X X^T / N, 2 / max ||x||^2 and 2 / mean ||x||^2), ``study_positions`` (where the study's
learning rates sit) and ``sweep_run`` (the logged run that computed the whole sweep).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from linmnist.engine.analysis import stability_threshold
from linmnist.experiments.results import read_run_log
from linmnist.report.study import (
    STUDY_BEST_LR,
    STUDY_GRID_TEST_800,
    STUDY_LRS,
    STUDY_SUBSET_400,
    STUDY_TASK2,
)
from linmnist.report.uncertainty import ci95

METRICS = ("final_train_loss", "final_train_acc", "final_test_acc")
DASH = "–"
# The task name of the stability sweep in grids.toml and in the run log.
SWEEP_TASK = "stability"
_SEED_COLUMNS = ("lr", "batch_size", "status", "seed", "diverged_at", "final_test_acc")


# --- checks and display helpers ---------------------------------------------------------


def check_frame(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    """A ValueError unless ``frame`` is a DataFrame with ``columns``, naming what is missing."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}; it has {list(frame.columns)}")


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage, e.g. ``pct(0.8534)`` -> ``'85.34 %'``; a dash if missing."""
    if value is None or not np.isfinite(value):
        return DASH
    return f"{100 * value:.{digits}f} %"


def mean_sd(mean: float | None, sd: float | None, *, percent: bool = False, digits: int = 4) -> str:
    """``'mean ± sd'`` (sd omitted when undefined), as a percentage of a fraction if asked.

    A standard deviation too small for ``digits`` decimals gets up to three more, enough to
    show its first significant digit; one that is exactly zero is written ``± 0``.
    """
    if mean is None or not np.isfinite(mean):
        return DASH
    scale, digits = (100.0, 2) if percent else (1.0, digits)
    if sd is not None and np.isfinite(sd) and 0 < scale * sd < 0.5 * 10.0**-digits:
        digits = min(digits + 3, -math.floor(math.log10(scale * sd)))
    text = f"{scale * mean:.{digits}f}"
    if sd is not None and np.isfinite(sd):
        text += " ± 0" if sd == 0 else f" ± {scale * sd:.{digits}f}"
    return text


# Text that is words, not a number: letters other than those of "5.6 × 10⁻⁹" and units.
_WORD = re.compile(r"[a-zA-Z]{2,}")
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def scientific(value: float | None, digits: int = 1) -> str:
    """A number in scientific notation as readers write it: ``5.6 × 10⁻⁹``; ``0`` for zero,
    a dash if missing."""
    if value is None or pd.isna(value) or not np.isfinite(value):
        return DASH
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def _formatter(formatter):
    """``formatter`` (str() by default) for a Styler: a dash for a missing or infinite
    value, and "mean ± sd" kept on one line."""

    def text(value) -> str:
        if (
            value is None
            or pd.isna(value)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            return DASH
        shown = formatter(value) if formatter is not None else str(value)
        return shown.replace(" ± ", "\u00a0±\u00a0")

    return text


def styled(
    frame: pd.DataFrame,
    formats: dict | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> Styler:
    """A table for readers: a Styler of ``frame`` with its index as the first column(s)
    (no row of index names), headers in words, each column formatted by ``formats``
    (column -> callable value -> str, e.g. ``pct``, ``scientific`` or
    ``lambda v: f"{v:.4f}"``; str() otherwise), a dash for every missing value and
    "mean ± sd" on one line. The data stay as they are (numbers stay numbers).

    Parameters
    ----------
    frame : DataFrame
        The table.
    formats : dict, optional
        Column (of ``frame`` or of its index) -> formatter.
    headers : dict, optional
        Column -> the header shown.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    formats, headers = dict(formats or {}), dict(headers or {})
    named = [n for n in frame.index.names if n is not None]
    data = frame.reset_index() if named else frame.reset_index(drop=True)
    styler = Styler(data, uuid="t", cell_ids=False)
    shown = {c: _formatter(formats.get(c)) for c in data.columns}
    # Text cells and headers are escaped: a path, a name or an error message is never markup.
    styler.format(shown, escape="html")
    styler.relabel_index(
        [html.escape(headers.get(c, str(c))) for c in data.columns], axis="columns"
    )
    # Columns of words read from the left, columns of numbers from the right.
    words = [
        f"td.col{k}, th.col{k}"
        for k, c in enumerate(data.columns)
        if any(_WORD.search(shown[c](v)) for v in data[c])
    ]
    styles = [{"selector": ", ".join(words), "props": "text-align: left;"}] if words else []
    return styler.set_table_styles(styles).hide(axis="index")


def span(values: Sequence[int]) -> str:
    """``'low-high'`` of integers, or the single value when they are all equal."""
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}-{high}"


def _mean_ci_column(table: pd.DataFrame, stem: str, *, percent: bool = False) -> list[str]:
    """ "mean ± 95 % CI" of the columns ``<stem>_mean`` and ``<stem>_ci``, row by row."""
    pairs = zip(table[f"{stem}_mean"], table[f"{stem}_ci"], strict=True)
    return [mean_sd(m, s, percent=percent) for m, s in pairs]


def _seconds(values: pd.Series) -> list[str]:
    return [DASH if not np.isfinite(v) else f"{v:.1f}" for v in values]


def _lr_text(value: float) -> str:
    return DASH if pd.isna(value) else f"{value:g}"


# --- the data ---------------------------------------------------------------------------


def known_labels(
    labels: dict[str, np.ndarray], known: Sequence[tuple[str, int, int]]
) -> pd.DataFrame:
    """Known labels of a dataset (``linmnist.engine.data.FACTS[name].labels_at``) against the data.

    Parameters
    ----------
    labels : dict
        Split name -> integer labels (N,).
    known : sequence of (split, index, label)
        The labels a genuine copy has, e.g. ``("train", 696, 2)`` for MNIST.

    Returns
    -------
    DataFrame
        Columns split, index, expected, found, ok; no rows when nothing is known.
    """
    rows = []
    for split, index, label in known:
        if split not in labels:
            raise ValueError(f"known names split {split!r}, absent from labels {list(labels)}")
        found = int(labels[split][index])
        rows.append(
            {
                "split": split,
                "index": index,
                "expected": label,
                "found": found,
                "ok": found == label,
            }
        )
    return pd.DataFrame(rows, columns=["split", "index", "expected", "found", "ok"])


def shapes_table(arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    """Shape and dtype of each named array, e.g. before and after ``prepare``.

    Parameters
    ----------
    arrays : dict
        Name -> array, in display order.

    Returns
    -------
    DataFrame
        Columns array, shape (e.g. "784 x 60000"), dtype.
    """
    if not isinstance(arrays, dict) or not arrays:
        raise ValueError("arrays must be a non-empty dict of name -> array")
    return pd.DataFrame(
        {
            "array": list(arrays),
            "shape": [" x ".join(str(n) for n in np.shape(a)) for a in arrays.values()],
            "dtype": [str(np.asarray(a).dtype) for a in arrays.values()],
        }
    )


def one_hot_check(
    labels: dict[str, np.ndarray], one_hot: dict[str, np.ndarray], index: int
) -> pd.DataFrame:
    """The label of sample ``index`` in each split beside its one-hot column.

    Parameters
    ----------
    labels : dict
        Split name -> integer labels (N,).
    one_hot : dict
        Split name -> one-hot matrix (10, N), the same splits as ``labels``.
    index : int
        The sample to check.

    Returns
    -------
    DataFrame
        Columns split, index, label, one-hot column (as a string of 0/1), argmax, and
        consistent (the column has a single 1, at the label).
    """
    if set(labels) != set(one_hot):
        raise ValueError(
            f"labels and one_hot must name the same splits, got {list(labels)} and {list(one_hot)}"
        )
    rows = []
    for split, y in labels.items():
        Y = one_hot[split]
        if not 0 <= index < len(y):
            raise ValueError(f"index must be in [0, {len(y) - 1}] for {split}, got {index}")
        column = np.asarray(Y[:, index])
        rows.append(
            {
                "split": split,
                "index": index,
                "label": int(y[index]),
                "one-hot column": " ".join(str(int(v)) for v in column),
                "argmax": int(column.argmax()),
                "consistent": bool(column.sum() == 1 and column[int(y[index])] == 1),
            }
        )
    return pd.DataFrame(rows)


def sample_curvature(X: np.ndarray) -> tuple[float, float]:
    """Mean and maximum of the per-sample curvature ||x||^2 over the columns of X (784, N)."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(f"X must be a 2-D (features, samples) array with samples, got {X.shape}")
    norms = np.einsum("ij,ij->j", X, X, dtype=np.float64)
    return float(norms.mean()), float(norms.max())


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
    mean, peak = sample_curvature(X)
    threshold = stability_threshold(np.asarray(X))
    return Bounds(
        lambda_max=threshold.lambda_max,
        lr_max=threshold.lr_max,
        curvature_mean=mean,
        curvature_max=peak,
        mean_sample_lr=2.0 / mean,
        per_sample_lr=2.0 / peak,
        n_samples=np.shape(X)[1],
    )


# --- the grids of Tasks 3 and 5 ---------------------------------------------------------


def seed_outcomes(rows: pd.DataFrame) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """What became of the seeds of one cell (its rows of ``results.load_task``).

    Returns ({status, n_seeds, n_diverged, diverged_at_min, diverged_at_max}, the rows of
    the seeds that ran, the rows of those that did not diverge). The status is "failed"
    when any row of the cell failed.
    """
    runs = rows[rows["status"] == "ok"].dropna(subset=["seed"])
    diverged = runs[runs["diverged_at"].notna()]
    counts = {
        "status": "ok" if (rows["status"] == "ok").all() else "failed",
        "n_seeds": len(runs),
        "n_diverged": len(diverged),
        "diverged_at_min": int(diverged["diverged_at"].min()) if len(diverged) else pd.NA,
        "diverged_at_max": int(diverged["diverged_at"].max()) if len(diverged) else pd.NA,
    }
    return counts, runs, runs[runs["diverged_at"].isna()]


def _summarize(rows: pd.DataFrame) -> dict:
    """Aggregate the seed rows of one cell."""
    counts, runs, converged = seed_outcomes(rows)
    failed = rows[rows["status"] != "ok"]
    out = {"status": counts.pop("status")}
    out["error"] = failed["error"].iloc[0] if len(failed) else None
    out |= counts
    for metric in METRICS:
        values = converged[metric].astype(float)
        out[f"{metric}_mean"] = values.mean() if len(values) else math.nan
        out[f"{metric}_sd"] = values.std(ddof=1) if len(values) > 1 else math.nan
        out[f"{metric}_ci"] = ci95(values)
    dense = runs[runs["eval_every"] == 1]["seconds"].astype(float)
    thinned = runs[runs["eval_every"] > 1]["seconds"].astype(float)
    out["seconds_fidelity"] = dense.mean() if len(dense) else math.nan
    out["seconds_thinned"] = thinned.mean() if len(thinned) else math.nan
    return out


def _cell_table(seeds: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    check_frame(seeds, "seeds", [*keys, "status", "error", "seed", "eval_every", "diverged_at"])
    rows = []
    for key, group in seeds.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key, strict=True)), **_summarize(group)})
    table = pd.DataFrame(rows)
    return table.astype({"diverged_at_min": "Int64", "diverged_at_max": "Int64"})


def grid_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """One row per (lr, batch_size) of Task 3, aggregated over seeds.

    Parameters
    ----------
    seeds : DataFrame
        ``linmnist.experiments.results.load_task(runs_dir, "grid")``.

    Returns
    -------
    DataFrame
        Columns lr, batch_size, iterations, status ("ok" or "failed"), error, n_seeds,
        n_diverged, diverged_at_min, diverged_at_max, ``<metric>_mean`` and ``<metric>_sd``
        for final_train_loss, final_train_acc, final_test_acc (over the seeds that did not
        diverge), seconds_fidelity (mean wall time of the seeds evaluated after every
        iteration) and seconds_thinned (the other seeds); sorted by lr (descending) then
        batch size.
    """
    check_frame(seeds, "seeds", ["lr", "batch_size", "iterations"])
    table = _cell_table(seeds, ["lr", "batch_size", "iterations"])
    return table.sort_values(["lr", "batch_size"], ascending=[False, True], ignore_index=True)


def _status_text(row) -> str:
    if row.status != "ok":
        return f"failed: {row.error}"
    if row.n_diverged == 0:
        return "ok"
    seeds = span([int(row.diverged_at_min), int(row.diverged_at_max)])
    return f"diverged at iteration {seeds} ({row.n_diverged} of {row.n_seeds} seeds)"


def format_grid_table(table: pd.DataFrame, *, study: bool = True) -> pd.DataFrame:
    """The Task 3 table as display strings, indexed by learning rate and batch size.

    Parameters
    ----------
    table : DataFrame
        ``grid_table(...)``.
    study : bool
        Add the study's test accuracy at iteration 800 where it reported one.
    """
    check_frame(table, "table", ["lr", "batch_size", "status", "n_seeds", "seconds_fidelity"])
    out = pd.DataFrame(
        {
            "learning rate": [f"{lr:g}" for lr in table["lr"]],
            "batch size": table["batch_size"].astype(int).astype(str),
            "seeds": table["n_seeds"].astype(str),
            "final training loss": _mean_ci_column(table, "final_train_loss"),
            "final train accuracy (%)": _mean_ci_column(table, "final_train_acc", percent=True),
            "final test accuracy (%)": _mean_ci_column(table, "final_test_acc", percent=True),
            "status": [_status_text(row) for row in table.itertuples(index=False)],
            "seconds per run, every-iteration evaluation": _seconds(table["seconds_fidelity"]),
            "seconds per run, thinned evaluation": _seconds(table["seconds_thinned"]),
        }
    )
    if study:
        out["study: test accuracy at iteration 800"] = [
            STUDY_GRID_TEST_800.get((lr, int(b)), DASH)
            for lr, b in zip(table["lr"], table["batch_size"], strict=True)
        ]
    return out.set_index(["learning rate", "batch size"])


def best_lr(table: pd.DataFrame) -> pd.DataFrame:
    """The best learning rate for each batch size, picked on training data.

    Among the configurations where no seed diverged, the best lr has the lowest mean
    final training loss; the lr with the highest mean final training accuracy is given too.
    The test accuracy is reported, not used. The study's claim (picked on the maximum test
    accuracy over iterations) stands beside it.

    Parameters
    ----------
    table : DataFrame
        ``grid_table(...)``.

    Returns
    -------
    DataFrame
        Columns batch_size, best_lr (by training loss), best_lr_by_train_acc,
        final_train_loss_mean, final_train_acc_mean, final_test_acc_mean (of best_lr),
        study_best_lr (NaN where the study has no claim), agrees (bool).
    """
    check_frame(
        table,
        "table",
        ["lr", "batch_size", "status", "n_diverged", *[m + "_mean" for m in METRICS]],
    )
    stable = table[(table["status"] == "ok") & (table["n_diverged"] == 0) & (table["n_seeds"] > 0)]
    rows = []
    for batch_size, group in stable.groupby("batch_size", sort=True):
        best = group.loc[group["final_train_loss_mean"].idxmin()]
        by_acc = group.loc[group["final_train_acc_mean"].idxmax()]
        claim = STUDY_BEST_LR.get(int(batch_size), math.nan)
        rows.append(
            {
                "batch_size": int(batch_size),
                "best_lr": float(best["lr"]),
                "best_lr_by_train_acc": float(by_acc["lr"]),
                "final_train_loss_mean": best["final_train_loss_mean"],
                "final_train_acc_mean": best["final_train_acc_mean"],
                "final_test_acc_mean": best["final_test_acc_mean"],
                "study_best_lr": claim,
                "agrees": bool(np.isclose(best["lr"], claim)) if np.isfinite(claim) else False,
            }
        )
    columns = [
        "batch_size",
        "best_lr",
        "best_lr_by_train_acc",
        "final_train_loss_mean",
        "final_train_acc_mean",
        "final_test_acc_mean",
        "study_best_lr",
        "agrees",
    ]
    return pd.DataFrame(rows, columns=columns)


def format_best_lr(best: pd.DataFrame, *, study: bool = True) -> pd.DataFrame:
    """``best_lr(...)`` as display strings, indexed by batch size.

    Parameters
    ----------
    best : DataFrame
        ``best_lr(...)``.
    study : bool
        Show the study's claim beside ours (for MNIST, the study's dataset).
    """
    check_frame(best, "best", ["batch_size", "best_lr", "study_best_lr", "agrees"])
    out = pd.DataFrame(
        {
            "batch size": best["batch_size"].astype(str),
            "best lr (lowest final training loss)": [f"{v:g}" for v in best["best_lr"]],
            "best lr (highest final train accuracy)": [
                f"{v:g}" for v in best["best_lr_by_train_acc"]
            ],
            "its final training loss": [f"{v:.4f}" for v in best["final_train_loss_mean"]],
            "its final test accuracy": [pct(v) for v in best["final_test_acc_mean"]],
            "study's best lr (max test accuracy)": [
                DASH if not np.isfinite(v) else f"{v:g}" for v in best["study_best_lr"]
            ],
            "same as the study": ["yes" if a else "no" for a in best["agrees"]],
        }
    )
    if not study:
        out = out.drop(columns=["study's best lr (max test accuracy)", "same as the study"])
    return out.set_index("batch size")


def task2_table(history: pd.DataFrame, *, seed: int | None = None) -> pd.DataFrame:
    """Our Task 2 run beside the study's reported figures, at the study's iterations.

    Parameters
    ----------
    history : DataFrame
        The history of the Task 2 configuration (columns iteration, train_loss, train_acc,
        test_acc, and seed/eval_every for several seeds).
    seed : int, optional
        The seed to read; by default the seed evaluated at the most iterations (the one
        evaluated after every iteration).

    Returns
    -------
    DataFrame
        One row per study iteration that our run reached, plus our last iteration compared
        with the study's last (iteration 999); columns iteration (ours), study_iteration,
        then train_loss, train_acc, test_acc for "ours" and "study".
    """
    check_frame(history, "history", ["iteration", "train_loss", "train_acc", "test_acc"])
    if "seed" in history.columns:
        if seed is None:
            seed = int(history.groupby("seed")["iteration"].size().idxmax())
        history = history[history["seed"] == seed]
    ours = history.set_index("iteration")
    last = int(ours.index.max())
    rows = []
    for study in STUDY_TASK2.itertuples(index=False):
        mine = last if study.iteration == STUDY_TASK2["iteration"].max() else study.iteration
        if mine not in ours.index:
            continue
        row = {"iteration": int(mine), "study_iteration": int(study.iteration)}
        for metric in ("train_loss", "train_acc", "test_acc"):
            row[f"ours_{metric}"] = float(ours.loc[mine, metric])
            row[f"study_{metric}"] = getattr(study, metric)
        rows.append(row)
    return pd.DataFrame(rows)


def format_task2_table(comparison: pd.DataFrame, *, study: bool = True) -> pd.DataFrame:
    """``task2_table(...)`` as display strings, indexed by iteration.

    Parameters
    ----------
    comparison : DataFrame
        ``task2_table(...)``.
    study : bool
        Show the study's figures beside ours (for MNIST, the study's dataset); without them
        the rows are our values at the same iterations, indexed by our iteration.
    """
    check_frame(comparison, "comparison", ["iteration", "study_iteration"])
    out = pd.DataFrame(
        {
            "iteration (ours / study)": [
                f"{a}" if a == b else f"{a} / {b}"
                for a, b in zip(comparison["iteration"], comparison["study_iteration"], strict=True)
            ],
            "training loss, ours": [f"{v:.4f}" for v in comparison["ours_train_loss"]],
            "training loss, study": [f"{v:.4f}" for v in comparison["study_train_loss"]],
            "train accuracy, ours": [pct(v) for v in comparison["ours_train_acc"]],
            "train accuracy, study": [pct(v) for v in comparison["study_train_acc"]],
            "test accuracy, ours": [pct(v) for v in comparison["ours_test_acc"]],
            "test accuracy, study": [pct(v) for v in comparison["study_test_acc"]],
        }
    )
    if not study:
        out = out[[c for c in out.columns if not c.endswith(", study")]]
        out = out.rename(columns=lambda c: c.removesuffix(", ours"))
        out["iteration (ours / study)"] = comparison["iteration"].astype(str)
        return out.rename(columns={"iteration (ours / study)": "iteration"}).set_index("iteration")
    return out.set_index("iteration (ours / study)")


def subset_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """One row per N' of Task 5, aggregated over seeds, with the train-test gap.

    Parameters
    ----------
    seeds : DataFrame
        ``linmnist.experiments.results.load_task(runs_dir, "subset")``.

    Returns
    -------
    DataFrame
        The columns of ``grid_table`` keyed by n_prime (with lr, batch_size, iterations),
        plus gap_mean and gap_sd: final train accuracy on S' minus final test accuracy,
        per seed, then averaged.
    """
    check_frame(seeds, "seeds", ["n_prime", "lr", "batch_size", "iterations", *METRICS])
    table = _cell_table(seeds, ["n_prime", "lr", "batch_size", "iterations"])
    ok = seeds[(seeds["status"] == "ok") & seeds["diverged_at"].isna()].dropna(subset=["seed"])
    gap = (ok["final_train_acc"] - ok["final_test_acc"]).groupby(ok["n_prime"])
    table["gap_mean"] = table["n_prime"].map(gap.mean())
    table["gap_sd"] = table["n_prime"].map(gap.std(ddof=1))
    table["gap_ci"] = table["n_prime"].map(gap.agg(ci95))
    return table.sort_values("n_prime", ignore_index=True)


def format_subset_table(table: pd.DataFrame, *, study: bool = True) -> pd.DataFrame:
    """``subset_table(...)`` as display strings indexed by N' (the gap in percentage points).

    Parameters
    ----------
    table : DataFrame
        ``subset_table(...)``.
    study : bool
        Add the study's train / test accuracy at iteration 400 where it reported them.
    """
    check_frame(table, "table", ["n_prime", "gap_mean", "gap_sd", "status", "n_seeds"])
    out = pd.DataFrame(
        {
            "N' (training-set size)": table["n_prime"].astype(int).astype(str),
            "seeds": table["n_seeds"].astype(str),
            "final training loss on S'": _mean_ci_column(table, "final_train_loss"),
            "final train accuracy on S' (%)": _mean_ci_column(
                table, "final_train_acc", percent=True
            ),
            "final test accuracy (%)": _mean_ci_column(table, "final_test_acc", percent=True),
            "train - test gap (points)": _mean_ci_column(table, "gap", percent=True),
            "status": [_status_text(row) for row in table.itertuples(index=False)],
        }
    )
    if study:
        out["study at iteration 400: train / test"] = [
            f"{pct(STUDY_SUBSET_400[n][0], 1)} / {pct(STUDY_SUBSET_400[n][1], 1)}"
            if n in STUDY_SUBSET_400
            else DASH
            for n in table["n_prime"].astype(int)
        ]
    return out.set_index("N' (training-set size)")


# --- the stability sweep ----------------------------------------------------------------


def accuracy_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per (batch size, lr) of the sweep, over the seeds that did not diverge.

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
            "final_test_acc_ci": ci95(acc),
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
        none did), n_diverged_there and n_seeds_there (the seeds that diverged at
        first_diverging_lr, of how many; missing if none did), diverged_at_there (the
        earliest iteration at which one of them diverged), all_diverge_lr (the smallest lr
        from which every seed diverged at every larger lr of the sweep; NaN if none), and
        lr_low, lr_high (the sweep's range of lr for that batch size).
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
            "n_diverged_there": pd.NA,
            "n_seeds_there": pd.NA,
            "diverged_at_there": pd.NA,
            "all_diverge_lr": lrs[start] if start < len(lrs) else math.nan,
            "lr_low": lrs[0],
            "lr_high": lrs[-1],
        }
        if first < len(lrs):
            there = cells.iloc[first]
            row["n_diverged_there"] = int(there["n_diverged"])
            row["n_seeds_there"] = int(there["n_seeds"])
            row["diverged_at_there"] = there["diverged_at_min"]
        rows.append(row)
    if not rows:
        raise ValueError("table holds no finished cell of the sweep")
    boundary = pd.DataFrame(rows).set_index("batch_size")
    counts = ("n_diverged_there", "n_seeds_there", "diverged_at_there")
    return boundary.astype(dict.fromkeys(counts, "Int64"))


def study_positions(
    table: pd.DataFrame, bounds: Bounds, *, lrs: Sequence[float] = STUDY_LRS
) -> pd.DataFrame:
    """Where the study's learning rates sit: their ratio to each bound and the sweep's outcome.

    Parameters
    ----------
    table : DataFrame
        ``accuracy_table(seeds)``.
    bounds : Bounds
        ``predicted_bounds(X)``.
    lrs : sequence of float
        The learning rates to place, by default the study's.

    Returns
    -------
    DataFrame
        One row per lr (in the order of ``lrs``) and batch size of the sweep, columns lr,
        batch_size, lr_over_lr_max, lr_over_mean_sample_lr, lr_over_per_sample_lr (lr
        divided by each bound), in_sweep (the sweep has that cell), n_seeds, n_diverged
        (missing when not in the sweep) and final_test_acc_mean (over the seeds that did
        not diverge; NaN when none did or the cell is not in the sweep).
    """
    check_frame(table, "table", ["batch_size", "lr", "n_seeds", "n_diverged"])
    rows = []
    for lr in lrs:
        ratios = {
            "lr": float(lr),
            "lr_over_lr_max": lr / bounds.lr_max,
            "lr_over_mean_sample_lr": lr / bounds.mean_sample_lr,
            "lr_over_per_sample_lr": lr / bounds.per_sample_lr,
        }
        for batch_size, cells in table.groupby("batch_size", sort=True):
            match = cells[np.isclose(cells["lr"], lr, rtol=1e-9, atol=0)]
            row = ratios | {"batch_size": int(batch_size), "in_sweep": bool(len(match))}
            if len(match):
                cell = match.iloc[0]
                row |= {
                    "n_seeds": int(cell["n_seeds"]),
                    "n_diverged": int(cell["n_diverged"]),
                    "final_test_acc_mean": float(cell.get("final_test_acc_mean", math.nan)),
                }
            else:
                row |= {"n_seeds": pd.NA, "n_diverged": pd.NA, "final_test_acc_mean": math.nan}
            rows.append(row)
    columns = [
        "lr",
        "batch_size",
        "lr_over_lr_max",
        "lr_over_mean_sample_lr",
        "lr_over_per_sample_lr",
        "in_sweep",
        "n_seeds",
        "n_diverged",
        "final_test_acc_mean",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"n_seeds": "Int64", "n_diverged": "Int64"})


def _outcome_text(cell) -> str:
    """A sweep cell's outcome in words: "failed", "diverged (k/n seeds)" or "85.00 %" (with
    "(k/n diverged)" when some seeds did)."""
    if cell["n_seeds"] == 0:
        return "failed"
    k, n = int(cell["n_diverged"]), int(cell["n_seeds"])
    if k == n:
        return f"diverged ({k}/{n} seeds)"
    text = pct(cell["final_test_acc_mean"])
    return text + (f" ({k}/{n} diverged)" if k else "")


def format_study_positions(positions: pd.DataFrame) -> pd.DataFrame:
    """``study_positions(...)`` as display strings, indexed by lr: the ratios to the three
    bounds (columns "lr as a multiple of 2/λmax", "... of 2/mean‖x‖²", "... of 2/max‖x‖²", two
    decimals)
    and one column per batch size, ``batch size B``: "diverged (k/n seeds)", the mean final
    test accuracy in % (with "k/n diverged" when some seeds did), "failed", or "not in the
    sweep"."""
    check_frame(
        positions,
        "positions",
        ["lr", "batch_size", "lr_over_lr_max", "in_sweep", "n_seeds", "n_diverged"],
    )
    ratios = {
        "lr_over_lr_max": "lr as a multiple of 2/λmax",
        "lr_over_mean_sample_lr": "lr as a multiple of 2/mean‖x‖²",
        "lr_over_per_sample_lr": "lr as a multiple of 2/max‖x‖²",
    }
    rows = []
    for lr, cells in positions.groupby("lr", sort=False):
        row = {"lr": lr} | {label: f"{cells[key].iloc[0]:.2f}" for key, label in ratios.items()}
        for cell in cells.to_dict("records"):
            text = _outcome_text(cell) if cell["in_sweep"] else "not in the sweep"
            row[f"batch size {cell['batch_size']}"] = text
        rows.append(row)
    return pd.DataFrame(rows).set_index("lr")


def _accuracy_text(cell: pd.Series) -> str:
    if cell["n_seeds"] == 0:
        return "failed"
    k, n = int(cell["n_diverged"]), int(cell["n_seeds"])
    if k == n:
        return f"diverged ({k}/{n})"
    text = f"{100 * cell['final_test_acc_mean']:.2f}"
    if n - k > 1:
        text += f" ± {100 * cell['final_test_acc_ci']:.2f}"
    return text + (f" ({k}/{n} diverged)" if k else "")


def format_accuracy(table: pd.DataFrame) -> pd.DataFrame:
    """``accuracy_table`` as display strings: lr down, batch size across, "mean ± sd" of the
    final test accuracy in %, with the seeds that diverged ("diverged (k/n)" when all did)."""
    check_frame(table, "table", ["batch_size", "lr", "n_seeds", "n_diverged"])
    cells = table.assign(text=[_accuracy_text(row) for _, row in table.iterrows()])
    frame = cells.pivot(index="lr", columns="batch_size", values="text")
    frame.columns = [f"batch size {b}" for b in frame.columns]
    frame.index.name = "learning rate"
    return frame.fillna(DASH)


def format_boundary(boundary: pd.DataFrame, bounds: Bounds) -> pd.DataFrame:
    """``divergence_boundary`` as display strings, with the first diverging lr as a multiple
    of 2/lambda_max and of 2/max||x||^2."""
    check_frame(
        boundary,
        "boundary",
        ["largest_stable_lr", "first_diverging_lr", "n_diverged_there", "n_seeds_there"]
        + ["diverged_at_there", "all_diverge_lr"],
    )
    rows = []
    for batch_size, row in boundary.iterrows():
        first = row["first_diverging_lr"]
        there = (
            DASH
            if pd.isna(row["n_diverged_there"])
            else f"{int(row['n_diverged_there'])}/{int(row['n_seeds_there'])}"
        )
        rows.append(
            {
                "batch size": batch_size,
                "largest stable lr": _lr_text(row["largest_stable_lr"]),
                "first diverging lr": _lr_text(first),
                "seeds diverged there": there,
                "first divergence at iteration": (
                    DASH if pd.isna(row["diverged_at_there"]) else int(row["diverged_at_there"])
                ),
                "every seed diverges from lr": _lr_text(row["all_diverge_lr"]),
                "first diverging lr as a multiple of 2/λmax": (
                    DASH if pd.isna(first) else f"{first / bounds.lr_max:.2f}"
                ),
                "first diverging lr as a multiple of 2/max‖x‖²": (
                    DASH if pd.isna(first) else f"{first / bounds.per_sample_lr:.1f}"
                ),
            }
        )
    return pd.DataFrame(rows).set_index("batch size")


def sweep_run(runs_dir: str | Path, *, cells: int) -> pd.Series | None:
    """The latest logged run of the sweep alone that computed all its ``cells`` cells.

    Returns
    -------
    Series or None
        Its line of ``runs_dir/runs.jsonl`` (``linmnist.experiments.results.RUN_LOG_FIELDS``:
        finished, executor, jobs, threads_per_job, cores, wall_seconds, ...); None when no
        single run computed the whole sweep (e.g. it was interrupted and resumed).
    """
    if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
        raise ValueError(f"cells must be an integer >= 1, got {cells!r}")
    log = read_run_log(runs_dir)
    whole = log[(log["tasks"] == SWEEP_TASK) & (log["cells"] == cells) & (log["ok"] == cells)]
    return None if whole.empty else whole.iloc[-1]
