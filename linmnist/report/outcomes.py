"""The report's instability rule: a seed's run is ``"diverged"`` when the engine stopped it
(``diverged_at``: its loss non-finite or above ``DIVERGENCE_LOSS``), ``"unstable"`` when it ran
to the end but its final training loss is above ``ZERO_LOSS`` (worse than no training) or its
loss was ``growing`` at the end (read from its history, when given), ``"stable"`` otherwise.
A failed cell has no outcome.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# The training loss at W = 0: 0.5 mean ||y||^2 = 0.5 for one-hot labels.
ZERO_LOSS = 0.5
# A loss that ends more than this many times its history's minimum, and rising, is growing.
GROWTH_FACTOR = 2.0
OUTCOMES = ("stable", "unstable", "diverged")


def growing(losses: Sequence[float]) -> bool:
    """Whether the last of ``losses`` exceeds ``GROWTH_FACTOR`` x the smallest and the middle."""
    values = np.asarray(losses, dtype=float)
    if values.size < 3:
        return False
    last = values[-1]
    return bool(last > GROWTH_FACTOR * np.nanmin(values) and last > values[(values.size - 1) // 2])


def classify(seeds: pd.DataFrame, histories: pd.DataFrame | None = None) -> pd.DataFrame:
    """``seeds`` with ``outcome``: "diverged", "unstable", "stable" (missing if failed)."""
    missing = {"status", "seed", "diverged_at", "final_train_loss"} - set(seeds.columns)
    if missing:
        raise ValueError(f"seeds lacks the columns {sorted(missing)}")
    ran = (seeds["status"] == "ok") & seeds["seed"].notna()
    above = seeds["final_train_loss"].astype(float) > ZERO_LOSS
    grows = _grows(seeds, histories)
    outcome = np.where(
        seeds["diverged_at"].notna(), "diverged", np.where(above | grows, "unstable", "stable")
    )
    return seeds.assign(outcome=pd.Series(outcome, index=seeds.index).where(ran, pd.NA))


def _grows(seeds: pd.DataFrame, histories: pd.DataFrame | None) -> pd.Series:
    """``growing`` of each row's (cell, seed) history (False without one)."""
    if histories is None or histories.empty:
        return pd.Series(False, index=seeds.index)
    ordered = histories.sort_values(["cell", "seed", "iteration"])
    grows = ordered.groupby(["cell", "seed"])["train_loss"].agg(growing).rename("growing")
    keys = pd.MultiIndex.from_frame(seeds[["cell", "seed"]])
    found = grows.reindex(keys).fillna(False).to_numpy(dtype=bool)
    return pd.Series(found, index=seeds.index)


def unbounded(seeds: pd.DataFrame, histories: pd.DataFrame) -> pd.Series:
    """Whether each seed's run diverged or its loss was ``growing`` at the end."""
    ran = (seeds["status"] == "ok") & seeds["seed"].notna()
    return (seeds["diverged_at"].notna() | _grows(seeds, histories)) & ran


# What a cell's seeds did, from the best to the worst: the states of the stability map.
CELL_STATES = (
    "stable",
    "unstable (some seeds)",
    "unstable (every seed)",
    "diverged (some seeds)",
    "diverged (every seed)",
)


def cell_state(n_seeds: int, n_diverged: int, n_unstable: int) -> str | None:
    """A cell's state (``CELL_STATES``) from its seed counts; None when no seed ran."""
    if n_seeds == 0:
        return None
    if n_diverged:
        return CELL_STATES[4 if n_diverged == n_seeds else 3]
    if n_unstable:
        return CELL_STATES[2 if n_unstable == n_seeds else 1]
    return CELL_STATES[0]
