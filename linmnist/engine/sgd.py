"""Minibatch SGD for the linear classifier W x with the quadratic loss, exactly the study's:

    L(W) = 1/(2N) * sum_i ||W x_i - y_i||^2,      W <- W - lr (W Xb - Yb) Xb^T / B,

from W = 0, the B batch indices drawn uniformly WITH replacement. Training hands the weights
of every evaluated iteration (and the errors E when scored incrementally) to an
``evaluation.HistoryStream``, so a run's memory does not grow with its iterations; divergence
is watched through an upper bound on the loss that costs one norm (``Evaluator.diverged``).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from linmnist.engine.data import aligned_empty
from linmnist.engine.evaluation import DIVERGENCE_LOSS as DIVERGENCE_LOSS
from linmnist.engine.evaluation import (
    HISTORY_COLUMNS,
    Evaluator,
    HistoryStream,
    check_data,
    check_test_data,
    with_bias_row,
)
from linmnist.engine.update import sgd_update
from linmnist.engine.validation import (
    UsageError,
    check_bool,
    check_choice,
    check_instance,
    check_int,
    check_number,
)
from linmnist.engine.validation import check_dtype as _check_dtype

ACCURACY_MODES = ("every", "final")
# Batches smaller than this use the incremental scores when every iteration is evaluated
# (MNIST, 1,000 iterations: B = 3 2.1 s against 2.4 s lazy, B = 4 2.7 s against 2.3 s).
INCREMENTAL_BELOW = 4
_DTYPES = (np.float32, np.float64)
# Longest run accepted (its history alone takes 3.2 GB at one evaluation per iteration).
MAX_ITERATIONS = 10**8
# Iterations whose batches are drawn at once when ``train`` draws them itself.
BATCH_ROWS = 1024
# Largest batch: its samples and ``BATCH_ROWS`` iterations of indices take 0.75 GB.
MAX_BATCH_SIZE = 1 << 16
# Largest array of batch indices drawn at once by ``sample_batches`` (iterations x batch).
MAX_DRAWN_BYTES = 2 << 30


@dataclass
class TrainResult:
    """Outcome of one SGD run (with the settings it ran with: lr to eval_every)."""

    W: np.ndarray  # (10, D), final (before divergence if the run diverged)
    b: np.ndarray | None  # (10,), final bias when trained with ``bias=True``
    history: pd.DataFrame  # HISTORY_COLUMNS, iteration 0-based (accuracies NaN if not scored)
    diverged_at: int | None  # the iteration whose loss exceeded DIVERGENCE_LOSS (stopped)
    seconds: float  # wall time of training plus evaluation
    lr: float
    batch_size: int
    iterations: int
    seed: int
    eval_every: int


def check_dtype(dtype) -> np.dtype:
    """``dtype`` as a numpy dtype if it is float32 or float64, else a UsageError."""
    return _check_dtype("dtype", dtype, _DTYPES)


def check_batch_size(batch_size, *, name: str = "batch_size", features: int = 784,
                     itemsize: int = 4) -> int:  # fmt: skip
    """``batch_size`` as an int in [1, ``MAX_BATCH_SIZE``], else a UsageError (with the memory)."""
    batch_size = check_int(name, batch_size, low=1)
    if batch_size > MAX_BATCH_SIZE:
        need = batch_size * (features * itemsize + BATCH_ROWS * 8) / 1e9
        raise UsageError(
            f"{name} must be an integer in [1, {MAX_BATCH_SIZE}], got {batch_size}: a batch "
            f"of {batch_size} samples needs {need:,.1f} GB ({features} x {batch_size} "
            f"samples of {itemsize} bytes, and {BATCH_ROWS} iterations of indices drawn at once)"
        )
    return batch_size


def check_iterations(iterations) -> int:
    """``iterations`` as an int in [1, ``MAX_ITERATIONS``], else a UsageError."""
    iterations = check_int("iterations", iterations, low=1)
    return check_int("iterations", iterations, low=1, high=MAX_ITERATIONS)


def sample_batches(
    n_samples: int, *, batch_size: int, iterations: int, seed: int = 0
) -> np.ndarray:
    """Batch indices drawn uniformly WITH replacement, shape (iterations, batch_size)."""
    n_samples = check_int("n_samples", n_samples, low=1)
    batch_size = check_batch_size(batch_size)
    iterations = check_iterations(iterations)
    seed = check_int("seed", seed, low=0)
    if iterations * batch_size * 8 > MAX_DRAWN_BYTES:
        raise UsageError(
            f"iterations x batch_size must be at most {MAX_DRAWN_BYTES // 8:,} to draw every "
            f"batch at once, got {iterations} x {batch_size}: the indices would take "
            f"{iterations * batch_size * 8 / 1e9:,.1f} GB (train draws them a chunk at a time)"
        )
    return np.random.default_rng(seed).integers(0, n_samples, size=(iterations, batch_size))


def batch_rows(args: RunArguments):
    """The batch of every iteration: ``args.batches``' rows, or drawn from ``args.seed``."""
    if args.batches is not None:
        yield from args.batches
        return
    rng = np.random.default_rng(args.seed)
    n = args.X.shape[1]
    for start in range(0, args.iterations, BATCH_ROWS):
        rows = min(BATCH_ROWS, args.iterations - start)
        yield from rng.integers(0, n, size=(rows, args.batch_size))


