"""Properties of the exact evaluation: loss, divergence test, arg-max semantics, threads."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from linmnist.engine.evaluation import DIVERGENCE_LOSS, Evaluator, evaluate_trajectory
from linmnist.engine.sgd import train


def direct_loss(W, X, Y):
    W, X, Y = (a.astype(np.float64) for a in (W, X, Y))
    return 0.5 * np.mean(np.sum((W @ X - Y) ** 2, axis=0))


def test_ties_follow_argmax_first_maximum(small_data):
    """At W = 0 every score ties, np.argmax picks class 0: accuracy = share of zeros."""
    (X, Y), (Xt, Yt) = small_data
    h = evaluate_trajectory(np.zeros((1, 10, X.shape[0])), X, Y, Xt, Yt)
    assert h.train_acc[0] == pytest.approx(np.mean(Y.argmax(0) == 0))
    assert h.test_acc[0] == pytest.approx(np.mean(Yt.argmax(0) == 0))
    assert h.train_loss[0] == pytest.approx(0.5)


def test_losses_equal_the_direct_computation(small_data):
    (X, Y), (Xt, Yt) = small_data
    rng = np.random.default_rng(0)
    scales = np.array([0, 1e-3, 0.1, 1, 10], dtype=np.float32)[:, None, None]
    Ws = rng.normal(size=(5, 10, X.shape[0])).astype(np.float32) * scales
    losses = Evaluator(X, Y, Xt, Yt).losses(Ws)
    np.testing.assert_allclose(losses, [direct_loss(W, X, Y) for W in Ws], rtol=1e-12)


def test_divergence_test_agrees_with_the_exact_loss(small_data):
    """The norm bound checked first only ever skips weights whose loss is below the limit."""
    (X, Y), _ = small_data
    evaluator = Evaluator(X, Y, None, None)
    rng = np.random.default_rng(1)
    direction = rng.normal(size=(10, X.shape[0])).astype(np.float32)
    direction /= np.sqrt(direct_loss(direction, X, np.zeros_like(Y)) * 2)  # ||W X||^2 / N = 1
    verdicts = []
    for scale in np.geomspace(1, 1e5, 200):
        W = (direction * scale).astype(np.float32)
        exact = direct_loss(W, X, Y)
        assert evaluator.diverged(W) == (exact > DIVERGENCE_LOSS)
        verdicts.append(exact > DIVERGENCE_LOSS)
    assert any(verdicts) and not all(verdicts)
    for bad in (np.inf, -np.inf, np.nan):
        W = direction.copy()
        W[3, 7] = bad
        assert evaluator.diverged(W)


def test_evaluation_does_not_depend_on_the_number_of_threads(small_data):
    """Samples are scored in one group per BLAS thread; the grouping must not matter."""
    (X, Y), (Xt, Yt) = small_data
    for batch_size in (1, 20):
        kwargs = dict(lr=0.004, batch_size=batch_size, iterations=80, X_test=Xt, Y_test=Yt)
        with threadpool_limits(limits=1, user_api="blas"):
            one = train(X, Y, **kwargs).history
        with threadpool_limits(limits=2, user_api="blas"):
            two = train(X, Y, **kwargs).history
        # The accuracies are exact; the float64 loss may round differently on more threads.
        assert one[["iteration", "train_acc", "test_acc"]].equals(
            two[["iteration", "train_acc", "test_acc"]]
        )
        np.testing.assert_allclose(one.train_loss, two.train_loss, rtol=1e-12)
