"""The predicted learning curves: against many seeds, gradient descent and the final excess;
the predicted instability edge against the fixed point's existence."""

import math

import numpy as np
import pytest

from linmnist.engine.evaluation import evaluate_trajectory
from linmnist.engine.noise_floor import (
    excess_after,
    floor_model,
    largest_stable_lr,
    noise_covariance,
    sigma_trajectory,
    stationary_excess,
)
from linmnist.engine.prediction import (
    CURVE_CHECKPOINTS,
    HORIZON_FACTOR,
    expected_excess,
    expected_losses,
    held_out,
    predicted_horizon,
    predicted_steps,
)
from linmnist.engine.sgd import train
from linmnist.engine.spectrum import gd_excess, gd_steps_to, gd_weights, spectrum


@pytest.fixture(scope="module")
def case(synthetic):
    (X, Y), (Xt, Yt) = synthetic(800, 300, d=60, seed=5)
    spec = spectrum(X, Y)
    return spec, floor_model(spec, X, Y), held_out(Xt, Yt), (X, Y, Xt, Yt)


def _seed_means(data, *, lr, batch_size, iterations, seeds):
    X, Y, _, _ = data
    runs = [
        train(X, Y, lr=lr, batch_size=batch_size, iterations=iterations, seed=s).history
        for s in range(seeds)
    ]
    losses = np.array([run["train_loss"].to_numpy() for run in runs])
    half = 1.98 * losses.std(axis=0, ddof=1) / np.sqrt(seeds)  # t_0.975 at ~100 dof
    return losses.mean(axis=0), half


@pytest.mark.slow
@pytest.mark.parametrize(("fraction", "batch_size"), [(0.3, 1), (0.6, 4), (0.9, 32)])
def test_the_curve_agrees_with_the_mean_of_many_seeds(case, fraction, batch_size):
    spec, model, _, data = case
    lr = fraction * largest_stable_lr(model, batch_size=batch_size)
    mean, half = _seed_means(data, lr=lr, batch_size=batch_size, iterations=150, seeds=150)
    curve = expected_losses(spec, model, lr=lr, batch_size=batch_size, iterations=range(150))
    predicted = curve["train_loss"].to_numpy()
    # The seeds' means are correlated along the iterations, so the share inside the CI
    # varies a lot from one set of seeds to the next; the noise part is the sharper test.
    assert np.mean(np.abs(predicted - mean) <= half) >= 0.75
    assert abs(np.mean((predicted - mean) / half)) < 1
    gd = spec.loss_star + gd_excess(spec, lr, np.arange(1, 151))
    assert np.sum(predicted - gd) / np.sum(mean - gd) == pytest.approx(1, abs=0.1)


def test_a_huge_batch_follows_gradient_descent_on_both_sets(case):
    spec, model, test, (X, Y, Xt, Yt) = case
    lr, its = 0.5 * spec.lr_max, np.array([0, 3, 40, 199])
    curve = expected_losses(spec, model, lr=lr, batch_size=10**12, iterations=its, test=test)
    exact = spec.loss_star + gd_excess(spec, lr, its + 1)
    np.testing.assert_allclose(curve["train_loss"], exact, rtol=1e-9)
    Ws = np.array([gd_weights(spec, lr, int(t) + 1) for t in its])
    measured = evaluate_trajectory(Ws, X, Y)  # only the loss is read: no test set needed
    np.testing.assert_allclose(curve["train_loss"], measured["train_loss"], rtol=1e-5)
    test_loss = [0.5 * np.mean(np.sum((W @ Xt - Yt) ** 2, axis=0)) for W in Ws]
    np.testing.assert_allclose(curve["test_loss"], test_loss, rtol=1e-6)


def test_pixels_zero_in_every_training_image_are_left_out_of_the_test_loss(synthetic):
    """The test moments are taken to S's eigenbasis on the pixels some eigenvector uses: the
    others (zero in training, not in the test set) have no weight, and the test loss of
    gradient descent is still the measured one; the moments are those of the test set."""
    (X, Y), (Xt, Yt) = synthetic(400, 200, d=30, seed=7)
    X = X.copy()
    X[[3, 11, 20]] = 0
    assert np.all(np.any(Xt[[3, 11, 20]], axis=1))
    spec = spectrum(X, Y)
    test = held_out(Xt, Yt)
    Xt64 = Xt.astype(np.float64)
    np.testing.assert_allclose(test.S, Xt64 @ Xt64.T / 200, rtol=1e-12)
    np.testing.assert_allclose(test.C, Yt @ Xt64.T / 200, rtol=1e-12, atol=1e-15)
    lr, its = 0.5 * spec.lr_max, np.array([0, 9, 99])
    curve = expected_losses(spec, floor_model(spec, X, Y), lr=lr, batch_size=10**12,
                            iterations=its, test=test)  # fmt: skip
    Ws = [gd_weights(spec, lr, int(t) + 1) for t in its]
    test_loss = [0.5 * np.mean(np.sum((W @ Xt64 - Yt) ** 2, axis=0)) for W in Ws]
    np.testing.assert_allclose(curve["test_loss"], test_loss, rtol=1e-9)


def test_the_last_point_is_the_final_excess_over_gradient_descent(case):
    spec, model, _, _ = case
    lr, its = 0.2 * spec.lr_max, 300
    curve = expected_losses(spec, model, lr=lr, batch_size=3, iterations=[its - 1])
    sigma = sigma_trajectory(model, lr=lr, iterations=its, checkpoints=CURVE_CHECKPOINTS)
    noise = excess_after(model, lr=lr, batch_size=3, iterations=its, sigma=sigma)
    gd = spec.loss_star + gd_excess(spec, lr, its)
    assert curve["train_loss"].iloc[0] - gd == pytest.approx(noise, rel=1e-9)
    assert noise > 0


