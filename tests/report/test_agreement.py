"""Predicted against measured curves: the share inside the seeds' CI and the largest error."""

import numpy as np
import pandas as pd
import pytest

from linmnist.report.agreement import (
    AGREES_FROM,
    agreement,
    exact_pass_rate,
    expected_agreeing,
    format_agreement,
    seed_means,
    share_agreeing,
    with_settings,
    within_chance,
)
from linmnist.report.uncertainty import ci95


def _histories(rng, cells=("a", "b"), seeds=5, iterations=20):
    rows = []
    for cell in cells:
        for seed in range(seeds):
            every = 1 if seed == 0 else 5  # a fidelity seed evaluated at every iteration
            for it in range(0, iterations, every):
                rows.append([cell, seed, it, 1.0 / (it + 1) + 0.01 * rng.standard_normal()])
    return pd.DataFrame(rows, columns=["cell", "seed", "iteration", "train_loss"])


def _runs(cells=("a", "b"), seeds=5, diverged=()):
    return pd.DataFrame(
        [
            [cell, seed, 0.1, 10, 3 if (cell, seed) in diverged else np.nan]
            for cell in cells
            for seed in range(seeds)
        ],
        columns=["cell", "seed", "lr", "batch_size", "diverged_at"],
    )


def test_the_means_are_taken_only_where_every_seed_was_evaluated():
    histories = _histories(np.random.default_rng(0))
    means = seed_means(histories)
    assert set(means["iteration"]) == {0, 5, 10, 15}
    one = histories[(histories["cell"] == "a") & (histories["iteration"] == 5)]["train_loss"]
    row = means[(means["cell"] == "a") & (means["iteration"] == 5)].iloc[0]
    assert row["mean"] == pytest.approx(one.mean()) and row["ci"] == pytest.approx(ci95(one))


def test_an_exact_prediction_agrees_and_a_biased_one_does_not():
    histories = _histories(np.random.default_rng(1))
    truth = pd.DataFrame(
        [[c, it, 1.0 / (it + 1)] for c in "ab" for it in range(20)],
        columns=["cell", "iteration", "train_loss"],
    )
    biased = truth.assign(train_loss=np.where(truth["cell"] == "b", 1.5, 1.0) * truth["train_loss"])
    good = agreement(histories, truth, _runs())
    assert (good["points"] == 4).all() and (good["seeds"] == 5).all()
    assert good["inside"].min() >= 0.75 and share_agreeing(good) >= 0.5
    bad = agreement(histories, biased, _runs()).set_index("cell")
    assert bad.loc["b", "inside"] == 0 and bad.loc["b", "max_rel_error"] > 0.3
    assert bad.loc["a", "max_rel_error"] < 0.2


def test_a_cell_with_a_diverged_seed_is_left_out():
    histories = _histories(np.random.default_rng(2))
    curves = histories.groupby(["cell", "iteration"], as_index=False)["train_loss"].mean()
    table = agreement(histories, curves, _runs(diverged={("a", 3)}))
    assert table["cell"].tolist() == ["b"]
    assert np.isnan(share_agreeing(table.iloc[:0]))


def test_the_display_names_each_cell_by_its_settings():
    histories = _histories(np.random.default_rng(3))
    curves = with_settings(
        histories.groupby(["cell", "iteration"], as_index=False)["train_loss"].mean(),
        _runs(),
        ["lr", "batch_size"],
    )
    assert {"lr", "batch_size"} <= set(curves.columns)
    html = format_agreement(
        agreement(histories, curves, _runs()), _runs(), {"lr": "lr", "batch_size": "B"}
    ).to_html()
    assert "prediction inside the 95 % CI" in html and ">B<" in html


def test_an_exact_prediction_passes_the_agreement_test_at_the_binomial_rate():
    """At 11 evaluations, 10 or more inside a 95 % CI: 0.95^11 + 11 * 0.05 * 0.95^10; the
    rate matches a simulation of exact predictions, and the expected count sums the rows."""
    assert exact_pass_rate(11) == pytest.approx(0.95**11 + 11 * 0.05 * 0.95**10)
    assert exact_pass_rate(1) == pytest.approx(0.95)
    assert exact_pass_rate(21) == pytest.approx(  # 19 of 21 needed
        0.95**21 + 21 * 0.05 * 0.95**20 + 210 * 0.05**2 * 0.95**19
    )
    inside = np.random.default_rng(0).random((200_000, 11)) < 0.95
    simulated = np.mean(inside.mean(axis=1) >= AGREES_FROM)
    assert simulated == pytest.approx(exact_pass_rate(11), abs=0.005)
    table = pd.DataFrame({"points": [11, 11, 1]})
    mean, sd = expected_agreeing(table)
    p = exact_pass_rate(11)
    assert mean == pytest.approx(2 * p + 0.95)
    assert sd == pytest.approx(np.sqrt(2 * p * (1 - p) + 0.95 * 0.05))


def test_misses_within_chance_are_told_from_too_many():
    """Ten configurations of 11 evaluations: an exact prediction passes about 9.0 +- 0.96,
    so 8 agreeing is within two deviations of chance and 6 is not."""
    inside = [1.0] * 8 + [0.8] * 2
    assert within_chance(pd.DataFrame({"points": 11, "inside": inside}))
    assert not within_chance(pd.DataFrame({"points": 11, "inside": [1.0] * 6 + [0.8] * 4}))
