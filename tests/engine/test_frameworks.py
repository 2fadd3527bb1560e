"""PyTorch and Keras train the engine's model: same batches, same weights, same histories."""

import dataclasses
import subprocess
import sys
import warnings

import numpy as np
import pytest

from linmnist.engine.evaluation import Evaluator
from linmnist.engine.frameworks import (
    FrameworkResult,
    compare_runs,
    numpy_step_seconds,
    quadratic_lr,
    train_keras,
    train_torch,
)
from linmnist.engine.sgd import DIVERGENCE_LOSS, HISTORY_COLUMNS, TrainResult, sample_batches, train

TRAINERS = {"torch": train_torch, "keras": train_keras}
# (framework, dtype, bound on max |W_numpy - W_framework|), the tolerances.
AGREEMENT = [
    ("torch", np.float32, 1e-5),
    ("torch", np.float64, 1e-10),
    ("keras", np.float32, 1e-5),
]


def run_both(framework, data, *, lr, batch_size, iterations, dtype=np.float32, **kwargs):
    """(engine result, framework result) on identical batches with a test set."""
    (X, Y), (Xt, Yt) = data
    batches = sample_batches(X.shape[1], batch_size=batch_size, iterations=iterations, seed=4)
    common = dict(
        lr=lr, batch_size=batch_size, iterations=iterations, batches=batches, X_test=Xt,
        Y_test=Yt, dtype=dtype,
    )  # fmt: skip
    engine_kwargs = {k: v for k, v in kwargs.items() if k in ("bias", "eval_every")}
    engine = train(X, Y, **common, **engine_kwargs)
    return engine, TRAINERS[framework](X, Y, **common, **kwargs)


def assert_same_histories(engine, other, loss_rtol):
    assert list(other.history.columns) == HISTORY_COLUMNS
    np.testing.assert_array_equal(other.history.iteration, engine.history.iteration)
    np.testing.assert_array_equal(other.history.train_acc, engine.history.train_acc)
    np.testing.assert_array_equal(other.history.test_acc, engine.history.test_acc)
    np.testing.assert_allclose(other.history.train_loss, engine.history.train_loss, rtol=loss_rtol)


@pytest.mark.slow
@pytest.mark.parametrize(("framework", "dtype", "tol"), AGREEMENT)
def test_framework_weights_and_accuracy_curves_match_the_engine(small_data, framework, dtype, tol):
    engine, res = run_both(
        framework, small_data, lr=0.001, batch_size=100, iterations=300, dtype=dtype
    )
    assert res.W.dtype == dtype and res.b is None
    assert np.abs(res.W - engine.W).max() <= tol
    assert_same_histories(engine, res, loss_rtol=1e2 * tol)


@pytest.mark.slow
@pytest.mark.parametrize(("framework", "dtype", "tol"), AGREEMENT)
def test_bias_variant_matches_the_engine_with_bias(small_data, framework, dtype, tol):
    engine, res = run_both(
        framework, small_data, lr=0.002, batch_size=50, iterations=200, dtype=dtype, bias=True
    )
    assert np.abs(res.W - engine.W).max() <= tol
    assert np.abs(res.b - engine.b).max() <= tol
    assert np.abs(res.b).max() > 1e-3  # the bias is learned, not left at zero
    assert_same_histories(engine, res, loss_rtol=1e2 * tol)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("framework", "dtype", "tol"), [("torch", np.float64, 1e-12), ("keras", np.float32, 1e-6)]
)
def test_mse_at_lr_equals_quadratic_at_lr_over_5(small_data, framework, dtype, tol):
    (X, Y), _ = small_data
    batches = sample_batches(X.shape[1], batch_size=100, iterations=100, seed=1)
    common = dict(batch_size=100, iterations=100, batches=batches, dtype=dtype, bias=True)
    mse = TRAINERS[framework](X, Y, lr=0.01, loss="mse", **common)
    quad = TRAINERS[framework](X, Y, lr=quadratic_lr(0.01), loss="quadratic", **common)
    assert quadratic_lr(0.01) == pytest.approx(0.002)
    assert np.abs(mse.W - quad.W).max() <= tol and np.abs(mse.b - quad.b).max() <= tol
    same_lr = TRAINERS[framework](X, Y, lr=0.01, loss="quadratic", **common)
    assert np.abs(same_lr.W - mse.W).max() > 1e3 * tol


