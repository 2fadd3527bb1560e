"""The report's tables: ``load_task``/``load_history`` frames aggregated to numbers, and the
``format_*`` display strings of them. "Final" values are those of the last iteration; means and
95 % CIs are over the stable seeds; a "best" learning rate is picked on training data only.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from linmnist.engine.spectrum import spectrum
from linmnist.experiments.results import read_run_log
from linmnist.report import outcomes
from linmnist.report.study import (
    STUDY_BEST_LR,
    STUDY_GRID_TEST_800,
    STUDY_LRS,
    STUDY_SUBSET_400,
    STUDY_TASK2,
)
from linmnist.report.uncertainty import ci95, group_ci95

METRICS = ("final_train_loss", "final_train_acc", "final_test_acc")
DASH = "–"
# The learning-rate bounds (``Bounds``) as readers write them.
BOUND_NAMES = {"lr_max": "2/λmax", "mean_sample_lr": "2/mean‖x‖²", "per_sample_lr": "2/max‖x‖²"}
_COUNTS = ("n_unstable", "n_diverged", "n_seeds")


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


def mean_ci(mean: float | None, ci: float | None, *, percent: bool = False, digits: int = 4) -> str:
    """``'mean ± ci'`` (CI half-width), in percent if asked, with digits enough for ci."""
    if mean is None or not np.isfinite(mean):
        return DASH
    scale, digits = (100.0, 2) if percent else (1.0, digits)
    if ci is not None and np.isfinite(ci) and 0 < scale * ci < 0.5 * 10.0**-digits:
        digits = min(digits + 3, -math.floor(math.log10(scale * ci)))
    text = f"{scale * mean:.{digits}f}"
    if ci is not None and np.isfinite(ci):
        text += " ± 0" if ci == 0 else f" ± {scale * ci:.{digits}f}"
    return text


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, never in e-notation; a dash if not finite."""
    if value is None or not math.isfinite(value):
        return DASH
    if value == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    return f"{round(value, decimals):,.{max(decimals, 0)}f}"


# Text that is words, not a number: letters other than those of "5.6 × 10⁻⁹" and units.
_WORD = re.compile(r"[a-zA-Z]{2,}")
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def scientific(value: float | None, digits: int = 1) -> str:
    """A number in scientific notation, ``5.6 × 10⁻⁹``; ``0`` for zero, a dash if missing."""
    if value is None or pd.isna(value) or not np.isfinite(value):
        return DASH
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


# Markdown's backslash-escapable punctuation, and HTML's special characters as entities.
_MARKDOWN_PUNCTUATION = set("\\`*_{}[]()#+-.!|~$:")
_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}


