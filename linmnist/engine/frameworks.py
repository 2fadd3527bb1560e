"""The same linear model and SGD in PyTorch and in Keras 3 (torch backend), on the engine's batches.

``train_torch`` and ``train_keras`` take ``linmnist.engine.sgd.train``'s arguments (plus
``loss``) and return its kind of result: the same zero start, batches and divergence rule, and
the recorded weights scored by the engine's exact evaluation. ``"quadratic"`` is the engine's
1/(2B) sum ||W x + b - y||^2; ``"mse"`` (``nn.MSELoss``, ``keras.losses.MeanSquaredError``)
also averages over the K outputs, so its gradient is 2/K of it (``quadratic_lr`` converts).
``train_loss`` is always the quadratic loss. torch and keras are imported when first used.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from linmnist.engine.evaluation import Evaluator, check_data, with_bias_row
from linmnist.engine.sgd import (
    RunArguments,
    TrainResult,
    check_dtype,
    check_evaluator,
    check_run_arguments,
    sgd_step,
)
from linmnist.engine.validation import UsageError, check_choice

LOSSES = ("quadratic", "mse")
_NO_COPY_KEYWORD = "__array__ implementation doesn't accept a copy keyword"


@dataclass
class FrameworkResult(TrainResult):
    """A ``TrainResult`` with ``framework``, ``loss`` and ``step_seconds`` (updates alone)."""

    framework: str
    loss: str
    step_seconds: float


def quadratic_lr(lr: float, n_outputs: int = 10) -> float:
    """The rate on the quadratic loss equal to ``lr`` on the MSE loss (0.01 there is 0.002)."""
    return lr * 2 / n_outputs


def numpy_step_seconds(X, Y, *, lr: float, batches, dtype=np.float32, bias: bool = False) -> float:
    """Wall time of the numpy updates alone (``sgd_step``) replayed on ``batches``."""
    dt = check_dtype(dtype)
    X, Y = check_data(X, Y, "X", "Y")
    Xd, Yd = np.asarray(with_bias_row(X, bias), dtype=dt), np.asarray(Y, dtype=dt)
    W = np.zeros((Yd.shape[0], Xd.shape[0]), dtype=dt)
    total = 0.0
    # One BLAS thread, as in the engine's training loop.
    with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"):
        for idx in np.asarray(batches):
            t0 = time.perf_counter()
            W, _ = sgd_step(W, Xd[:, idx], Yd[:, idx], lr)
            total += time.perf_counter() - t0
    return total


@dataclass
class _Run(RunArguments):
    """Validated arguments of a framework run: the engine's, plus the loss."""

    loss: str


def _validate(X, Y, *, loss: str, evaluator=None, **arguments) -> _Run:
    """The engine's checks (``check_run_arguments``), plus ``loss`` and ``evaluator``."""
    internal = sorted({"draw_batches", "data_checked"} & set(arguments))
    if internal:  # check_run_arguments's own flags: a caller must not skip its checks
        raise TypeError(f"got unexpected keyword arguments {internal}: pass those of sgd.train")
    args = check_run_arguments(X, Y, **arguments)
    check_choice("loss", loss, LOSSES)
    if evaluator is not None:
        check_evaluator(evaluator, args)
    return _Run(**vars(args), loss=loss)


@contextmanager
def _torch_threads() -> Iterator[None]:
    """torch's threads set to $OMP_NUM_THREADS, or 1 when unset, and restored after: the
    updates are small products (on a loaded 2-core machine two threads made PyTorch 15x slower)."""
    import torch

    env = os.environ.get("OMP_NUM_THREADS", "")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(env) if env.isdigit() and int(env) >= 1 else 1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _loop(run: _Run, framework: str, step: Callable[[np.ndarray], None],
          weights: Callable[[], tuple[np.ndarray, np.ndarray | None]], evaluator: Evaluator | None
) -> FrameworkResult:  # fmt: skip
    """``step(idx)`` on every batch with the engine's divergence rule, recording and evaluation;
    ``weights()`` copies the current (W, b) (b None without a bias)."""
    t_start = time.perf_counter()
    if evaluator is None:
        evaluator = Evaluator(run.X, run.Y, run.X_test, run.Y_test, bias=run.bias)
    W, b = weights()
    recorded, snapshots = [], []
    diverged_at = None
    step_seconds = 0.0
    # The divergence check runs on one BLAS thread, as in the engine's loop.
    with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"), _torch_threads():
        for t in range(run.iterations):
            t0 = time.perf_counter()
            step(run.batches[t])  # type: ignore[index]
            step_seconds += time.perf_counter() - t0
            W_next, b_next = weights()
            full = W_next if b_next is None else np.hstack([W_next, b_next[:, None]])
            if evaluator.diverged(full):
                diverged_at = t
                break
            W, b = W_next, b_next
            if t % run.eval_every == 0 or t == run.iterations - 1:
                recorded.append(t)
                snapshots.append(full)
    n_cols = run.X.shape[0] + run.bias
    Ws = np.stack(snapshots) if snapshots else np.empty((0, run.Y.shape[0], n_cols))
    history = evaluator.history(Ws, np.asarray(recorded, dtype=int))
    seconds = time.perf_counter() - t_start
    return FrameworkResult(W, b, history, diverged_at, seconds, run.lr, run.batch_size,
                           run.iterations, run.seed, run.eval_every, framework, run.loss,
                           step_seconds)  # fmt: skip


def train_torch(X, Y, *, loss: str = "quadratic", evaluator=None, **arguments) -> FrameworkResult:
    """Train ``nn.Linear(D, 10, bias=bias)`` from zero with ``torch.optim.SGD`` on ``sgd.train``'s
    ``arguments``, ``loss`` one of ``LOSSES``; scored and stopped as train's runs."""
    run = _validate(X, Y, loss=loss, evaluator=evaluator, **arguments)
    return _loop(run, "torch", *_torch_steps(run), evaluator)  # type: ignore[call-arg]