@pytest.mark.slow
@pytest.mark.parametrize("framework", TRAINERS)
def test_eval_every_records_the_engines_iterations(small_data, framework):
    engine, res = run_both(
        framework, small_data, lr=0.001, batch_size=100, iterations=30, eval_every=7
    )
    assert res.history.iteration.tolist() == [0, 7, 14, 21, 28, 29]
    assert_same_histories(engine, res, loss_rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("framework", TRAINERS)
def test_divergence_stops_where_the_engine_stops_without_warnings(small_data, framework):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        engine, res = run_both(framework, small_data, lr=0.1, batch_size=100, iterations=200)
    assert engine.diverged_at is not None
    assert res.diverged_at == engine.diverged_at
    assert len(res.history) == res.diverged_at
    assert res.history.train_loss.max() <= DIVERGENCE_LOSS
    assert np.all(np.isfinite(res.W))
    np.testing.assert_array_equal(res.history.test_acc, engine.history.test_acc)


@pytest.mark.slow
@pytest.mark.parametrize("framework", TRAINERS)
def test_result_is_a_train_result_with_timings(small_data, framework):
    (X, Y), _ = small_data
    res = TRAINERS[framework](X, Y, lr=0.001, batch_size=10, iterations=20, seed=3)
    assert isinstance(res, TrainResult) and isinstance(res, FrameworkResult)
    assert (res.framework, res.loss, res.seed, res.iterations) == (framework, "quadratic", 3, 20)
    assert 0 < res.step_seconds < res.seconds
    assert res.history.test_acc.isna().all()
    batches = sample_batches(X.shape[1], batch_size=10, iterations=20, seed=3)
    assert numpy_step_seconds(X, Y, lr=0.001, batches=batches, bias=True) > 0


@pytest.mark.parametrize("framework", TRAINERS)
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, r"lr must be a finite number > 0, got 0\.0"),
        ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"iterations": 0}, "iterations must be an integer >= 1, got 0"),
        ({"eval_every": 0}, "eval_every must be an integer >= 1, got 0"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"dtype": np.int32}, "dtype must be np.float32 or np.float64"),
        ({"loss": "l1"}, "loss must be one of quadratic, mse; got 'l1'"),
        ({"bias": "yes"}, "bias must be True or False"),
        ({"batches": np.zeros((3, 3), int)}, "batches must be an integer array of shape"),
        ({"batches": np.full((5, 10), 10_000)}, r"batches must hold sample indices in \[0, 1999\]"),
        ({"X_test": np.zeros((784, 3))}, "given together"),
    ],
)
def test_invalid_parameters_are_refused(small_data, framework, kwargs, message):
    (X, Y), _ = small_data
    args = {"lr": 0.01, "batch_size": 10, "iterations": 5} | kwargs
    with pytest.raises(ValueError, match=message):
        TRAINERS[framework](X, Y, **args)


def test_keras_refuses_float64(small_data):
    (X, Y), _ = small_data
    with pytest.raises(ValueError, match="dtype must be np.float32 for train_keras"):
        train_keras(X, Y, lr=0.01, batch_size=10, iterations=5, dtype=np.float64)


@pytest.mark.slow
def test_keras_on_another_backend_is_refused(small_data, monkeypatch):
    (X, Y), _ = small_data
    train_keras(X, Y, lr=0.01, batch_size=10, iterations=1)
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match="needs 'torch': set KERAS_BACKEND=torch"):
        train_keras(X, Y, lr=0.01, batch_size=10, iterations=1)


