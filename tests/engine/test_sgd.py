"""Properties of the SGD engine and its fast exact evaluation."""

import warnings

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from linmnist.engine import sgd
from linmnist.engine.evaluation import Evaluator
from linmnist.engine.sgd import (
    DIVERGENCE_LOSS,
    HISTORY_COLUMNS,
    draw_subset,
    sample_batches,
    sgd_step,
    train,
)
from linmnist.engine.update import sgd_update
from linmnist.engine.validation import UsageError


def batch_loss(W, X, Y):
    return 0.5 * np.mean(np.sum((W @ X - Y) ** 2, axis=0))


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    X, Y = rng.random((20, 7)), np.eye(10)[:, rng.integers(0, 10, 7)]
    W = rng.normal(size=(10, 20))
    lr = 1.0
    W_next, _ = sgd_step(W, X, Y, lr)
    G = (W - W_next) / lr
    h = 1e-6
    numeric = np.zeros_like(W)
    for i, j in np.ndindex(*W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[i, j] += h
        Wm[i, j] -= h
        numeric[i, j] = (batch_loss(Wp, X, Y) - batch_loss(Wm, X, Y)) / (2 * h)
    np.testing.assert_allclose(G, numeric, rtol=1e-6, atol=1e-8)


def test_full_batch_sgd_is_gradient_descent(small_data):
    (X, Y), _ = small_data
    X, Y = X[:, :300].astype(np.float64), Y[:, :300].astype(np.float64)
    n, lr, its = X.shape[1], 0.01, 25
    batches = np.tile(np.arange(n), (its, 1))
    res = train(X, Y, lr=lr, batch_size=n, iterations=its, batches=batches, dtype=np.float64)
    W = np.zeros((10, X.shape[0]))
    S, C = X @ X.T / n, Y @ X.T / n
    for _ in range(its):
        W = W - lr * (W @ S - C)
    np.testing.assert_allclose(res.W, W, rtol=1e-10, atol=1e-12)


def test_replaying_batches_reproduces_the_run_exactly(small_data, small_evaluators):
    (X, Y), (Xt, Yt) = small_data
    run = dict(lr=0.005, batch_size=10, iterations=50, X_test=Xt, Y_test=Yt,
               evaluator=small_evaluators[True])  # fmt: skip
    a = train(X, Y, seed=3, **run)
    batches = sample_batches(X.shape[1], batch_size=10, iterations=50, seed=3)
    b = train(X, Y, batches=batches, **run)
    np.testing.assert_array_equal(a.W, b.W)
    assert a.history.equals(b.history)
    c = train(X, Y, seed=4, **run)
    assert not np.array_equal(a.W, c.W)


# (dtype, batch size): B < INCREMENTAL_BELOW takes the incremental scores, B >= it the
# stacked float32 products. The fast selection keeps both paths in float32 and the stacked
# products in float64 (make test runs every case).
NAIVE_CASES = [
    pytest.param(dtype, batch_size, marks=[] if fast else [pytest.mark.slow])
    for dtype, batch_size, fast in [
        (np.float32, 1, False),
        (np.float32, 3, True),
        (np.float32, 8, False),
        (np.float32, 10, True),
        (np.float32, 64, False),
        (np.float64, 1, False),
        (np.float64, 3, False),
        (np.float64, 8, False),
        (np.float64, 10, False),
        (np.float64, 64, True),
    ]
]


@pytest.mark.parametrize(("dtype", "batch_size"), NAIVE_CASES)
def test_fast_evaluation_equals_the_naive_one(naive_case, dtype, batch_size):
    """Both paths (incremental for B < INCREMENTAL_BELOW, certified float32 products else)."""
    case = naive_case(dtype, batch_size)
    fast = train(case.X, case.Y, **case.run_kwargs()).history
    np.testing.assert_array_equal(fast.iteration, case.history.iteration)
    np.testing.assert_array_equal(fast.train_acc, case.history.train_acc)
    np.testing.assert_array_equal(fast.test_acc, case.history.test_acc)
    np.testing.assert_allclose(fast.train_loss, case.history.train_loss, rtol=1e-9)


def test_divergence_is_detected_without_warnings(small_data, small_evaluators):
    (X, Y), (Xt, Yt) = small_data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = train(X, Y, lr=0.1, batch_size=100, iterations=200, X_test=Xt, Y_test=Yt,
                    evaluator=small_evaluators[True])  # fmt: skip
    assert res.diverged_at is not None and res.diverged_at < 200
    assert len(res.history) == res.diverged_at
    assert np.all(np.isfinite(res.history.to_numpy()))
    assert res.history.train_loss.max() <= DIVERGENCE_LOSS
    assert np.all(np.isfinite(res.W))


@pytest.mark.parametrize("lr", [0.05, 0.1, 0.3])
def test_divergence_stops_at_the_first_iteration_whose_loss_exceeds_the_limit(
    small_data, small_evaluators, lr
):
    """The cheap norm bound checked first never delays the exact loss test."""
    (X, Y), _ = small_data
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    batches = sample_batches(X.shape[1], batch_size=50, iterations=300, seed=2)
    res = train(X, Y, lr=lr, batch_size=50, iterations=300, batches=batches,
                evaluator=small_evaluators[False])  # fmt: skip
    W = np.zeros((10, X.shape[0]), dtype=np.float32)
    XT, G = np.ascontiguousarray(X.T), np.empty_like(W)
    expected = None
    with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"):
        for t, idx in enumerate(batches):
            W, _ = sgd_update(W, XT, Y.T, idx, lr, G)  # train's own update
            loss = batch_loss(W.astype(np.float64), X64, Y64)
            if not (np.isfinite(loss) and loss <= DIVERGENCE_LOSS):
                expected = t
                break
    assert expected is not None
    assert res.diverged_at == expected


def test_stable_run_has_a_full_history(small_data, small_evaluators):
    (X, Y), _ = small_data
    res = train(X, Y, lr=0.001, batch_size=100, iterations=30, eval_every=7,
                evaluator=small_evaluators[False])  # fmt: skip
    assert res.diverged_at is None
    assert list(res.history.columns) == HISTORY_COLUMNS
    assert res.history.iteration.tolist() == [0, 7, 14, 21, 28, 29]
    assert res.history.test_acc.isna().all()
    assert res.history.train_loss.iloc[-1] < 0.5


@pytest.mark.parametrize(("lr", "eval_every"), [(0.001, 7), (0.1, 5)])
def test_accuracy_at_the_last_point_only_keeps_every_loss_and_the_last_row(
    small_data, small_evaluators, lr, eval_every
):
    """accuracy="final": the same iterations and losses as "every", the same last row (the
    last point recorded, also when the run diverged), NaN accuracies before it."""
    (X, Y), (Xt, Yt) = small_data
    run = dict(lr=lr, batch_size=100, iterations=60, eval_every=eval_every, X_test=Xt, Y_test=Yt,
               evaluator=small_evaluators[True])  # fmt: skip
    every = train(X, Y, **run).history
    final = train(X, Y, **run, accuracy="final").history
    pd.testing.assert_series_equal(final["iteration"], every["iteration"])
    np.testing.assert_allclose(final["train_loss"], every["train_loss"], rtol=1e-12)
    pd.testing.assert_series_equal(final.iloc[-1], every.iloc[-1])
    assert final[["train_acc", "test_acc"]].iloc[:-1].isna().all().all()


def test_bias_is_learned_and_matches_an_appended_constant_feature(small_data):
    (X, Y), (Xt, Yt) = small_data
    batches = sample_batches(X.shape[1], batch_size=20, iterations=40, seed=0)
    a = train(X, Y, lr=0.002, batch_size=20, iterations=40, batches=batches, bias=True)
    X1 = np.vstack([X, np.ones((1, X.shape[1]), np.float32)])
    b = train(X1, Y, lr=0.002, batch_size=20, iterations=40, batches=batches)
    np.testing.assert_array_equal(a.W, b.W[:, :-1])
    np.testing.assert_array_equal(a.b, b.W[:, -1])
    assert a.history.equals(b.history)


def test_draw_subset_is_without_replacement_and_seeded():
    idx = draw_subset(1000, 500, seed=2)
    assert len(np.unique(idx)) == 500 and idx.min() >= 0 and idx.max() < 1000
    np.testing.assert_array_equal(idx, draw_subset(1000, 500, seed=2))
    assert sorted(draw_subset(10, 10)) == list(range(10))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, r"^lr must be a finite number > 0, got 0\.0$"),
        ({"lr": -1.0}, r"^lr must be a finite number > 0, got -1\.0$"),
        ({"lr": float("nan")}, r"^lr must be a finite number > 0, got nan$"),
        ({"lr": float("inf")}, r"^lr must be a finite number > 0, got inf$"),
        ({"lr": "0.1"}, r"^lr must be a finite number > 0, got '0\.1' \(str\)$"),
        ({"lr": True}, r"^lr must be a finite number > 0, got True \(bool\)$"),
        ({"batch_size": 0}, r"^batch_size must be an integer >= 1, got 0$"),
        ({"batch_size": 2.5}, r"^batch_size must be an integer >= 1, got 2\.5$"),
        ({"batch_size": np.int64(0)}, r"^batch_size must be an integer >= 1, got 0$"),
        ({"iterations": 0}, r"^iterations must be an integer >= 1, got 0$"),
        ({"iterations": True}, r"^iterations must be an integer >= 1, got True \(bool\)$"),
        # Refused before anything is allocated (a (10^12, B) batch array would be terabytes).
        ({"iterations": 10**12}, r"^iterations must be an integer in \[1, 100000000\], got 10"),
        # A batch beyond memory is refused, saying what it would need, before any allocation.
        (
            {"batch_size": 10**9},
            r"^batch_size must be an integer in \[1, 65536\], got 1000000000: a batch of "
            r"1000000000 samples needs 11,328.0 GB \(784 x 1000000000 samples of 4 bytes",
        ),
        (
            {"batch_size": 10**7, "dtype": np.float64},
            r"needs 144.6 GB \(784 x 10000000 samples of 8 bytes",
        ),
        ({"eval_every": 0}, r"^eval_every must be an integer >= 1, got 0$"),
        ({"seed": -1}, r"^seed must be an integer >= 0, got -1$"),
        ({"dtype": np.int32}, r"^dtype must be np\.float32 or np\.float64, got int32$"),
        ({"dtype": None}, r"^dtype must be np\.float32 or np\.float64, got None"),
        ({"batches": np.zeros((3, 3), int)}, "batches must be an integer array of shape"),
        (
            {"batches": np.full((5, 10), 10_000)},
            r"batches must hold sample indices in \[0, 1999\], got indices in \[10000, 10000\]",
        ),
        ({"bias": "yes"}, r"^bias must be True or False, got 'yes' \(str\)$"),
        ({"bias": 1}, r"^bias must be True or False, got 1 \(int\)$"),
        ({"accuracy": "some"}, r"^accuracy must be one of every, final; got 'some'$"),
    ],
)
def test_invalid_parameters_are_refused(small_data, kwargs, message):
    (X, Y), _ = small_data
    args = {"lr": 0.01, "batch_size": 10, "iterations": 5} | kwargs
    with pytest.raises(UsageError, match=message):
        train(X, Y, **args)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda X, Y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), Y),
            "X must hold finite numbers, got NaN or infinity",
        ),
        (lambda X, Y: (np.where(X > 0, np.inf, X), Y), "X must hold finite numbers"),
        (lambda X, Y: (X, np.full_like(Y, 0.5)), "Y must be one-hot"),
        (lambda X, Y: (X, 7 * Y), "Y must be one-hot"),
        (lambda X, Y: (X.astype(np.complex64), Y), "X must hold real numbers, got dtype complex64"),
        (lambda X, Y: (X[:0], Y), "X must hold at least one feature and one sample"),
    ],
)
def test_data_that_would_give_wrong_numbers_is_refused(small_data, change, message):
    """NaN, infinity, labels that are not one-hot, complex or empty data: refused by name."""
    (X, Y), _ = small_data
    X, Y = change(X, Y)
    with np.errstate(invalid="ignore"), pytest.raises(UsageError, match=message):
        train(X, Y, lr=0.01, batch_size=10, iterations=2)


