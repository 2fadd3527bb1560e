"""Steps to target: the stopping runs against the engine's SGD, the lr search and the fit."""

import numpy as np
import pytest

from linmnist.engine.noise_floor import floor_model, largest_stable_lr
from linmnist.engine.prediction import predicted_steps
from linmnist.engine.scaling import (
    DIRECT_FROM,
    fit_hyperbola,
    floor_ratio,
    lr_grid,
    predict_search,
    search_lr,
    steps_to_target,
    target_columns,
    target_data,
)
from linmnist.engine.sgd import sample_batches, train
from linmnist.engine.spectrum import spectrum
from linmnist.engine.validation import UsageError


@pytest.fixture(scope="module")
def case(synthetic):
    (X, Y), _ = synthetic(2000, d=100, seed=7)
    spec = spectrum(X, Y)
    return X, Y, spec, target_data(spec, X, Y)


@pytest.mark.parametrize("batch_size", [1, 16, DIRECT_FROM + 44])
def test_the_first_step_at_each_target_is_that_of_the_engine(case, batch_size):
    X, Y, spec, data = case
    lr, iterations = 0.1 * spec.lr_max, 200  # fewer than a chunk: the batches of one draw
    run = steps_to_target(
        data, lr=lr, batch_size=batch_size, targets=[0.2, 0.1], seed=3, max_steps=iterations
    )
    batches = sample_batches(2000, batch_size=batch_size, iterations=iterations, seed=3)
    history = train(
        X, Y, lr=lr, batch_size=batch_size, iterations=iterations, batches=batches,
        dtype=np.float64,
    )  # fmt: skip
    excess = history.history["train_loss"].to_numpy() - spec.loss_star
    for target, steps in zip([0.2, 0.1], run.steps, strict=True):
        crossed = np.flatnonzero(excess <= target)
        expected = None if crossed.size == 0 else int(crossed[0]) + 1
        assert steps is not None and expected is not None
        assert abs(steps - expected) <= 1  # float32 against float64 at the crossing
    assert run.status == "reached" and run.steps_run == run.steps[-1]


def test_runs_stop_when_they_diverge_stall_or_hit_the_cap(case):
    _, _, spec, data = case
    diverged = steps_to_target(data, lr=3 * spec.lr_max, batch_size=64, targets=[0.01])
    assert diverged.status == "diverged" and diverged.steps == (None,)
    # its noise floor (about 0.01 excess here) lies above the target
    stalled = steps_to_target(data, lr=0.1 * spec.lr_max, batch_size=1, targets=[0.003])
    assert stalled.status == "stalled" and stalled.steps_run < 10_000
    capped = steps_to_target(
        data, lr=0.01 * spec.lr_max, batch_size=64, targets=[1e-4], max_steps=50
    )
    assert capped.status == "capped" and capped.steps_run == 50


def test_the_targets_must_decrease(case):
    with pytest.raises(UsageError, match="targets must be distinct excess losses > 0, decreasing"):
        steps_to_target(case[3], lr=0.01, batch_size=1, targets=[0.01, 0.1])


def test_the_lr_grid_halves_every_per_octave_points():
    grid = lr_grid(0.05, top=0.9, per_octave=2, octaves=3)
    np.testing.assert_allclose(grid, 0.045 * 2.0 ** (-np.arange(7) / 2))


def test_the_search_stops_past_the_best_rate(case):
    _, _, spec, data = case
    lrs = lr_grid(spec.lr_max, top=0.99, per_octave=2, octaves=8)
    runs = search_lr(data, batch_size=8, lrs=lrs, seeds=[0, 1], targets=[0.1, 0.05], max_steps=5000)
    tried = runs["lr"].unique()
    np.testing.assert_array_equal(tried, lrs[: len(tried)])
    assert len(tried) < len(lrs)  # it stopped before the end of the grid
    median = runs.groupby("lr")["steps_1"].median()
    best = median.idxmin()
    assert best > tried.min()  # the last rate tried is past the best
    assert (runs["cap"] <= 5000).all() and set(runs["seed"]) == {0, 1}


@pytest.mark.parametrize("batch_size", [1, 8, 128])
def test_the_predicted_search_finds_the_best_rate_of_the_whole_grid(case, batch_size):
    """Searching down from the predicted edge and stopping past the best rate finds, for
    every target, the fewest steps that predicting every rate of the grid finds."""
    X, Y, spec, _ = case
    model = floor_model(spec, X, Y)
    lrs = lr_grid(spec.lr_max, top=0.99, per_octave=4, octaves=8)
    targets = [0.1, 0.03, 0.01, 0.005]  # best rates from the edge to 10 rates below it
    table = predict_search(spec, model, batch_size=batch_size, lrs=lrs, targets=targets,
                           max_steps=20_000)  # fmt: skip
    edge = min(largest_stable_lr(model, batch_size=batch_size), spec.lr_max)
    assert (table["lr"] < edge).all() and len(table) < (lrs < edge).sum()
    every = [
        predicted_steps(
            spec, model, lr=lr, batch_size=batch_size, targets=targets, max_steps=20_000
        )  # fmt: skip
        for lr in lrs[lrs < edge]
    ]
    exhaustive = np.array([[np.inf if s is None else s for s in row] for row in every]).min(0)
    assert np.isfinite(exhaustive).all()
    np.testing.assert_array_equal(table[target_columns(4)].min(), exhaustive)


def test_the_hyperbola_is_recovered_exactly():
    B = np.array([1, 2, 4, 8, 16, 64, 256, 1024])
    fit = fit_hyperbola(B, 30 + 900 / B)
    assert (fit.s_min, fit.e_min) == (pytest.approx(30), pytest.approx(900))
    assert fit.b_crit == pytest.approx(30)
    np.testing.assert_allclose(fit.steps([3]), [330])
    with_gaps = fit_hyperbola([1, 2, 4, 8], [930, np.nan, np.inf, 142.5])
    assert with_gaps.b_crit == pytest.approx(30)
    with pytest.raises(ValueError, match="two batch sizes"):
        fit_hyperbola([1, 2], [10, np.nan])


@pytest.mark.parametrize("batch_sizes", [[0, 2, 4], [1, 2], [1, np.nan, 4]])
def test_the_hyperbola_fit_refuses_batch_sizes_that_are_not_one_per_step(batch_sizes):
    with pytest.raises(ValueError, match="batch_sizes must be batch sizes >= 1"):
        fit_hyperbola(batch_sizes, [10.0, 6.0, 4.0])


def test_the_floor_ratio_is_the_best_share_of_the_target_for_the_noise():
    """B_crit / B_floor = min_f ln(R / (1 - f)) / (f ln R): checked against a brute-force
    minimum over the share f; it falls as the target shrinks (R grows)."""
    shares = np.linspace(1e-4, 1 - 1e-4, 200_001)
    for start, target in ((0.3, 0.1), (0.3, 0.02), (1.0, 0.001)):
        log_r = np.log(start / target)
        brute = np.min((log_r - np.log1p(-shares)) / (shares * log_r))
        assert floor_ratio(start, target) == pytest.approx(brute, rel=1e-6)
    ratios = [floor_ratio(0.3, t) for t in (0.2, 0.1, 0.05, 0.01)]
    assert ratios == sorted(ratios, reverse=True) and 1 < ratios[-1] < ratios[0] < 6
    with pytest.raises(ValueError, match="target"):
        floor_ratio(0.3, 0.5)
