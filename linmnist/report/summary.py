"""Tables and text of the report, computed from the grid results.

The inputs are the frames that ``linmnist.experiments.results.load_task`` (one row per cell and
seed:
status, error, parameters, final metrics, diverged_at, seconds) and
``linmnist.experiments.results.load_history`` return. Every number in the tables and in the
discussion
text is formatted from them; only the study's own reported figures (SPEC) are constants here,
and they are labelled as the study's.

"Final" values are those of the last iteration. Means and standard deviations are over the
seeds that did not diverge; a "best" learning rate is picked on training data, never on the
test set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

# The datasets the report runs on: display name and class names (labels 0-9).
DATASET_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
CLASS_NAMES = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
DATASET_DESCRIPTIONS = {
    "mnist": "handwritten digits 0–9 (the study's dataset)",
    "fashion-mnist": (
        "Zalando's images of clothing, shoes and bags in 10 classes, a drop-in replacement "
        "for MNIST of the same format and size"
    ),
}
# The study ran on MNIST: its reported figures below are shown only beside MNIST results.
STUDY_DATASET = "mnist"

# The study's reported figures (one unseeded run each; SPEC, "Figures the study reported").
STUDY_TASK2 = pd.DataFrame(
    {
        "iteration": [0, 200, 800, 999],
        "train_loss": [0.4953, 0.331, 0.2541, 0.2462],
        "train_acc": [0.365, math.nan, math.nan, 0.8129],
        "test_acc": [0.369, 0.775, 0.816, 0.8214],
    }
)
STUDY_GRID_TEST_800 = {
    (0.1, 1): "diverged",
    (0.1, 10): "diverged",
    (0.1, 100): "diverged",
    (0.1, 1000): "diverged",
    (0.01, 1): "68-74 % (noisy)",
    (0.01, 10): "85.3 %",
    (0.01, 100): "85.3 %",
    (0.01, 1000): "85.5 %",
    (0.001, 1): "80.3 %",
    (0.001, 10): "81.4 %",
    (0.001, 100): "81.6 %",
    (0.001, 1000): "81.7 %",
}
STUDY_BEST_LR = {1: 0.001, 10: 0.01, 100: 0.01, 1000: 0.01}
STUDY_SECONDS_PER_RUN = 350.0
STUDY_SUBSET_400 = {
    100: (0.93, 0.668),
    500: (0.814, 0.778),
    1000: (0.782, 0.743),
    10000: (0.784, 0.792),
}

METRICS = ("final_train_loss", "final_train_acc", "final_test_acc")
DASH = "–"


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASET_NAMES:
        raise ValueError(f"dataset must be one of {', '.join(DATASET_NAMES)}, got {dataset!r}")
    return dataset


def dataset_name(dataset: str) -> str:
    """The display name of a dataset, e.g. "Fashion-MNIST" for ``"fashion-mnist"``."""
    return DATASET_NAMES[_check_dataset(dataset)]


def is_study_dataset(dataset: str) -> bool:
    """True for the study's own dataset (MNIST): only then are its reported figures shown."""
    return _check_dataset(dataset) == STUDY_DATASET


def label_text(dataset: str, label: int) -> str:
    """A label as shown in titles: "2" for MNIST, "2: Pullover" for Fashion-MNIST."""
    names = CLASS_NAMES[_check_dataset(dataset)]
    if not 0 <= int(label) < len(names):
        raise ValueError(f"label must be in [0, {len(names) - 1}], got {label!r}")
    name = names[int(label)]
    return name if name == str(label) else f"{label}: {name}"


def report_title(dataset: str) -> str:
    """The report's title, naming the dataset."""
    return f"linmnist — a linear {dataset_name(dataset)} classifier trained by minibatch SGD"