@pytest.mark.slow
def test_importing_the_module_loads_neither_torch_nor_keras():
    code = (
        "import sys, linmnist.engine.frameworks; "
        "print('torch' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_compare_runs_counts_the_samples_whose_prediction_differs(small_data):
    engine, res = run_both("torch", small_data, lr=0.001, batch_size=100, iterations=20)
    same = compare_runs(engine, res, n_train=2000, n_test=500)
    assert (same.evaluations, same.differing, same.train_samples, same.test_samples) == (
        20,
        0,
        0,
        0,
    )
    assert 0 < same.max_abs_dW <= 1e-5 and same.max_loss_rel < 1e-5
    shift = np.zeros(20)
    shift[3] = 2 / 2000
    flipped = dataclasses.replace(
        res, history=res.history.assign(train_acc=lambda h: h.train_acc + shift)
    )
    diff = compare_runs(engine, flipped, n_train=2000, n_test=500)
    assert (diff.differing, diff.train_samples, diff.test_samples) == (1, 2, 0)
    with pytest.raises(ValueError, match="same iterations"):
        compare_runs(
            engine, dataclasses.replace(res, history=res.history.iloc[:5]), n_train=2000, n_test=500
        )


@pytest.mark.slow
@pytest.mark.parametrize("framework", TRAINERS)
def test_a_shared_evaluator_scores_like_the_runs_own(small_data, framework):
    (X, Y), (Xt, Yt) = small_data
    batches = sample_batches(X.shape[1], batch_size=50, iterations=12, seed=2)
    common = dict(lr=0.002, batch_size=50, iterations=12, batches=batches, X_test=Xt, Y_test=Yt)
    common |= dict(eval_every=4, bias=True)
    shared = Evaluator(X, Y, Xt, Yt, bias=True)
    alone = TRAINERS[framework](X, Y, **common)
    with_shared = TRAINERS[framework](X, Y, **common, evaluator=shared)
    np.testing.assert_array_equal(with_shared.W, alone.W)
    assert with_shared.history.equals(alone.history)
    with pytest.raises(ValueError, match="evaluator must be built from this run's data"):
        TRAINERS[framework](X, Y, **common, evaluator=Evaluator(X, Y, Xt, Yt))
    with pytest.raises(ValueError, match="evaluator must be a linmnist.engine.evaluation"):
        TRAINERS[framework](X, Y, **common, evaluator="no")


@pytest.mark.integration
def test_task2_configuration_on_mnist_agrees_across_implementations(mnist):
    (X, Y), (Xt, Yt) = mnist
    batches = sample_batches(X.shape[1], batch_size=100, iterations=1000, seed=0)
    common = dict(
        lr=0.001, batch_size=100, iterations=1000, batches=batches, X_test=Xt, Y_test=Yt,
        eval_every=50,
    )  # fmt: skip
    engines = {dtype: train(X, Y, **common, dtype=dtype) for dtype in (np.float32, np.float64)}
    assert 0.80 <= engines[np.float32].history.test_acc.iloc[-1] <= 0.84
    for framework, dtype, tol in AGREEMENT:
        res = TRAINERS[framework](X, Y, **common, dtype=dtype)
        assert np.abs(res.W - engines[dtype].W).max() <= tol, (framework, dtype)
        assert_same_histories(engines[dtype], res, loss_rtol=1e2 * tol)


@pytest.mark.parametrize("flag", ["data_checked", "draw_batches"])
def test_the_framework_trainers_refuse_the_checks_own_flags(flag):
    """train's arguments pass through; the flags that would skip its checks do not."""
    X, Y = np.zeros((4, 8), np.float32), np.eye(2, 8, dtype=np.float32)
    for trainer in (train_torch, train_keras):
        with pytest.raises(TypeError, match=f"unexpected keyword arguments \\['{flag}'\\]"):
            trainer(X, Y, lr=0.1, batch_size=2, iterations=1, **{flag: True})