def markdown_literal(text: object) -> str:
    """``text`` (a path, a name) as Markdown that renders it as plain text."""
    out = []
    for char in str(text):
        if char in _HTML_ENTITIES:
            out.append(_HTML_ENTITIES[char])
        elif char in _MARKDOWN_PUNCTUATION:
            out.append("\\" + char)
        elif not char.isprintable() and char != " ":
            out.append("\\" + char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def _formatter(formatter):
    """``formatter`` (default str) for a Styler: a dash for missing or infinite values."""

    def text(value) -> str:
        if value is None or pd.isna(value) or (isinstance(value, float) and math.isinf(value)):
            return DASH
        shown = formatter(value) if formatter is not None else str(value)
        return shown.replace(" ± ", "\u00a0±\u00a0")

    return text


def styled(
    frame: pd.DataFrame, formats: dict | None = None, *, headers: dict[str, str] | None = None
) -> Styler:
    """A Styler of ``frame`` for readers: ``headers`` renamed, ``formats`` applied."""
    check_frame(frame, "frame", [])
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
    return [mean_ci(m, s, percent=percent) for m, s in pairs]


def _lr_text(value: float) -> str:
    return DASH if pd.isna(value) else f"{value:g}"


# --- the data ---------------------------------------------------------------------------


def known_labels(
    labels: dict[str, np.ndarray], known: Sequence[tuple[str, int, int]]
) -> pd.DataFrame:
    """Known labels (``FACTS[name].labels_at``) against ``labels`` (split -> labels)."""
    rows = []
    for split, index, label in known:
        if split not in labels:
            raise ValueError(f"known names split {split!r}, absent from labels {list(labels)}")
        found = int(labels[split][index])
        rows.append((split, index, label, found, found == label))
    return pd.DataFrame(rows, columns=["split", "index", "expected", "found", "ok"])


def shapes_table(arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    """Shape ("784 x 60000") and dtype of each named array (name -> array, in display order)."""
    if not isinstance(arrays, dict) or not arrays:
        raise ValueError("arrays must be a non-empty dict of name -> array")
    shapes = [" x ".join(str(n) for n in np.shape(a)) for a in arrays.values()]
    dtypes = [str(np.asarray(a).dtype) for a in arrays.values()]
    return pd.DataFrame({"array": list(arrays), "shape": shapes, "dtype": dtypes})


def one_hot_check(
    labels: dict[str, np.ndarray], one_hot: dict[str, np.ndarray], index: int
) -> pd.DataFrame:
    """Sample ``index``'s label beside its one-hot column, per split, and whether they agree."""
    if set(labels) != set(one_hot):
        raise ValueError(
            f"labels and one_hot must name the same splits, got {list(labels)} and {list(one_hot)}"
        )
    rows = []
    for split, y in labels.items():
        if not 0 <= index < len(y):
            raise ValueError(f"index must be in [0, {len(y) - 1}] for {split}, got {index}")
        column, label = np.asarray(one_hot[split][:, index]), int(y[index])
        shown = " ".join(str(int(v)) for v in column)
        consistent = bool(column.sum() == 1 and column[label] == 1)
        rows.append((split, index, label, shown, int(column.argmax()), consistent))
    columns = ["split", "index", "label", "one-hot column", "argmax", "consistent"]
    return pd.DataFrame(rows, columns=columns)


def sample_curvature(X: np.ndarray) -> tuple[float, float]:
    """Mean and maximum of the per-sample curvature ||x||^2 over the columns of X (784, N)."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(f"X must be a 2-D (features, samples) array with samples, got {X.shape}")
    norms = np.einsum("ij,ij->j", X, X, dtype=np.float64)
    return float(norms.mean()), float(norms.max())


@dataclass(frozen=True)
class Bounds:
    """Learning-rate bounds of N inputs: ``lr_max`` = 2 / lambda_max, 2 / mean and max ||x||^2."""

    lambda_max: float
    lr_max: float
    curvature_mean: float
    curvature_max: float
    mean_sample_lr: float
    per_sample_lr: float
    n_samples: int


def predicted_bounds(X: np.ndarray, Y: np.ndarray) -> Bounds:
    """The learning-rate bounds of the training set (X (D, N) feature-major, Y one-hot)."""
    mean, peak = sample_curvature(X)
    lam = spectrum(X, Y).lambda_max
    return Bounds(lam, 2.0 / lam, mean, peak, 2.0 / mean, 2.0 / peak, np.shape(X)[1])


# --- the grids of Tasks 3 and 5 ---------------------------------------------------------


def seed_outcomes(rows: pd.DataFrame) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """(counts, the rows that ran, the stable rows) of one cell's ``load_task`` rows."""
    if "outcome" not in rows:
        rows = outcomes.classify(rows)
    ok = rows["status"] == "ok"
    runs = rows[ok & rows["seed"].notna()]  # one copy of the rows (a cell has few)
    outcome = runs["outcome"]
    diverged_at = runs["diverged_at"][outcome == "diverged"]
    counts = {
        "status": "ok" if ok.all() else "failed",
        "n_seeds": len(runs),
        "n_diverged": len(diverged_at),
        "n_unstable": int((outcome == "unstable").sum()),
        "diverged_at_min": int(diverged_at.min()) if len(diverged_at) else pd.NA,
        "diverged_at_max": int(diverged_at.max()) if len(diverged_at) else pd.NA,
    }
    return counts, runs, runs[outcome == "stable"]


def _cell_table(seeds: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """A row per cell (``keys``): status, counts, metrics over stable seeds, wall times."""
    check_frame(seeds, "seeds", [*keys, "status", "error", "seed", "eval_every", "diverged_at"])
    rows = []
    for key, group in seeds.groupby(keys, sort=True):
        counts, runs, stable = seed_outcomes(group)
        failed = group[group["status"] != "ok"]
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        row |= {"status": counts.pop("status")}
        row |= {"error": failed["error"].iloc[0] if len(failed) else None} | counts
        for metric in METRICS:
            values = stable[metric].astype(float)
            row[f"{metric}_mean"], row[f"{metric}_ci"] = values.mean(), ci95(values)
        seconds = runs["seconds"].astype(float)
        row["seconds_fidelity"] = seconds[runs["eval_every"] == 1].mean()
        row["seconds_thinned"] = seconds[runs["eval_every"] > 1].mean()
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.astype({"diverged_at_min": "Int64", "diverged_at_max": "Int64"})


def grid_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """One row per (lr, batch_size) of Task 3, lr descending: ``_cell_table``'s columns."""
    check_frame(seeds, "seeds", ["lr", "batch_size", "iterations"])
    table = _cell_table(seeds, ["lr", "batch_size", "iterations"])
    return table.sort_values(["lr", "batch_size"], ascending=[False, True], ignore_index=True)


def _status_text(row) -> str:
    """A cell's status in words: "ok", "failed: ...", or how many seeds diverged/unstable."""
    if row.status != "ok":
        return f"failed: {row.error}"
    parts = []
    if row.n_diverged:
        seeds = span([int(row.diverged_at_min), int(row.diverged_at_max)])
        parts.append(f"diverged at iteration {seeds} ({row.n_diverged} of {row.n_seeds} seeds)")
    if row.n_unstable:
        what = "unstable (loss above its start or growing)"
        parts.append(f"{what} in {row.n_unstable} of {row.n_seeds} seeds")
    return "; ".join(parts) or "ok"


def _final_columns(table: pd.DataFrame, on: str = "") -> dict[str, Any]:
    """The seeds and final values of ``table``'s cells, training metrics measured ``on``."""
    return {
        "seeds": table["n_seeds"].astype(str),
        f"final training loss{on}": _mean_ci_column(table, "final_train_loss"),
        f"final train accuracy{on} (%)": _mean_ci_column(table, "final_train_acc", percent=True),
        "final test accuracy (%)": _mean_ci_column(table, "final_test_acc", percent=True),
    }


def format_grid_table(table: pd.DataFrame) -> pd.DataFrame:
    """``grid_table(...)`` as display strings, indexed by lr and batch size."""
    check_frame(table, "table", ["lr", "batch_size", "status", "n_seeds"])
    return pd.DataFrame(
        {
            "learning rate": [f"{lr:g}" for lr in table["lr"]],
            "batch size": table["batch_size"].astype(int).astype(str),
            **_final_columns(table),
            "status": [_status_text(row) for row in table.itertuples(index=False)],
        }
    ).set_index(["learning rate", "batch size"])


def best_lr(table: pd.DataFrame) -> pd.DataFrame:
    """Per batch size, the lr of lowest mean final training loss among all-stable cells."""
    means = [m + "_mean" for m in METRICS]
    check_frame(table, "table", ["lr", "batch_size", "status", "n_diverged", *means])
    unstable = table["n_unstable"] if "n_unstable" in table else 0
    ok = (table["status"] == "ok") & (table["n_diverged"] == 0) & (unstable == 0)
    rows = []
    for batch_size, group in table[ok & (table["n_seeds"] > 0)].groupby("batch_size", sort=True):
        best = group.loc[group["final_train_loss_mean"].idxmin()]
        claim = STUDY_BEST_LR.get(int(batch_size), math.nan)
        rows.append(
            {
                "batch_size": int(batch_size),
                "best_lr": float(best["lr"]),
                **{f"{m}_{k}": best[f"{m}_{k}"] for m in METRICS[::2] for k in ("mean", "ci")},
                "lr_by_test_acc": float(group.loc[group["final_test_acc_mean"].idxmax(), "lr"]),
                "study_best_lr": claim,
                "agrees": bool(np.isclose(best["lr"], claim)) if np.isfinite(claim) else False,
            }
        )
    columns = ["batch_size", "best_lr", "final_train_loss_mean", "final_train_loss_ci"]
    columns += ["final_test_acc_mean", "final_test_acc_ci", "lr_by_test_acc"]
    return pd.DataFrame(rows, columns=[*columns, "study_best_lr", "agrees"])


def format_best_lr(best: pd.DataFrame, *, study: bool = True) -> pd.DataFrame:
    """``best_lr(...)`` as display strings by batch size; ``study``: the study's beside."""
    check_frame(best, "best", ["batch_size", "best_lr", "lr_by_test_acc", "study_best_lr"])
    out = pd.DataFrame(
        {
            "batch size": best["batch_size"].astype(str),
            "best lr (training loss)": [_lr_text(v) for v in best["best_lr"]],
            "its final training loss": _mean_ci_column(best, "final_train_loss"),
            "its final test accuracy (%)": _mean_ci_column(best, "final_test_acc", percent=True),
            "lr of the highest final test accuracy (not used to select)": [
                _lr_text(v) for v in best["lr_by_test_acc"]
            ],
            "study's best lr (max test accuracy)": [_lr_text(v) for v in best["study_best_lr"]],
            "same as the study": ["yes" if a else "no" for a in best["agrees"]],
        }
    )
    if not study:
        out = out.drop(columns=["study's best lr (max test accuracy)", "same as the study"])
    return out.set_index("batch size")


def study_at_800(histories: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    """Our test accuracy at iteration 800 beside the study's, per (lr, batch_size)."""
    check_frame(seeds, "seeds", ["lr", "batch_size", "seed", "eval_every"])
    at = history_at(histories, [800], by=["lr", "batch_size"]).set_index(["lr", "batch_size"])
    dense = seeds[seeds["eval_every"] == 1][["lr", "batch_size", "seed"]]
    mine = histories[histories["iteration"] == 800].merge(dense, on=["lr", "batch_size", "seed"])
    mine = mine.groupby(["lr", "batch_size"])["test_acc"].first()
    rows = []
    for key, claim in STUDY_GRID_TEST_800.items():
        if key in at.index:
            cell = at.loc[key]
            rows.append((*key, mine.get(key, math.nan), cell["test_acc_mean"],
                         cell["test_acc_ci"], int(cell["n_seeds"]), claim))  # fmt: skip
    columns = ["lr", "batch_size", "seed_acc", "mean_acc", "ci_acc", "n_seeds", "study"]
    return pd.DataFrame(rows, columns=columns)


def format_study_at_800(comparison: pd.DataFrame) -> pd.DataFrame:
    """``study_at_800(...)`` as display strings, indexed by learning rate and batch size."""
    check_frame(comparison, "comparison", ["lr", "batch_size", "seed_acc", "mean_acc", "study"])
    return pd.DataFrame(
        {
            "learning rate": [f"{v:g}" for v in comparison["lr"]],
            "batch size": comparison["batch_size"].astype(str),
            "ours, seed evaluated every iteration (%)": [
                DASH if pd.isna(v) else f"{100 * v:.2f}" for v in comparison["seed_acc"]
            ],
            "ours, mean ± 95 % CI over seeds (%)": [
                mean_ci(m, c, percent=True)
                for m, c in zip(comparison["mean_acc"], comparison["ci_acc"], strict=True)
            ],
            "study (one unseeded run)": comparison["study"],
        }
    ).set_index(["learning rate", "batch size"])


def examples_to_reach(histories: pd.DataFrame, seeds: pd.DataFrame, *, lr: float) -> pd.DataFrame:
    """Per batch size, the examples its mean loss needed at ``lr`` to reach a common loss."""
    check_frame(histories, "histories", ["lr", "batch_size", "seed", "iteration", "train_loss"])
    keys = ["lr", "batch_size", "seed"]
    kept = histories.merge(seeds[seeds["diverged_at"].isna()][keys], on=keys)
    kept = kept[np.isclose(kept["lr"], lr)]
    means = {}
    for batch_size, runs in kept.groupby("batch_size", sort=True):
        recorded = runs.groupby("iteration")["seed"].nunique()
        common = recorded.index[recorded > runs["seed"].nunique() // 2]
        means[int(batch_size)] = (
            runs[runs["iteration"].isin(common)].groupby("iteration")["train_loss"].mean()
        )
    columns = ["batch_size", "loss", "iteration", "examples"]
    target = max((float(mean.iloc[-1]) for mean in means.values()), default=math.nan)
    rows = []
    for batch_size, mean in means.items():
        iteration = int(mean.index[mean.to_numpy() <= target][0])
        rows.append((batch_size, target, iteration, (iteration + 1) * batch_size))
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


def cost_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """Wall seconds of a run per batch size (dense and thinned), diverged runs left out."""
    check_frame(seeds, "seeds", ["batch_size", "status", "diverged_at", "eval_every", "seconds"])
    ran = seeds[(seeds["status"] == "ok") & seeds["seconds"].notna()]
    rows = []
    for batch_size, runs in ran.groupby("batch_size", sort=True):
        whole = runs[runs["diverged_at"].isna()]
        row: dict[str, Any] = {"batch_size": int(batch_size)}
        row["iterations"] = int(runs["iterations"].max())
        seconds = whole["seconds"].astype(float)
        for name, part in (("fidelity", whole["eval_every"] == 1),
                           ("thinned", whole["eval_every"] > 1)):  # fmt: skip
            row[f"{name}_mean"], row[f"{name}_ci"] = seconds[part].mean(), ci95(seconds[part])
            row[f"n_{name}"] = int(part.sum())
        row["n_excluded"] = len(runs) - len(whole)
        rows.append(row)
    return pd.DataFrame(rows)


def format_cost_table(cost: pd.DataFrame) -> pd.DataFrame:
    """``cost_table(...)`` as display strings, indexed by batch size."""
    check_frame(cost, "cost", ["batch_size", "fidelity_mean", "thinned_mean", "n_excluded"])

    def seconds(stem: str) -> list[str]:
        return [
            DASH if not np.isfinite(m) else f"{m:.2f}" + (f" ± {c:.2f}" if np.isfinite(c) else "")
            for m, c in zip(cost[f"{stem}_mean"], cost[f"{stem}_ci"], strict=True)
        ]

    out = pd.DataFrame(
        {
            "batch size": cost["batch_size"].astype(str),
            "seconds per run, evaluated after every iteration": seconds("fidelity"),
            "runs timed (every iteration)": cost["n_fidelity"].astype(str),
            "seconds per run, thinned evaluation": seconds("thinned"),
            "runs timed (thinned)": cost["n_thinned"].astype(str),
            "diverged runs left out": cost["n_excluded"].astype(str),
        }
    )
    return out.set_index("batch size")


_HISTORY_METRICS = ("train_loss", "train_acc", "test_acc")


def history_at(
    history: pd.DataFrame, iterations: Sequence[int], *, by: Sequence[str] = ()
) -> pd.DataFrame:
    """Mean and 95 % CI over seeds of the metrics at ``iterations``, per ``by`` group."""
    check_frame(history, "history", ["iteration", "seed", *_HISTORY_METRICS, *by])
    rows = history[history["iteration"].isin([int(k) for k in iterations])]
    grouped = rows.groupby([*by, "iteration"])
    out = grouped["seed"].nunique().rename("n_seeds").to_frame()
    for metric in _HISTORY_METRICS:
        out[f"{metric}_mean"] = grouped[metric].mean()
        out[f"{metric}_ci"] = group_ci95(grouped[metric])
    return out.reset_index()


def task2_table(history: pd.DataFrame) -> pd.DataFrame:
    """Our Task 2 runs at the study's iterations: ``history_at`` beside ``study_<metric>``."""
    ours = history_at(history, STUDY_TASK2["iteration"])
    study = STUDY_TASK2.rename(columns={m: f"study_{m}" for m in _HISTORY_METRICS})
    return ours.merge(study, on="iteration", how="left")


def _study_text(values: pd.Series, percent: bool) -> list[str]:
    """The study's figures with the digits it wrote (a dash where it reported none)."""
    scale = 100.0 if percent else 1.0
    return [DASH if pd.isna(v) else f"{scale * v:.4g}" for v in values.astype(float)]


def format_task2_table(comparison: pd.DataFrame, *, study: bool = True) -> pd.DataFrame:
    """``task2_table(...)`` as display strings by iteration; ``study``: the study's beside."""
    check_frame(comparison, "comparison", ["iteration", "n_seeds"])
    columns = {"seeds": comparison["n_seeds"].astype(str).tolist()}
    for metric, name in zip(_HISTORY_METRICS, ("training loss", "train accuracy (%)",
                                               "test accuracy (%)"), strict=True):  # fmt: skip
        percent = metric != "train_loss"
        columns[f"{name}, ours"] = _mean_ci_column(comparison, metric, percent=percent)
        if study:
            columns[f"{name}, study"] = _study_text(comparison[f"study_{metric}"], percent)
    out = pd.DataFrame(columns, index=comparison["iteration"].astype(int).rename("iteration"))
    return out if study else out.rename(columns=lambda c: c.removesuffix(", ours"))


def subset_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """One row per N' of Task 5: ``grid_table``'s columns and the train - test gap."""
    check_frame(seeds, "seeds", ["n_prime", "lr", "batch_size", "iterations", *METRICS])
    table = _cell_table(seeds, ["n_prime", "lr", "batch_size", "iterations"])
    rated = seeds if "outcome" in seeds else outcomes.classify(seeds)
    ok = rated[rated["outcome"] == "stable"]
    gap = (ok["final_train_acc"] - ok["final_test_acc"]).groupby(ok["n_prime"])
    table["gap_mean"] = table["n_prime"].map(gap.mean())
    table["gap_ci"] = table["n_prime"].map(gap.agg(ci95))
    return table.sort_values("n_prime", ignore_index=True)


def format_subset_table(table: pd.DataFrame) -> pd.DataFrame:
    """``subset_table(...)`` as display strings indexed by N' (the gap in points)."""
    check_frame(table, "table", ["n_prime", "gap_mean", "gap_ci", "status", "n_seeds"])
    return pd.DataFrame(
        {
            "N' (training-set size)": table["n_prime"].astype(int).astype(str),
            **_final_columns(table, " on S'"),
            "train - test gap (points)": _mean_ci_column(table, "gap", percent=True),
            "status": [_status_text(row) for row in table.itertuples(index=False)],
        }
    ).set_index("N' (training-set size)")


def subset_study_table(histories: pd.DataFrame, *, iteration: int = 400) -> pd.DataFrame:
    """Task 5 at ``iteration`` (the study's 400) by n_prime, beside the study's."""
    ours = history_at(histories, [iteration], by=["n_prime"])
    reported = [STUDY_SUBSET_400.get(int(n), (math.nan, math.nan)) for n in ours["n_prime"]]
    ours["study_train_acc"] = [train for train, _ in reported]
    ours["study_test_acc"] = [test for _, test in reported]
    return ours


def format_subset_study_table(comparison: pd.DataFrame) -> pd.DataFrame:
    """``subset_study_table(...)`` as display strings (percent), indexed by N'."""
    check_frame(comparison, "comparison", ["n_prime", "n_seeds", "study_train_acc"])
    columns = {"seeds": comparison["n_seeds"].astype(str).tolist()}
    for metric, name in (("train_acc", "train accuracy on S' (%)"),
                         ("test_acc", "test accuracy (%)")):  # fmt: skip
        columns[f"{name}, ours"] = _mean_ci_column(comparison, metric, percent=True)
        columns[f"{name}, study"] = _study_text(comparison[f"study_{metric}"], True)
    index = comparison["n_prime"].astype(int).rename("N' (training-set size)")
    return pd.DataFrame(columns, index=index)


def subset_optimum(fits: pd.DataFrame) -> pd.DataFrame:
    """Per N', the mean and CI of the seeds' least-squares fits (``Theory.optimum``)."""
    check_frame(fits, "fits", ["n_prime", "seed", *_HISTORY_METRICS])
    return history_at(fits.assign(iteration=0), [0], by=["n_prime"]).drop(columns="iteration")


# --- the stability sweep ----------------------------------------------------------------


def accuracy_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """A row per (batch size, lr) of the sweep: counts, state, stable seeds' finals."""
    columns = ["lr", "batch_size", "status", "seed", "diverged_at"]
    check_frame(seeds, "seeds", [*columns, "final_test_acc", "final_train_loss"])
    rows = []
    for (batch_size, lr), group in seeds.groupby(["batch_size", "lr"], sort=True):
        counts, _, stable = seed_outcomes(group)
        acc = stable["final_test_acc"].astype(float)
        state = outcomes.cell_state(counts["n_seeds"], counts["n_diverged"], counts["n_unstable"])
        rows.append(
            {"batch_size": int(batch_size), "lr": float(lr), **counts, "state": state}
            | {"final_test_acc_mean": acc.mean(), "final_test_acc_ci": ci95(acc)}
            | {"final_train_loss_mean": stable["final_train_loss"].astype(float).mean()}
        )
    table = pd.DataFrame(rows)
    if table.empty:
        raise ValueError("seeds holds no cell of the sweep")
    return table.astype({"diverged_at_min": "Int64", "diverged_at_max": "Int64"})


def instability_boundary(table: pd.DataFrame) -> pd.DataFrame:
    """Per batch size of ``accuracy_table``: the largest stable and first unstable lr."""
    check_frame(
        table, "table", ["batch_size", "lr", "status", "n_seeds", "n_diverged", "n_unstable"]
    )
    rows = []
    for batch_size, cells in table.groupby("batch_size", sort=True):
        cells = cells[(cells["status"] == "ok") & (cells["n_seeds"] > 0)].sort_values("lr")
        if cells.empty:
            continue
        lrs = cells["lr"].to_numpy(dtype=float)
        some = (cells["n_diverged"] + cells["n_unstable"] > 0).to_numpy()
        every = (cells["n_diverged"] == cells["n_seeds"]).to_numpy()
        first = int(np.argmax(some)) if some.any() else len(lrs)
        tail = np.flatnonzero(~every)
        start = tail[-1] + 1 if len(tail) else 0
        there = cells.iloc[first] if first < len(lrs) else None
        rows.append(
            {
                "batch_size": int(batch_size),
                "largest_stable_lr": lrs[first - 1] if first > 0 else math.nan,
                "first_unstable_lr": lrs[first] if first < len(lrs) else math.nan,
                **{f"{key}_there": pd.NA if there is None else int(there[key]) for key in _COUNTS},
                "all_diverge_lr": lrs[start] if start < len(lrs) else math.nan,
                "lr_low": lrs[0],
                "lr_high": lrs[-1],
            }
        )
    if not rows:
        raise ValueError("table holds no finished cell of the sweep")
    boundary = pd.DataFrame(rows).set_index("batch_size")
    return boundary.astype({f"{key}_there": "Int64" for key in _COUNTS})


def study_positions(
    table: pd.DataFrame, bounds: Bounds, *, lrs: Sequence[float] = STUDY_LRS
) -> pd.DataFrame:
    """Per study lr and batch size: the lr over each bound and the sweep cell's result."""
    check_frame(table, "table", ["batch_size", "lr", "n_seeds", "n_diverged", "n_unstable"])
    counts = ["n_seeds", "n_diverged", "n_unstable"]
    accuracy = ["final_test_acc_mean", "final_test_acc_ci"]
    ratios = [f"lr_over_{name}" for name in BOUND_NAMES]
    rows = []
    for lr in lrs:
        over = {"lr": float(lr)} | {f"lr_over_{b}": lr / getattr(bounds, b) for b in BOUND_NAMES}
        for batch_size, cells in table.groupby("batch_size", sort=True):
            match = cells[np.isclose(cells["lr"], lr, rtol=1e-9, atol=0)]
            row = over | {"batch_size": int(batch_size), "in_sweep": bool(len(match))}
            if len(match):
                cell = match.iloc[0]
                row |= {key: int(cell[key]) for key in counts}
                row |= {key: float(cell.get(key, math.nan)) for key in accuracy}
            else:
                row |= dict.fromkeys(counts, pd.NA) | dict.fromkeys(accuracy, math.nan)
            rows.append(row)
    columns = ["lr", "batch_size", *ratios, "in_sweep", *counts, *accuracy]
    return pd.DataFrame(rows, columns=columns).astype(dict.fromkeys(counts, "Int64"))


def _cell_text(cell, *, ci: bool) -> str:
    """A sweep cell in words: stable seeds' accuracy (± CI), diverged and unstable seeds."""
    n = int(cell["n_seeds"])
    if n == 0:
        return "failed"
    k, j = int(cell["n_diverged"]), int(cell["n_unstable"])
    notes = [f"{word} ({c}/{n})" for word, c in (("diverged", k), ("unstable", j)) if c]
    if k + j == n:
        return ", ".join(notes)
    text = f"{100 * cell['final_test_acc_mean']:.2f}"
    if ci and n - k - j > 1:
        text += f" ± {100 * cell['final_test_acc_ci']:.2f}"
    elif not ci:
        text += " %"
    return "; ".join([text, ", ".join(notes)]) if notes else text


def format_study_positions(positions: pd.DataFrame) -> pd.DataFrame:
    """``study_positions(...)`` as display strings, indexed by lr."""
    columns = ["lr", "batch_size", "lr_over_lr_max", "in_sweep", "n_seeds", "n_diverged"]
    check_frame(positions, "positions", columns)
    rows = []
    for lr, cells in positions.groupby("lr", sort=False):
        row = {"lr": lr} | {
            f"lr as a multiple of {text}": f"{cells[f'lr_over_{name}'].iloc[0]:.2f}"
            for name, text in BOUND_NAMES.items()
        }
        for cell in cells.to_dict("records"):
            text = _cell_text(cell, ci=False) if cell["in_sweep"] else "not in the sweep"
            row[f"batch size {cell['batch_size']}"] = text
        rows.append(row)
    return pd.DataFrame(rows).set_index("lr")


def format_accuracy(table: pd.DataFrame) -> pd.DataFrame:
    """``accuracy_table`` as display strings: lr down, batch size across, with CIs."""
    check_frame(table, "table", ["batch_size", "lr", "n_seeds", "n_diverged", "n_unstable"])
    cells = table.assign(text=[_cell_text(row, ci=True) for _, row in table.iterrows()])
    frame = cells.pivot(index="lr", columns="batch_size", values="text")
    frame.columns = [f"batch size {b}" for b in frame.columns]
    frame.index.name = "learning rate"
    return frame.fillna(DASH)


def _multiples(low: float, high: float, bound: float) -> str:
    """The boundary (low, high] as multiples of ``bound``: "a–b", "≤ b" or "> a"."""
    if pd.isna(low) and pd.isna(high):
        return DASH
    if pd.isna(low):
        return f"≤ {high / bound:.2f}"
    if pd.isna(high):
        return f"> {low / bound:.2f}"
    return f"{low / bound:.2f}–{high / bound:.2f}"


def format_boundary(boundary: pd.DataFrame, bounds: Bounds) -> pd.DataFrame:
    """``instability_boundary`` as display strings, as multiples of each of ``bounds``."""
    columns = ["largest_stable_lr", "first_unstable_lr", "n_unstable_there", "n_diverged_there"]
    check_frame(boundary, "boundary", [*columns, "n_seeds_there", "all_diverge_lr"])
    rows = []
    for batch_size, row in boundary.iterrows():
        low, high = row["largest_stable_lr"], row["first_unstable_lr"]
        there = DASH
        if not pd.isna(row["n_seeds_there"]):
            n, counts = int(row["n_seeds_there"]), ("diverged", "unstable")
            there = ", ".join(f"{int(row[f'n_{w}_there'])} of {n} {w}" for w in counts
                              if row[f"n_{w}_there"])  # fmt: skip
        rows.append(
            {
                "batch size": batch_size,
                "largest stable lr": _lr_text(low),
                "smallest lr not stable": _lr_text(high),
                "seeds there": there,
                "every seed diverges from lr": _lr_text(row["all_diverge_lr"]),
                **{
                    f"boundary as a multiple of {text}": _multiples(low, high, getattr(bounds, b))
                    for b, text in BOUND_NAMES.items()
                },
            }
        )
    return pd.DataFrame(rows).set_index("batch size")


def logged_run(runs_dir: str | Path, *, task: str, cells: int) -> pd.Series | None:
    """The latest run-log line of ``task`` alone making all its ``cells``, else None."""
    if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
        raise ValueError(f"cells must be an integer >= 1, got {cells!r}")
    log = read_run_log(runs_dir)
    if log.empty:
        return None
    whole = log[(log["tasks"] == task) & (log["cells"] == cells) & (log["ok"] == cells)]
    return None if whole.empty else whole.iloc[-1]