def test_the_edge_is_where_the_fixed_point_stops_existing(case):
    spec, model, _, _ = case
    for batch_size in (1, 8, 10**9):
        edge = largest_stable_lr(model, batch_size=batch_size)
        assert edge <= spec.lr_max * (1 + 1e-9)
        assert math.isfinite(stationary_excess(model, lr=0.99 * edge, batch_size=batch_size))
        assert math.isinf(stationary_excess(model, lr=1.01 * edge, batch_size=batch_size))
    assert largest_stable_lr(model, batch_size=10**9) == pytest.approx(spec.lr_max, rel=1e-6)
    assert largest_stable_lr(model, batch_size=1) < largest_stable_lr(model, batch_size=8)


def test_above_the_edge_the_curve_grows_without_bound(case):
    spec, model, _, _ = case
    lr = 1.2 * largest_stable_lr(model, batch_size=1)
    curve = expected_losses(spec, model, lr=lr, batch_size=1, iterations=[10, 100, 5000])
    loss = curve["train_loss"].to_numpy()
    assert loss[1] > loss[0] and loss[2] > 1e3 * loss[1]


def test_bad_iterations_are_refused(case):
    spec, model, _, _ = case
    with pytest.raises(ValueError, match="iterations must be ascending"):
        expected_losses(spec, model, lr=0.01, batch_size=1, iterations=[5, 3])
    with pytest.raises(ValueError, match="lr must be"):
        expected_losses(spec, model, lr=-1.0, batch_size=1, iterations=[1])


@pytest.mark.integration
@pytest.mark.parametrize(("lr", "batch_size"), [(0.015, 1), (0.01, 100)])
def test_on_mnist_the_curve_agrees_with_the_seeds_even_near_the_edge(mnist, lr, batch_size):
    """lr 0.015 at batch 1 is 0.75 of the predicted edge there (0.020), where the loss of a
    seed is heavy-tailed: inside the CI of 12 seeds at most iterations, within 25 %."""
    (X, Y), _ = mnist
    spec = spectrum(X, Y)
    model = floor_model(spec, X, Y)
    its = np.r_[np.arange(0, 500, 50), 499]
    runs = [train(X, Y, lr=lr, batch_size=batch_size, iterations=500, seed=s, eval_every=50)
            for s in range(12)]  # fmt: skip
    losses = np.array([r.history.set_index("iteration").loc[its, "train_loss"] for r in runs])
    mean = losses.mean(axis=0)
    half = 2.201 * losses.std(axis=0, ddof=1) / np.sqrt(12)  # t(0.975, 11)
    curve = expected_losses(spec, model, lr=lr, batch_size=batch_size, iterations=its)
    predicted = curve["train_loss"].to_numpy()
    assert np.mean(np.abs(predicted - mean) <= half) >= 0.75
    assert np.max(np.abs(predicted - mean) / mean) < 0.25


@pytest.mark.parametrize("batch_size", [1, 4, 32])
@pytest.mark.parametrize("fraction", [0.7, 1.2])
def test_the_eigenbasis_solution_is_the_recursion_step_by_step(case, batch_size, fraction):
    """expected_excess solves noise_covariance's recursion in its matrix's eigenbasis: the
    same excess at every step, below the edge and above it (where both grow)."""
    spec, model, _, _ = case
    lr = min(fraction * largest_stable_lr(model, batch_size=batch_size), 0.99 * spec.lr_max)
    steps = np.arange(1, 301)
    sigma = sigma_trajectory(model, lr=lr, iterations=300)
    excess = expected_excess(spec, model, lr=lr, batch_size=batch_size, iterations=300,
                             sigma=sigma)  # fmt: skip
    c = noise_covariance(model, lr=lr, batch_size=batch_size, steps=steps, sigma=sigma)
    recursion = gd_excess(spec, lr, steps) + 0.5 * np.einsum("tkb,k->t", c, model.lam)
    np.testing.assert_allclose(excess, recursion, rtol=1e-9)


def test_a_huge_batch_reaches_each_target_when_gradient_descent_does(case):
    spec, model, _, _ = case
    lr, targets = 0.5 * spec.lr_max, [0.2, 0.1, 0.05]
    steps = predicted_steps(spec, model, lr=lr, batch_size=10**12, targets=targets,
                            max_steps=10**5)  # fmt: skip
    assert steps == tuple(gd_steps_to(spec, lr, t) for t in targets)


def test_the_predicted_steps_are_the_first_within_each_target(case):
    """At B = 1 the expected excess lies above gradient descent's, so each target comes
    later; the steps are the first at which the curve over the horizon is within it, and a
    target under the noise floor is never reached."""
    spec, model, _, _ = case
    lr = 0.3 * largest_stable_lr(model, batch_size=1)
    floor = stationary_excess(model, lr=lr, batch_size=1)
    targets = [0.2, 0.1, 0.5 * floor]
    steps = predicted_steps(spec, model, lr=lr, batch_size=1, targets=targets, max_steps=10**5)
    horizon = predicted_horizon(spec, lr=lr, target=targets[-1], max_steps=10**5)
    assert horizon == HORIZON_FACTOR * gd_steps_to(spec, lr, targets[-1])
    curve = expected_excess(spec, model, lr=lr, batch_size=1, iterations=horizon)
    for target, step in zip(targets[:2], steps, strict=False):
        assert step is not None and step > gd_steps_to(spec, lr, target)
        assert curve[step - 1] <= target < curve[: step - 1].min()
    assert steps[2] is None and curve.min() > targets[2]
