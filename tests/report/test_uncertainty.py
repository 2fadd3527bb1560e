import math

import numpy as np
import pandas as pd
import pytest

from linmnist.report.uncertainty import ci95, group_ci95, t975


@pytest.mark.parametrize(
    ("n_seeds", "quantile"),
    [(2, 12.706), (3, 4.303), (5, 2.776), (20, 2.093), (41, 2.021), (61, 2.000), (121, 1.980)],
)
def test_t975_matches_students_table(n_seeds, quantile):
    assert t975(n_seeds) == pytest.approx(quantile, abs=1.5e-3)


def test_t975_decreases_towards_the_normal_quantile():
    values = [t975(n) for n in range(2, 500)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] > 1.96 and t975(10**6) == pytest.approx(1.96, abs=1e-3)


def test_ci95_is_t_times_the_standard_error_and_undefined_for_one_seed():
    values = np.array([1.0, 2.0, 4.0, 7.0])
    expected = 3.182 * values.std(ddof=1) / 2
    assert ci95(values) == pytest.approx(expected)
    assert math.isnan(ci95([3.0])) and math.isnan(ci95([])) and math.isnan(t975(1))


def test_ci95_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(4000, 5))
    covered = np.abs(samples.mean(axis=1)) <= [ci95(s) for s in samples]
    assert 0.94 < covered.mean() < 0.96


@pytest.mark.parametrize("keys", [["cell", "iteration"], "iteration", ["cell"]])
def test_group_ci95_equals_pandas_aggregating_ci95(keys):
    """group_ci95 is grouped.agg(ci95) to the last bit: groups in pandas' order, values in the
    frame's order (unsorted rows), NaN values and one-value groups included."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "cell": rng.choice(["b", "a", "c"], 400),
            "iteration": rng.integers(0, 60, 400),
            "loss": rng.lognormal(size=400),
        }
    )
    frame.loc[frame.index[frame["cell"] == "c"][::3], "loss"] = np.nan
    frame.loc[len(frame)] = ["d", 99, 1.0]  # a group of one value: no interval
    grouped = frame.groupby(keys)["loss"]
    expected = grouped.agg(ci95)
    assert expected.isna().any() and expected.notna().any()
    pd.testing.assert_series_equal(group_ci95(grouped), expected, check_exact=True)