def draw_subset(n_total: int, n_prime: int, *, seed: int = 0) -> np.ndarray:
    """``n_prime`` distinct indices of ``range(n_total)``, drawn WITHOUT replacement (Task 5)."""
    n_total = check_int("n_total", n_total, low=1)
    n_prime = check_int("n_prime", n_prime, low=1, high=n_total)
    seed = check_int("seed", seed, low=0)
    return np.random.default_rng(seed).choice(n_total, size=n_prime, replace=False)


def sgd_step(W: np.ndarray, Xb: np.ndarray, Yb: np.ndarray, lr: float):
    """(W - lr E Xb^T / B, E), E = W Xb - Yb: the update in numpy on a gathered batch (the
    framework comparison's numpy model; ``update.sgd_update`` equals it to float32 rounding)."""
    E = W @ Xb - Yb
    return W - (lr / Xb.shape[1]) * (E @ Xb.T), E


@dataclass
class RunArguments:
    """The arguments of one training run, validated by ``check_run_arguments``."""

    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray | None
    Y_test: np.ndarray | None
    lr: float
    batch_size: int
    iterations: int
    seed: int
    batches: np.ndarray | None  # None: drawn from ``seed`` as the run goes (``train``)
    eval_every: int
    dtype: np.dtype
    bias: bool


def check_run_arguments(X, Y, X_test=None, Y_test=None, *, lr, batch_size, iterations, seed=0,
                        batches=None, eval_every=1, dtype=np.float32, bias=False, draw_batches=True,
                        data_checked=False) -> RunArguments:  # fmt: skip
    """Validate ``train``'s arguments (the same for every implementation); draws the batches unless
    given or not ``draw_batches``; ``data_checked`` skips the data's scan (an Evaluator did it)."""
    lr = check_number("lr", lr, low=0, low_open=True)
    dt = check_dtype(dtype)
    bias = check_bool("bias", bias)
    features = X.shape[0] if isinstance(X, np.ndarray) and X.ndim == 2 else 784
    batch_size = check_batch_size(batch_size, features=features + bias, itemsize=dt.itemsize)
    iterations = check_iterations(iterations)
    seed = check_int("seed", seed, low=0)
    eval_every = check_int("eval_every", eval_every, low=1)
    if not data_checked:
        X, Y = check_data(X, Y, "X", "Y")
        X_test, Y_test = check_test_data(X_test, Y_test, X, Y)
    n = X.shape[1]
    if batches is None:
        if draw_batches:
            batches = sample_batches(n, batch_size=batch_size, iterations=iterations, seed=seed)
    else:
        batches = np.asarray(batches)
        if batches.shape != (iterations, batch_size) or not np.issubdtype(
            batches.dtype, np.integer
        ):
            raise UsageError(
                f"batches must be an integer array of shape (iterations, batch_size) = "
                f"({iterations}, {batch_size}), got {batches.dtype} {batches.shape}"
            )
        if batches.min() < 0 or batches.max() >= n:
            raise UsageError(
                f"batches must hold sample indices in [0, {n - 1}], got indices in "
                f"[{batches.min()}, {batches.max()}]"
            )
    return RunArguments(
        X, Y, X_test, Y_test, lr, batch_size, iterations, seed, batches, eval_every, dt, bias
    )


def check_evaluator(evaluator, args: RunArguments) -> Evaluator:
    """``evaluator`` if it is an ``Evaluator`` built from the data of the run ``args``."""
    check_instance("evaluator", evaluator, Evaluator, "a linmnist.engine.evaluation.Evaluator")
    n_test = 0 if args.X_test is None else args.X_test.shape[1]
    expected = (args.X.shape[0] + args.bias, args.X.shape[1], n_test)
    if (evaluator.shape, evaluator.bias) != (expected, args.bias):
        raise UsageError(
            f"evaluator must be built from this run's data: (features, train samples, test "
            f"samples) = {expected} with bias={args.bias}, got {evaluator.shape} with "
            f"bias={evaluator.bias}"
        )
    return evaluator


def _with_losses(history: pd.DataFrame, evaluator: Evaluator, points: list) -> pd.DataFrame:
    """``history`` with a row per (iteration, W) of ``points``: its loss, NaN accuracies."""
    if not points:
        return history
    iterations, Ws = zip(*points, strict=True)
    losses = evaluator.losses(np.stack(Ws))
    rows = pd.DataFrame({"iteration": list(iterations), "train_loss": losses})
    frame = pd.concat([rows.reindex(columns=HISTORY_COLUMNS), history], ignore_index=True)
    return frame.astype({"iteration": int})


