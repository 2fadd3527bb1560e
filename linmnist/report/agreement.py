"""Predicted against measured learning curves: how often the prediction lies in the seeds' CI.

For each configuration whose seeds all ran to the end, at each iteration every seed recorded:
the share where the predicted expected loss (``linmnist.experiments.theory``) lies inside the
95 % CI of the seeds' mean training loss, and the largest relative error.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from linmnist.report import outcomes
from linmnist.report.tables import check_frame, significant, styled
from linmnist.report.uncertainty import group_ci95

AGREEMENT_COLUMNS = ["cell", "seeds", "points", "inside", "max_rel_error"]
# The share of iterations inside the CI from which a run's prediction counts as agreeing.
AGREES_FROM = 0.9


def seed_means(histories: pd.DataFrame, metric: str = "train_loss") -> pd.DataFrame:
    """Per (cell, iteration) where every seed of the cell was evaluated: seeds, mean, ci."""
    check_frame(histories, "histories", ["cell", "seed", "iteration", metric])
    seeds = histories.groupby("cell")["seed"].nunique().rename("seeds")
    grouped = histories.groupby(["cell", "iteration"])[metric]
    stats = grouped.agg(count="count", mean="mean").assign(ci=group_ci95(grouped))
    stats = stats.reset_index().merge(seeds, on="cell")
    return stats[stats["count"] == stats["seeds"]].drop(columns="count")


def agreement(
    histories: pd.DataFrame, curves: pd.DataFrame, runs: pd.DataFrame, metric: str = "train_loss"
) -> pd.DataFrame:
    """Per cell whose seeds all ran to the end: how often the prediction is in the CI."""
    check_frame(curves, "curves", ["cell", "iteration", metric])
    check_frame(runs, "runs", ["cell", "diverged_at"])
    whole = runs.groupby("cell")["diverged_at"].apply(lambda d: d.isna().all())
    means = seed_means(histories[histories["cell"].isin(whole[whole].index)], metric)
    predicted = curves[["cell", "iteration", metric]].rename(columns={metric: "predicted"})
    both = means.merge(predicted, on=["cell", "iteration"])
    error = (both["predicted"] - both["mean"]).abs()
    both = both.assign(inside=error <= both["ci"], rel=error / both["mean"].abs())
    table = both.groupby("cell", sort=False).agg(
        seeds=("seeds", "first"),
        points=("iteration", "size"),
        inside=("inside", "mean"),
        max_rel_error=("rel", "max"),
    )
    return table.reset_index()[AGREEMENT_COLUMNS]


def with_settings(curves: pd.DataFrame, seeds: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The predicted ``curves`` with each cell's ``keys`` (e.g. lr, batch_size) from ``seeds``."""
    check_frame(seeds, "seeds", ["cell", *keys])
    settings = seeds[["cell", *keys]].drop_duplicates("cell")
    return curves.drop(columns=[k for k in keys if k in curves.columns]).merge(settings, on="cell")


def with_edges(table: pd.DataFrame, seeds: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """``agreement`` rows with lr, batch_size and ``edge_ratio``, lr over the predicted edge."""
    check_frame(edges, "edges", ["batch_size", "lr_edge"])
    settings = seeds[["cell", "lr", "batch_size"]].drop_duplicates("cell")
    rows = table.merge(settings, on="cell").merge(edges[["batch_size", "lr_edge"]], on="batch_size")
    return rows.assign(edge_ratio=rows["lr"] / rows["lr_edge"]).drop(columns="lr_edge")


_FORMATS = {
    "inside": lambda v: f"{100 * v:.0f} %",
    "max_rel_error": lambda v: f"{significant(100 * v, 2)} %",
    "edge_ratio": lambda v: significant(v, 2),
}
_HEADERS = {
    "edge_ratio": "lr / predicted edge",
    "seeds": "seeds",
    "points": "iterations compared",
    "inside": "prediction inside the 95 % CI",
    "max_rel_error": "largest relative error",
}


def format_agreement(table: pd.DataFrame, seeds: pd.DataFrame, keys: dict[str, str]) -> Styler:
    """``agreement`` (or ``with_edges``) for display, the cell named by ``keys``."""
    frame = with_settings(table, seeds, list(keys))
    extra = ["edge_ratio"] if "edge_ratio" in frame.columns else []
    frame = frame.sort_values(list(keys))[[*keys, *extra, *AGREEMENT_COLUMNS[1:]]]
    return styled(frame, {**_FORMATS, **{k: "{:g}".format for k in keys}}, headers=keys | _HEADERS)


def edge_counts(seeds: pd.DataFrame, histories: pd.DataFrame) -> pd.DataFrame:
    """Per (batch_size, edge_factor) of the edge runs: lr, seeds, grew and above."""
    check_frame(seeds, "seeds", ["batch_size", "edge_factor", "lr", "final_train_loss"])
    grew = outcomes.unbounded(seeds, histories)
    above = (seeds["final_train_loss"] > outcomes.ZERO_LOSS) & ~grew
    frame = seeds.assign(grew=grew, above=above)[seeds["status"] == "ok"]
    counts = {"lr": ("lr", "first"), "seeds": ("seed", "size"), "grew": ("grew", "sum")}
    counts["above"] = ("above", "sum")
    return frame.groupby(["batch_size", "edge_factor"]).agg(**counts).reset_index()


def measured_edges(counts: pd.DataFrame) -> pd.DataFrame:
    """Per batch size, the multiples of the predicted edge between which most seeds grew."""
    rows = []
    for batch_size, cells in counts.sort_values("edge_factor").groupby("batch_size"):
        most = (cells["grew"] > cells["seeds"] / 2).to_numpy()
        first = int(most.argmax()) if most.any() else None
        factors = cells["edge_factor"].to_numpy(dtype=float)
        high = factors[first] if first is not None else np.nan
        low = factors[first - 1] if first else np.nan
        rows.append({"batch_size": batch_size, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["batch_size", "low", "high"])


def exact_pass_rate(points: int, share: float = AGREES_FROM, level: float = 0.95) -> float:
    """The probability that an EXACT prediction agrees: inside the ``level`` CI at ``share`` of
    ``points`` independent evaluations or more (binomial; 0.90 at 11 evaluations)."""
    need = math.ceil(share * points - 1e-9)
    return sum(
        math.comb(points, j) * level**j * (1 - level) ** (points - j)
        for j in range(need, points + 1)
    )


def expected_agreeing(table: pd.DataFrame) -> tuple[float, float]:
    """Mean and sd of how many ``agreement`` rows an exact prediction would pass."""
    rates = np.array([exact_pass_rate(int(p)) for p in table["points"]])
    return float(rates.sum()), float(np.sqrt(np.sum(rates * (1 - rates))))


def within_chance(table: pd.DataFrame) -> bool:
    """Whether no fewer rows agree than an exact prediction's mean less two sds."""
    mean, sd = expected_agreeing(table)
    return bool((table["inside"] >= AGREES_FROM).sum() >= mean - 2 * sd)


def share_agreeing(table: pd.DataFrame) -> float:
    """The share of ``agreement``'s rows that agree (NaN without rows)."""
    return float(np.mean(table["inside"] >= AGREES_FROM)) if len(table) else float("nan")