def test_invalid_data_is_refused(small_data):
    (X, Y), (Xt, Yt) = small_data
    with pytest.raises(ValueError, match="Y must be"):
        train(X, Y[:, :10], lr=0.1, batch_size=1, iterations=1)
    with pytest.raises(ValueError, match="X_test must have 784 rows"):
        train(X, Y, lr=0.1, batch_size=1, iterations=1, X_test=Xt[:10], Y_test=Yt)
    with pytest.raises(UsageError, match="X_test and Y_test must be given together, got X_test"):
        train(X, Y, lr=0.1, batch_size=1, iterations=1, X_test=Xt)
    nine = np.eye(9, dtype=Yt.dtype)[np.argmax(Yt, axis=0) % 9].T
    with pytest.raises(UsageError, match="Y_test must have 10 classes like Y, got 9"):
        train(X, Y, lr=0.1, batch_size=1, iterations=1, X_test=Xt, Y_test=nine)
    with pytest.raises(UsageError, match=r"n_prime must be an integer in \[1, 10\], got 11"):
        draw_subset(10, 11)
    with pytest.raises(UsageError, match=r"n_samples must be an integer >= 1, got 0"):
        sample_batches(0, batch_size=1, iterations=1)


@pytest.mark.integration
def test_task2_run_on_mnist_lands_in_the_study_range(mnist):
    (X, Y), (Xt, Yt) = mnist
    res = train(X, Y, lr=0.001, batch_size=100, iterations=1000, X_test=Xt, Y_test=Yt)
    final = res.history.iloc[-1]
    assert 0.80 <= final.test_acc <= 0.84
    assert 0.23 <= final.train_loss <= 0.26