def report_scope(dataset: str) -> str:
    """Which dataset the report is on and whether the study's figures appear, as Markdown."""
    name = dataset_name(dataset)
    if is_study_dataset(dataset):
        return (
            f"This report is on **{name}**, {DATASET_DESCRIPTIONS[dataset]}; the study's "
            "reported figures (one unseeded run each) stand beside ours, labelled as the study's."
        )
    return (
        f"This report is on **{name}**: {DATASET_DESCRIPTIONS[dataset]}. The study ran on "
        "MNIST, so its reported figures are not shown here (they are in the MNIST report); "
        f"the closed-form optimum and the stability threshold are computed on {name}."
    )


def data_description(dataset: str, *, n_train: int, n_test: int, image_shape: Sequence[int]) -> str:
    """The Task 1 introduction of the dataset, as Markdown built from the loaded arrays."""
    name = dataset_name(dataset)
    classes = ", ".join(label_text(dataset, k) for k in range(len(CLASS_NAMES[dataset])))
    rows, cols = (int(n) for n in image_shape)
    return (
        f"{name}: {n_train:,} training and {n_test:,} test images of {rows} × {cols} grey "
        f"pixels, {DATASET_DESCRIPTIONS[dataset]}; labels {classes}. The copy is verified "
        "(label counts, and where known pixel sums and individual labels). Each image becomes "
        rf"a column of $X \in [0, 1]^{{{rows * cols} \times N}}$ (pixels / 255) and each "
        r"label a one-hot column of $Y \in \{0, 1\}^{10 \times N}$."
    )


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


