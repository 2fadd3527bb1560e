"""Properties of the exact evaluation: loss, divergence test, arg-max semantics, threads."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from linmnist.engine import evaluation
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
    X, Y = X[:, :500], Y[:, :500]
    evaluator = Evaluator(X, Y, None, None)
    rng = np.random.default_rng(1)
    direction = rng.normal(size=(10, X.shape[0])).astype(np.float32)
    direction /= np.sqrt(direct_loss(direction, X, np.zeros_like(Y)) * 2)  # ||W X||^2 / N = 1
    verdicts = []
    # Small products, one BLAS thread (as in training; threads would wait on a busy machine).
    with threadpool_limits(limits=1, user_api="blas"):
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


@pytest.mark.parametrize("batch_size", [3, 10])
def test_evaluation_does_not_depend_on_the_number_of_threads(naive_case, monkeypatch, batch_size):
    """Samples are scored in one group per BLAS thread; the grouping must not matter.

    The number of groups is forced, one and three (uneven), whatever the machine's BLAS
    threads (two on two cores, as the other tests run); each must give the naive history.
    These runs meet margins the float32 bound cannot decide: the float64 re-scoring is
    covered too (incremental scores at B = 3, stacked products at B = 10).
    """
    rescored = []
    exact_correct = Evaluator._exact_correct

    def spy(self, W64, cols):
        rescored.append(len(cols))
        return exact_correct(self, W64, cols)

    monkeypatch.setattr(Evaluator, "_exact_correct", spy)
    case = naive_case(np.float32, batch_size)
    for threads in (1, 3):
        monkeypatch.setattr(evaluation, "_blas_threads", lambda threads=threads: threads)
        rescored.clear()
        history = train(case.X, case.Y, **case.run_kwargs()).history
        assert sum(rescored) > 0
        np.testing.assert_array_equal(history.train_acc, case.history.train_acc)
        np.testing.assert_array_equal(history.test_acc, case.history.test_acc)
        np.testing.assert_allclose(history.train_loss, case.history.train_loss, rtol=1e-9)


def test_the_sample_groups_follow_the_blas_threads():
    with threadpool_limits(limits=1, user_api="blas"):
        assert evaluation._blas_threads() == 1