def test_a_shared_evaluator_gives_the_same_runs(small_data):
    """The seeds of a cell share one Evaluator; their histories must not change."""
    (X, Y), (Xt, Yt) = small_data
    shared = Evaluator(X, Y, Xt, Yt)
    for seed, batch_size in [(0, 1), (1, 20), (2, 1)]:
        kwargs = dict(lr=0.004, batch_size=batch_size, iterations=60, seed=seed)
        alone = train(X, Y, X_test=Xt, Y_test=Yt, **kwargs)
        reused = train(X, Y, X_test=Xt, Y_test=Yt, evaluator=shared, **kwargs)
        assert alone.history.equals(reused.history)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda X, Y, Xt, Yt: "evaluator",
            "evaluator must be a linmnist.engine.evaluation.Evaluator",
        ),
        (lambda X, Y, Xt, Yt: Evaluator(X, Y), "evaluator must be built from this run's data"),
        (lambda X, Y, Xt, Yt: Evaluator(X[:, :100], Y[:, :100], Xt, Yt), "this run's data"),
        (lambda X, Y, Xt, Yt: Evaluator(X, Y, Xt, Yt, bias=True), "this run's data"),
    ],
)
def test_an_evaluator_of_other_data_is_refused(small_data, make, message):
    (X, Y), (Xt, Yt) = small_data
    with pytest.raises(UsageError, match=message):
        train(X, Y, lr=0.01, batch_size=10, iterations=5, X_test=Xt, Y_test=Yt,
              evaluator=make(X, Y, Xt, Yt))  # fmt: skip