def check_frame(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    """A ValueError unless ``frame`` is a DataFrame with ``columns``, naming what is missing."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}; it has {list(frame.columns)}")


def _mean_sd_column(table: pd.DataFrame, stem: str, *, percent: bool = False) -> list[str]:
    """``mean_sd`` of the columns ``<stem>_mean`` and ``<stem>_sd``, row by row."""
    pairs = zip(table[f"{stem}_mean"], table[f"{stem}_sd"], strict=True)
    return [mean_sd(m, s, percent=percent) for m, s in pairs]


def pct(value: float, digits: int = 2) -> str:
    """A fraction as a percentage, e.g. ``pct(0.8534)`` -> ``'85.34 %'``; a dash if missing."""
    if value is None or not np.isfinite(value):
        return DASH
    return f"{100 * value:.{digits}f} %"


def mean_sd(mean: float, sd: float, *, percent: bool = False, digits: int = 4) -> str:
    """``'mean ± sd'`` (sd omitted when undefined), as a percentage of a fraction if asked."""
    if mean is None or not np.isfinite(mean):
        return DASH
    scale, digits = (100.0, 2) if percent else (1.0, digits)
    text = f"{scale * mean:.{digits}f}"
    if sd is not None and np.isfinite(sd):
        text += f" ± {scale * sd:.{digits}f}"
    return text


def _span(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}-{high}"


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
    span = _span([int(row.diverged_at_min), int(row.diverged_at_max)])
    return f"diverged at iteration {span} ({row.n_diverged} of {row.n_seeds} seeds)"


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
            "final training loss": _mean_sd_column(table, "final_train_loss"),
            "final train accuracy (%)": _mean_sd_column(table, "final_train_acc", percent=True),
            "final test accuracy (%)": _mean_sd_column(table, "final_test_acc", percent=True),
            "status": [_status_text(row) for row in table.itertuples(index=False)],
            "seconds per run, every-iteration evaluation": [
                DASH if not np.isfinite(v) else f"{v:.1f}" for v in table["seconds_fidelity"]
            ],
            "seconds per run, thinned evaluation": [
                DASH if not np.isfinite(v) else f"{v:.1f}" for v in table["seconds_thinned"]
            ],
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
    return table.sort_values("n_prime", ignore_index=True)


def format_subset_table(table: pd.DataFrame, *, study: bool = True) -> pd.DataFrame:
    """``subset_table(...)`` as display strings indexed by N' (the gap in percentage points)."""
    check_frame(table, "table", ["n_prime", "gap_mean", "gap_sd", "status", "n_seeds"])
    out = pd.DataFrame(
        {
            "N' (training-set size)": table["n_prime"].astype(int).astype(str),
            "seeds": table["n_seeds"].astype(str),
            "final training loss on S'": _mean_sd_column(table, "final_train_loss"),
            "final train accuracy on S' (%)": _mean_sd_column(
                table, "final_train_acc", percent=True
            ),
            "final test accuracy (%)": _mean_sd_column(table, "final_test_acc", percent=True),
            "train - test gap (points)": _mean_sd_column(table, "gap", percent=True),
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


def shapes_table(arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    """Shape and dtype of each named array, e.g. before and after ``prepare``.

    Parameters
    ----------
    arrays : dict
        Name -> array, in display order.
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


def _cell(table: pd.DataFrame, lr: float, batch_size: int):
    rows = table[np.isclose(table["lr"], lr) & (table["batch_size"] == batch_size)]
    return rows.iloc[0] if len(rows) else None


def _list(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def batch_size_discussion(
    table: pd.DataFrame,
    *,
    lr_max: float,
    lambda_max: float,
    n_train: int,
    curvature: tuple[float, float] | None = None,
    study: bool = True,
) -> str:
    """The Task 4 discussion of the batch size, as Markdown built from the measured numbers.

    Parameters
    ----------
    table : DataFrame
        ``grid_table(...)``.
    lr_max, lambda_max : float
        The stability threshold 2 / lambda_max and lambda_max of X X^T / N
        (``linmnist.engine.analysis.stability_threshold``).
    n_train : int
        The training-set size (to count epochs).
    curvature : (float, float), optional
        Mean and maximum per-sample ||x||^2 (``sample_curvature``), to explain the noise of
        batch size 1.
    study : bool
        Set the best learning rates beside the study's claim (for MNIST, its dataset).
    """
    check_frame(table, "table", ["lr", "batch_size", "n_diverged", "n_seeds", "iterations"])
    if not (np.isfinite(lr_max) and lr_max > 0 and np.isfinite(lambda_max) and lambda_max > 0):
        raise ValueError(f"lr_max and lambda_max must be positive, got {lr_max!r}, {lambda_max!r}")
    if n_train < 1:
        raise ValueError(f"n_train must be >= 1, got {n_train!r}")
    ok = table[table["status"] == "ok"]
    lrs = sorted(ok["lr"].unique(), reverse=True)
    batch_sizes = sorted(int(b) for b in ok["batch_size"].unique())
    iterations = int(ok["iterations"].max())
    parts = []

    stability = []
    for lr in lrs:
        rows = ok[np.isclose(ok["lr"], lr)]
        n_runs, n_div = int(rows["n_seeds"].sum()), int(rows["n_diverged"].sum())
        factor = abs(1 - lr * lambda_max)
        side = "above" if lr > lr_max else "below"
        text = (
            rf"lr = {lr:g} is {side} the threshold ($|1 - \eta\,\lambda_{{\max}}| = {factor:.2f}$)"
        )
        if n_div == n_runs and n_runs:
            first = [int(v) for v in rows["diverged_at_min"].dropna()]
            last = [int(v) for v in rows["diverged_at_max"].dropna()]
            text += (
                f" and every one of its {n_runs} runs diverged, at iteration "
                f"{_span(first + last)}, whatever the batch size"
            )
        elif n_div:
            text += f"; {n_div} of its {n_runs} runs diverged"
        else:
            text += f"; none of its {n_runs} runs diverged"
        stability.append(text)
    parts.append(
        r"**Stability.** The largest eigenvalue of the curvature $X X^T / N$ is "
        rf"$\lambda_{{\max}} = {lambda_max:.2f}$, so full-batch gradient descent on this "
        rf"quadratic loss with learning rate $\eta$ is stable only for "
        rf"$\eta < 2/\lambda_{{\max}} = {lr_max:.4f}$: each step multiplies the error along "
        r"the top eigenvector by $1 - \eta\,\lambda_{\max}$. A minibatch gradient has "
        "the same curvature on average, so a larger batch cannot rescue a learning rate "
        "above the threshold. " + "; ".join(stability) + "."
    )

    noise = []
    for lr in lrs:
        cells = [(b, _cell(ok, lr, b)) for b in batch_sizes]
        cells = [(b, c) for b, c in cells if c is not None and c["n_diverged"] == 0]
        if len(cells) < 2:
            continue
        (b0, c0), (b1, c1) = cells[0], cells[-1]
        text = (
            f"at lr = {lr:g} the final test accuracy is "
            f"{mean_sd(c0['final_test_acc_mean'], c0['final_test_acc_sd'], percent=True)} % with "
            f"batch size {b0} and "
            f"{mean_sd(c1['final_test_acc_mean'], c1['final_test_acc_sd'], percent=True)} % with "
            f"batch size {b1}, and the final training loss "
            f"{c0['final_train_loss_mean']:.4f} against {c1['final_train_loss_mean']:.4f}"
        )
        sd0, sd1 = c0["final_test_acc_sd"], c1["final_test_acc_sd"]
        if np.isfinite(sd0) and np.isfinite(sd1) and sd1 > 0:
            text += (
                f"; the spread over seeds (standard deviation of the test accuracy) goes from "
                f"{100 * sd0:.2f} to {100 * sd1:.2f} points, a factor {sd0 / sd1:.1f}"
            )
        noise.append(text)
    if noise:
        parts.append(
            "**Noise.** The expected minibatch gradient is the full gradient whatever the batch "
            "size; what the batch size changes is its variance, which falls as $1/B$. With a "
            "constant learning rate SGD does not settle at the optimum but keeps moving in a "
            r"region around it whose size grows with $\eta / B$, so at the same learning rate "
            "a small batch ends farther from the optimum and its runs differ more between "
            "seeds: " + "; ".join(noise) + "."
        )
    if curvature is not None and batch_sizes and batch_sizes[0] == 1:
        mean, top = curvature
        stable = [lr for lr in lrs if lr < lr_max]
        if stable:
            lr = max(stable)
            low, typical = 1 - lr * top, 1 - lr * mean
            text = (
                "**Batch size 1.** A single-sample step multiplies the error along that sample "
                rf"by $1 - \eta\,\|x\|^2$, and $\|x\|^2$ averages {mean:.1f} "
                f"(maximum {top:.1f}) over the training images. At lr = {lr:g} that factor "
                f"is {typical:.2f} for a typical image and {low:.2f} for the largest one"
            )
            if low < -1:
                text += (
                    ": a step on a large image more than reverses the error along it, so "
                    "single-sample steps keep throwing the weights around, and batch size 1 "
                    "is the noisiest configuration at that learning rate."
                )
            elif low < 0:
                text += ": steps on large images overshoot along their own sample."
            else:
                text += ": every single-sample step shrinks the error along its sample."
            parts.append(text)

    seen = [
        f"batch size {b} sees {iterations * b:,} samples ({iterations * b / n_train:.3g} epochs)"
        for b in batch_sizes
    ]
    parts.append(
        f"**Data seen.** At a fixed {iterations:,} iterations, " + _list(seen) + ". Larger "
        "batches average over more data per step, so at equal iterations they reach a "
        "less noisy point, not a different optimum: none of the final training losses can go "
        "below the closed-form optimum of the same loss."
    )

    best = best_lr(table)
    if len(best):
        picks = _list(
            [f"{row.best_lr:g} for batch size {row.batch_size}" for row in best.itertuples()]
        )
        claims = [
            f"{row.study_best_lr:g} for batch size {row.batch_size}"
            for row in best.itertuples()
            if np.isfinite(row.study_best_lr)
        ]
        agree = int(best["agrees"].sum())
        text = (
            "**Best learning rate.** Picked on the final training loss, the best learning "
            f"rate is {picks}."
        )
        if claims and study:
            text += (
                f" The study, which picked on the maximum test accuracy over iterations, "
                f"claimed {_list(claims)}; we agree on {agree} of {len(claims)} batch sizes."
            )
        parts.append(text)
    return "\n\n".join(parts)


def cost_discussion(table: pd.DataFrame, *, study: bool = True) -> str:
    """The wall time of the runs against the study's, as Markdown (machine-dependent numbers).

    Parameters
    ----------
    table : DataFrame
        ``grid_table(...)``; its iterations, seconds_fidelity and seconds_thinned are used.
    study : bool
        Compare with the study's time per run (on MNIST, the same data size as Fashion-MNIST);
        False names it as the MNIST study's.
    """
    check_frame(
        table,
        "table",
        ["batch_size", "iterations", "status", "seconds_fidelity", "seconds_thinned"],
    )
    ok = table[table["status"] == "ok"]
    timed = ok[np.isfinite(ok["seconds_fidelity"].astype(float))]
    if timed.empty:
        return "No run was timed at the study's fidelity (evaluation after every iteration)."
    by_b = timed.groupby("batch_size")[["seconds_fidelity", "seconds_thinned"]].mean()
    times = _list(
        [f"{by_b.loc[b, 'seconds_fidelity']:.1f} s at batch size {b}" for b in by_b.index]
    )
    text = (
        f"**Cost.** A run of {int(timed['iterations'].max()):,} iterations evaluated after every "
        f"iteration (the study's fidelity) took {times} (mean over learning rates), against "
        f"about {STUDY_SECONDS_PER_RUN:.0f} s per 1,000-iteration run in the study"
        f"{'' if study else ' (on MNIST, of the same size)'}. An SGD step "
        r"costs $2 \times 10 \times 784 \times B$ multiply-adds, while an evaluation touches "
        "every training and test image."
    )
    thinned = by_b["seconds_thinned"].dropna()
    if len(thinned):
        text += (
            " The same runs evaluated only every few iterations took "
            + _list([f"{thinned[b]:.1f} s at batch size {b}" for b in thinned.index])
            + "; the difference is the cost of the evaluation."
        )
    return text


def subset_discussion(table: pd.DataFrame, *, n_features: int, n_classes: int) -> str:
    """The Task 5 discussion of the training-set size, as Markdown from the measured numbers.

    Parameters
    ----------
    table : DataFrame
        ``subset_table(...)``.
    n_features, n_classes : int
        The model's input and output sizes (its weight count is their product).
    """
    check_frame(
        table, "table", ["n_prime", "gap_mean", "final_test_acc_mean", "final_train_acc_mean"]
    )
    ok = table[(table["status"] == "ok") & np.isfinite(table["gap_mean"].astype(float))]
    if ok.empty:
        return "No Task 5 run finished, so there is nothing to discuss."
    ok = ok.sort_values("n_prime")
    small, large = ok.iloc[0], ok.iloc[-1]
    n_weights = n_features * n_classes
    rows = _list(
        [
            f"N' = {int(r.n_prime)}: {pct(r.final_train_acc_mean)} on S', "
            f"{pct(r.final_test_acc_mean)} on the test set (gap {100 * r.gap_mean:+.2f} points)"
            for r in ok.itertuples()
        ]
    )
    text = (
        f"After {int(ok['iterations'].max()):,} iterations (mean over seeds): {rows}. "
        f"The model has {n_weights:,} weights; with N' = {int(small.n_prime)} images it is "
        f"fitted to {int(small.n_prime) * n_classes:,} target values, so it can fit S' far "
        "better than it generalises. "
    )
    if len(ok) > 1:
        direction = "shrinks" if large.gap_mean < small.gap_mean else "does not shrink"
        text += (
            f"The train-test gap {direction} from {100 * small.gap_mean:+.2f} points at "
            f"N' = {int(small.n_prime)} to {100 * large.gap_mean:+.2f} points at "
            f"N' = {int(large.n_prime)}, and the test accuracy goes from "
            f"{pct(small.final_test_acc_mean)} to {pct(large.final_test_acc_mean)}."
        )
        if large.gap_mean < small.gap_mean:
            text += (
                " More training images make the training accuracy a better estimate of the "
                "test accuracy: the weights fitted to S' come closer to those fitted to the "
                "whole training set."
            )
    return text
