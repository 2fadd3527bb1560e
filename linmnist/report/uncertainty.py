"""The report's one uncertainty convention: a mean over seeds (independent repetitions) ± the
half-width of its 95 % confidence interval, ``t(0.975, n - 1) * sd / sqrt(n)`` (Student's t,
``n`` seeds; NaN for one seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pandas.core.groupby import SeriesGroupBy

# Student's t 97.5 % quantile by degrees of freedom (1-30); beyond, interpolated in 1/df
# towards the normal quantile 1.95996 (exact to three decimals).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z975 = 1.959964


def t975(n_seeds: int) -> float:
    """Student's t 97.5 % quantile with ``n_seeds - 1`` degrees of freedom (NaN below 2)."""
    df = int(n_seeds) - 1
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    # t(df) - z is close to proportional to 1/df for large df.
    return _Z975 + (_T975[-1] - _Z975) * len(_T975) / df


def ci95(values: Sequence[float] | np.ndarray) -> float:
    """Half-width of the 95 % confidence interval of the mean of ``values`` (NaN for < 2)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return math.nan
    return t975(n) * float(values.std(ddof=1)) / math.sqrt(n)


def group_ci95(grouped: SeriesGroupBy) -> pd.Series:
    """``grouped.agg(ci95)``, value for value, without pandas' Python call per group."""
    values = grouped.obj.to_numpy(dtype=float)
    positions = grouped.indices
    index = grouped.size().index
    halves = [ci95(values[positions[key]]) for key in index]
    return pd.Series(halves, index=index, name=grouped.obj.name, dtype=float)