def test_only_the_evaluators_own_arrays_skip_the_data_scan(small_data, monkeypatch):
    """A run on the very arrays its Evaluator checked is not scanned again; data of the same
    shape that is not those arrays (a copy holding a NaN) is checked and refused."""
    (X, Y), (Xt, Yt) = small_data
    shared = Evaluator(X, Y, Xt, Yt)
    assert shared.built_from(X, Y, Xt, Yt) and not shared.built_from(X.copy(), Y, Xt, Yt)
    calls = []
    monkeypatch.setattr(sgd, "check_data", lambda *a, **k: calls.append(a) or a[:2])
    train(X, Y, lr=0.01, batch_size=10, iterations=3, X_test=Xt, Y_test=Yt, evaluator=shared)
    assert calls == []
    monkeypatch.undo()
    bad = X.copy()
    bad[3, 5] = np.nan
    with pytest.raises(UsageError, match="X must hold finite numbers, got NaN or infinity"):
        train(bad, Y, lr=0.01, batch_size=10, iterations=3, X_test=Xt, Y_test=Yt,
              evaluator=shared)  # fmt: skip


def test_batches_drawn_a_chunk_at_a_time_are_those_of_sample_batches(
    small_data, small_evaluators, monkeypatch
):
    """``train`` draws its batches as it goes (bounded memory): the same run as the batches
    of ``sample_batches``, whatever the chunk length."""
    (X, Y), _ = small_data
    run = dict(lr=0.01, batch_size=3, iterations=23, seed=4, evaluator=small_evaluators[False])
    batches = sample_batches(X.shape[1], batch_size=3, iterations=23, seed=4)
    given = train(X, Y, batches=batches, **run)
    for rows in (1, 5, 1024):
        monkeypatch.setattr(sgd, "BATCH_ROWS", rows)
        drawn = train(X, Y, **run)
        np.testing.assert_array_equal(drawn.W, given.W)
        pd.testing.assert_frame_equal(drawn.history, given.history)


def test_drawing_every_batch_at_once_is_bounded():
    """``sample_batches`` materialises (iterations, batch_size) indices: refused beyond 2 GiB."""
    with pytest.raises(UsageError, match=r"iterations x batch_size must be at most 268,435,456"):
        sample_batches(60000, batch_size=60000, iterations=10**5)