def train(X: np.ndarray, Y: np.ndarray, *, lr: float, batch_size: int, iterations: int,
          seed: int = 0, batches: np.ndarray | None = None, X_test: np.ndarray | None = None,
          Y_test: np.ndarray | None = None, eval_every: int = 1, dtype=np.float32,
          bias: bool = False, evaluator: Evaluator | None = None, accuracy: str = "every"
) -> TrainResult:  # fmt: skip
    """Train W (10 x D, from zero) by minibatch SGD on the quadratic loss: X, Y (D, N), (10, N)
    are feature-major inputs and one-hot labels; ``batches`` (iterations, batch_size) replays a
    run (``seed`` then unused); the test set is scored at every ``eval_every`` iterations and the
    last. ``dtype`` is the updates' arithmetic; ``bias`` learns W x + b; ``evaluator`` is an
    ``Evaluator(X, Y, X_test, Y_test, bias=bias)`` shared by runs on these arrays;
    ``accuracy="final"`` scores the accuracies at the last evaluation only (the others: loss)."""
    t0 = time.perf_counter()
    accuracy = check_choice("accuracy", accuracy, ACCURACY_MODES)
    shared = isinstance(evaluator, Evaluator) and evaluator.built_from(X, Y, X_test, Y_test)
    args = check_run_arguments(
        X, Y, X_test, Y_test, lr=lr, batch_size=batch_size, iterations=iterations, seed=seed,
        batches=batches, eval_every=eval_every, dtype=dtype, bias=bias, draw_batches=False,
        data_checked=shared,
    )  # fmt: skip
    if evaluator is None:
        evaluator = Evaluator(args.X, args.Y, args.X_test, args.Y_test, bias=args.bias)
    W, diverged_at, history = _descend(args, check_evaluator(evaluator, args), accuracy)
    W, b = (W[:, :-1].copy(), W[:, -1].copy()) if args.bias else (W, None)
    return TrainResult(W, b, history, diverged_at, time.perf_counter() - t0, float(args.lr),
                       args.batch_size, args.iterations, args.seed, args.eval_every)  # fmt: skip


@dataclass
class Recorder:
    """What one run keeps while it trains: its weights, the stream scoring them, where it
    diverged, and with ``accuracy="final"`` the latest point (``held``) and the others."""

    stream: HistoryStream
    W: np.ndarray
    every: int
    last: int
    accuracy: str
    incremental: bool
    diverged_at: int | None = None
    held: tuple[int, np.ndarray] | None = None
    loss_only: list[tuple[int, np.ndarray]] = field(default_factory=list)

    def records(self, t: int) -> bool:
        """Whether the weights after update ``t`` are evaluated (kept until scored)."""
        return t % self.every == 0 or t == self.last

    def step(self, t: int, W: np.ndarray, E: np.ndarray, idx: np.ndarray) -> None:
        """Take the weights after update ``t`` (errors E on the batch ``idx``)."""
        self.W = W
        if self.records(t):
            if self.accuracy == "every":
                self.stream.add(t, W, *((E, idx) if self.incremental else ()))
            else:
                self.loss_only += [] if self.held is None else [self.held]
                self.held = (t, W)

    def history(self, evaluator: Evaluator) -> pd.DataFrame:
        """The run's history, once it has stopped."""
        if self.held is not None:
            self.stream.add(*self.held)
        return _with_losses(self.stream.frame(), evaluator, self.loss_only)


def recorder(args: RunArguments, evaluator: Evaluator, accuracy: str, lr: float, stack) -> Recorder:
    """A ``Recorder`` of a run ``args`` at ``lr`` from W = 0, its stream in ``stack``."""
    incremental = args.batch_size < INCREMENTAL_BELOW and args.eval_every == 1
    incremental = incremental and accuracy == "every"
    stream = stack.enter_context(evaluator.stream(lr / args.batch_size if incremental else None))
    shape = (args.Y.shape[0], args.X.shape[0] + args.bias)
    return Recorder(stream, np.zeros(shape, dtype=args.dtype), args.eval_every,
                    args.iterations - 1, accuracy, incremental)  # fmt: skip


def _descend(args: RunArguments, evaluator: Evaluator, accuracy: str):
    """(final W, iteration of divergence or None, history) of the run ``args``."""
    Xd = np.asarray(with_bias_row(args.X, args.bias), dtype=args.dtype)
    Yd = np.asarray(args.Y, dtype=args.dtype)
    # One sample per row, each a run of memory (a view of the usual feature-major data).
    XT, YT = np.ascontiguousarray(Xd.T), Yd.T
    G = aligned_empty((Yd.shape[0], Xd.shape[0]), args.dtype)
    # The evaluation streams: every chunk of recorded weights is scored and dropped, so the
    # memory of a run does not grow with its iterations beyond the history table.
    with ExitStack() as stack:
        run = recorder(args, evaluator, accuracy, args.lr, stack)
        # The divergence check and a chunk's scoring are small products: one BLAS thread does
        # them fastest, and never waits for a second that another process has descheduled.
        with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"):
            for t, idx in enumerate(batch_rows(args)):
                W_next, E = sgd_update(run.W, XT, YT, idx, args.lr, G)
                if evaluator.diverged(W_next):
                    run.diverged_at = t
                    break
                run.step(t, W_next, E, idx)
            history = run.history(evaluator)
    return run.W, run.diverged_at, history
