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


# B = 3 takes the incremental scores, B = 10 the stacked products (make test only: seconds).
@pytest.mark.parametrize("batch_size", [3, pytest.param(10, marks=pytest.mark.slow)])
def test_evaluation_does_not_depend_on_the_number_of_threads(naive_case, monkeypatch, batch_size):
    """Samples are scored in one group per BLAS thread; the grouping must not matter.

    The number of groups is forced, one and three (uneven), whatever the machine's BLAS
    threads (two on two cores, as the other tests run); each must give the naive history.
    These runs meet margins the float32 bound cannot decide: the float64 re-scoring is
    covered too (incremental scores at B = 3, stacked products at B = 10).
    """
    rescored = []
    exact_correct = Evaluator._exact_correct

    def spy(self, Ws, steps, cols):
        rescored.append(len(cols))
        return exact_correct(self, Ws, steps, cols)

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


def brute_force(Ws, X, Y, Xt, Yt):
    """Train and test accuracy of every W in float64, one full product each (np.argmax)."""
    X64, Xt64 = X.astype(np.float64), Xt.astype(np.float64)
    y, yt = Y.argmax(0), Yt.argmax(0)
    W64 = Ws.astype(np.float64)
    train = np.array([np.mean(np.argmax(W @ X64, axis=0) == y) for W in W64])
    test = np.array([np.mean(np.argmax(W @ Xt64, axis=0) == yt) for W in W64])
    return train, test


def wandering_weights(rng, T, d, *, step, tied_every=0):
    """A random walk of weights (T, 10, d) float32, drifting like training; with
    ``tied_every``, every so many steps rows 0 and 1 are equal (exact ties, float64 decides)
    or differ by 1e-9 (near-ties the float32 bound cannot decide)."""
    drift = rng.normal(size=(10, d)) * step
    W = np.cumsum(drift[None] + rng.normal(size=(T, 10, d)) * step * 3, axis=0)
    if tied_every:
        W[::tied_every, 1] = W[::tied_every, 0]
        W[1::tied_every, 1] = W[1::tied_every, 0] + 1e-9 * rng.normal(size=d)
    return W.astype(np.float32)


# make test-fast takes each walk once, under 1 or 2 threads; make test all six.
@pytest.mark.parametrize(
    ("threads", "step", "tied_every"),
    [
        pytest.param(threads, step, tied_every, marks=[] if threads == fast else [pytest.mark.slow])
        for step, tied_every, fast in [(1e-3, 0, 1), (1e-4, 7, 2), (3e-2, 0, 2)]
        for threads in (1, 2)
    ],
)
def test_lazy_scores_equal_brute_force_float64(small_data, threads, step, tied_every):
    """Accuracies identical at every step to the float64 evaluation of the same weights,
    over more chunks and anchors than the stream keeps (re-anchoring is exercised), with
    exact and near ties, under 1 and 2 BLAS threads (one sample group per thread)."""
    (X, Y), (Xt, Yt) = small_data
    X, Y = X[:, :700], Y[:, :700]
    rng = np.random.default_rng(int(step * 1e5) + tied_every)
    T = 2 * evaluation.LAZY_ROWS + 5
    Ws = wandering_weights(rng, T, X.shape[0], step=step, tied_every=tied_every)
    with threadpool_limits(limits=threads, user_api="blas"):
        assert evaluation._blas_threads() == threads
        h = evaluate_trajectory(Ws, X, Y, Xt, Yt)
    train, test = brute_force(Ws, X, Y, Xt, Yt)
    np.testing.assert_array_equal(h.train_acc, train)
    np.testing.assert_array_equal(h.test_acc, test)
    np.testing.assert_allclose(h.train_loss, [direct_loss(W, X, Y) for W in Ws], rtol=1e-9)


@pytest.mark.slow  # about a second: make test, not make test-fast
def test_lazy_scores_skip_most_samples_and_rescore_near_ties(small_data, monkeypatch):
    """Slowly moving weights: after a first chunk of stacked products, most samples keep
    their verdict unscored, re-anchoring keeps at most MAX_ANCHORS anchors, and the
    near-ties go to the float64 rule."""
    (X, Y), (Xt, Yt) = small_data
    rng = np.random.default_rng(11)
    T = evaluation.FIRST_ROWS + 3 * evaluation.LAZY_ROWS
    # Class means (a fair classifier of this data, with clear margins), wandering slowly.
    W0 = (Y @ X.T) / Y.sum(axis=1, keepdims=True)
    Ws = (W0 + np.cumsum(rng.normal(size=(T, 10, X.shape[0])) * 1e-4, axis=0)).astype(np.float32)
    # Classes 0 and 1 within 1e-6 at every step: the float32 bound never decides them, their
    # float64 margins (~1e-5) are far above float64 rounding (~1e-13), so any product agrees.
    Ws[:, 1] = Ws[:, 0] + np.float32(1e-6) * rng.normal(size=X.shape[0]).astype(np.float32)
    scored, rescored = [], []
    lazy, exact = evaluation.lazy_margins, Evaluator._exact_correct

    def count(samples, state, chunk, base, out):
        scored.append((lazy(samples, state, chunk, base, out), len(chunk.W) * len(samples.rows)))
        return scored[-1][0]

    def spy(self, Ws, steps, cols):
        rescored.append(len(cols))
        return exact(self, Ws, steps, cols)

    monkeypatch.setattr(evaluation, "lazy_margins", count)
    monkeypatch.setattr(Evaluator, "_exact_correct", spy)
    evaluator = Evaluator(X, Y, Xt, Yt)
    with evaluator.stream() as stream:
        for t, W in enumerate(Ws):
            stream.add(t, W)
            assert len(stream.pending) < evaluation.LAZY_ROWS
            assert len(stream.anchor_rho2) <= evaluation.MAX_ANCHORS
        h = stream.frame()
    train, test = brute_force(Ws, X, Y, Xt, Yt)
    np.testing.assert_array_equal(h.train_acc, train)
    np.testing.assert_array_equal(h.test_acc, test)
    # The first (short) chunk is scored densely, the three others lazily, scoring few samples.
    scorings, possible = np.sum(scored, axis=0)
    assert len(scored) == 3 * len(stream.groups) and scorings < evaluation.DENSE_ABOVE * possible
    assert sum(rescored) > 0


@pytest.mark.integration
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch_size", [3, 100])
def test_runs_on_mnist_equal_the_naive_evaluation(mnist, threads, batch_size):
    """Real MNIST (a subset): the engine's histories are the naive float64 ones, under 1 and
    2 BLAS threads, on the incremental (B = 3) and the lazy (B = 100) scores."""
    from linmnist.engine.naive import naive_run
    from linmnist.engine.sgd import sample_batches

    (X, Y), (Xt, Yt) = mnist
    X, Y, Xt, Yt = X[:, :6000], Y[:, :6000], Xt[:, :2000], Yt[:, :2000]
    batches = sample_batches(X.shape[1], batch_size=batch_size, iterations=300, seed=2)
    naive, W = naive_run(X, Y, Xt, Yt, lr=0.003, batches=batches)
    with threadpool_limits(limits=threads, user_api="blas"):
        run = train(X, Y, lr=0.003, batch_size=batch_size, iterations=300, batches=batches,
                    X_test=Xt, Y_test=Yt)  # fmt: skip
    np.testing.assert_array_equal(run.W, W)
    np.testing.assert_array_equal(run.history.train_acc, naive.train_acc)
    np.testing.assert_array_equal(run.history.test_acc, naive.test_acc)
    np.testing.assert_allclose(run.history.train_loss, naive.train_loss, rtol=1e-9)