def _torch_steps(run: _Run):
    """``_loop``'s ``(step, weights)`` of a ``torch.nn.Linear`` from zero and its SGD."""
    import torch

    tdtype = torch.float64 if run.dtype == np.float64 else torch.float32
    Xr = torch.from_numpy(np.ascontiguousarray(run.X.T, dtype=run.dtype))
    Yr = torch.from_numpy(np.ascontiguousarray(run.Y.T, dtype=run.dtype))
    model = torch.nn.Linear(Xr.shape[1], Yr.shape[1], bias=run.bias, dtype=tdtype)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=run.lr)
    mse = torch.nn.MSELoss()

    def step(idx: np.ndarray) -> None:
        rows = torch.from_numpy(idx)
        xb, yb = Xr[rows], Yr[rows]
        optimizer.zero_grad()
        out = model(xb)
        if run.loss == "mse":
            value = mse(out, yb)
        else:
            value = 0.5 * (out - yb).square().sum(dim=1).mean()
        value.backward()
        optimizer.step()

    def weights():
        W = model.weight.detach().numpy().copy()
        return W, None if model.bias is None else model.bias.detach().numpy().copy()

    return step, weights


def train_keras(X, Y, *, loss: str = "quadratic", evaluator=None, **arguments) -> FrameworkResult:
    """``train_torch`` with a Keras ``Dense`` layer and ``keras.optimizers.SGD`` on the torch
    backend; ``dtype`` must be float32 (Keras 3 computes 64-bit products in 32 bits there)."""
    run = _validate(X, Y, loss=loss, evaluator=evaluator, **arguments)
    if run.dtype != np.float32:
        raise UsageError(
            "dtype must be np.float32 for train_keras: Keras 3 on the torch backend computes "
            f"64-bit products in float32 (as JAX does), got {run.dtype}"
        )
    with warnings.catch_warnings():
        # train_on_batch converts its logs with np.array(tensor), which numpy >= 2.4 flags
        # for torch tensors (their __array__ has no copy keyword); harmless here.
        warnings.filterwarnings("ignore", _NO_COPY_KEYWORD, DeprecationWarning)
        return _loop(run, "keras", *_keras_steps(run), evaluator)  # type: ignore[call-arg]


def _keras_steps(run: _Run):
    """``_loop``'s ``(step, weights)`` of a Keras ``Dense`` layer on the torch backend."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"
    import keras

    if (backend := keras.backend.backend()) != "torch":
        raise RuntimeError(
            f"keras runs on the {backend!r} backend, but linmnist.engine.frameworks needs 'torch': "
            "set KERAS_BACKEND=torch before keras is first imported"
        )
    Xr = np.ascontiguousarray(run.X.T, dtype=np.float32)
    Yr = np.ascontiguousarray(run.Y.T, dtype=np.float32)

    def quadratic(y_true, y_pred):
        return 0.5 * keras.ops.sum(keras.ops.square(y_pred - y_true), axis=-1)

    layer = keras.layers.Dense(
        Yr.shape[1], use_bias=run.bias, kernel_initializer="zeros", bias_initializer="zeros"
    )
    model = keras.Sequential([keras.Input((Xr.shape[1],)), layer])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=run.lr),
        loss=keras.losses.MeanSquaredError() if run.loss == "mse" else quadratic,
    )

    def step(idx: np.ndarray) -> None:
        model.train_on_batch(Xr[idx], Yr[idx])

    def weights():
        # On the torch backend a keras Variable's value is a torch Parameter.
        W = layer.kernel.value.detach().numpy().T.copy()
        return W, layer.bias.value.detach().numpy().copy() if run.bias else None

    return step, weights


@dataclass
class RunComparison:
    """How far two runs on identical batches are apart."""

    max_abs_dW: float  # final weights, bias included
    evaluations: int  # iterations evaluated in both
    differing: int  # of those, whose accuracies differ
    train_samples: int  # largest difference in correct samples at one iteration
    test_samples: int
    max_loss_rel: float


def compare_runs(a: TrainResult, b: TrainResult, *, n_train: int, n_test: int) -> RunComparison:
    """Compare run ``b`` with run ``a`` (trained on ``n_train`` samples, tested on ``n_test``)."""
    ha, hb = a.history, b.history
    if not np.array_equal(ha.iteration, hb.iteration):
        raise UsageError("a and b must be evaluated at the same iterations")
    dtrain = np.rint(np.abs(ha.train_acc.to_numpy() - hb.train_acc.to_numpy()) * n_train)
    dtest = np.rint(np.abs(ha.test_acc.to_numpy() - hb.test_acc.to_numpy()) * n_test)
    dtest = np.nan_to_num(dtest)
    loss_rel = np.abs(hb.train_loss.to_numpy() / ha.train_loss.to_numpy() - 1)
    return RunComparison(
        max_abs_dW=float(np.abs(_parameters(b) - _parameters(a)).max()),
        evaluations=len(ha),
        differing=int(np.count_nonzero((dtrain > 0) | (dtest > 0))),
        train_samples=int(dtrain.max(initial=0)),
        test_samples=int(dtest.max(initial=0)),
        max_loss_rel=float(loss_rel.max(initial=0)),
    )


def _parameters(res: TrainResult) -> np.ndarray:
    """W with the bias appended as a last column (when there is one), in float64."""
    W = np.asarray(res.W, dtype=np.float64)
    return W if res.b is None else np.hstack([W, np.asarray(res.b, dtype=np.float64)[:, None]])
