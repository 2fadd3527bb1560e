"""Several learning rates trained side by side on the same batches (one seed's).

The weights of the L rates are stacked into one (10 L, D) matrix, and each step gathers the
batch once and makes two BLAS products for all of them (``sgd.sgd_step`` on every run at once):

    E = W_stack Xb - [Yb; ...; Yb],        W_stack <- W_stack - diag(lr_l / B) E Xb^T.

On MNIST (one thread, 15 rates) that is 0.44-0.60 of separate runs' time at B = 1000, 0.58-0.69
at B = 100. The sums run in BLAS's order: the weights agree with ``sgd.train``'s to float32
rounding (bit for bit below ``STACK_FROM``). A run that diverges leaves the stack.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack

import numpy as np
from threadpoolctl import threadpool_limits

from linmnist.engine.data import aligned_empty
from linmnist.engine.evaluation import Evaluator
from linmnist.engine.sgd import (
    ACCURACY_MODES,
    Recorder,
    RunArguments,
    TrainResult,
    batch_rows,
    check_evaluator,
    check_run_arguments,
    recorder,
)
from linmnist.engine.update import sgd_update
from linmnist.engine.validation import UsageError, check_choice, check_number

# Below this batch size each rate's update is ``sgd.train``'s compiled one, run after run on
# the shared batch (the same numbers as its runs): BLAS products of a few samples cost more
# than they save. Measured on MNIST (the sweep's 18 rates, 1,000 steps, 2 seeds, side by side
# against the rates' cells one by one): stacked, B = 1 took 1.17x the time, B = 10 0.88x,
# B = 100 0.53-0.81x, B = 1000 0.50-0.64x.
STACK_FROM = 10


def check_rates(lrs) -> list[float]:
    """``lrs`` as a list of distinct rates (> 0, finite), or a UsageError."""
    values = list(np.atleast_1d(np.asarray(lrs, dtype=object)))
    rates = [check_number("lrs", v, low=0, low_open=True) for v in values]
    if not rates or len(set(rates)) != len(rates):
        raise UsageError(f"lrs must be a non-empty sequence of distinct rates > 0, got {values}")
    return rates


def train_rates(X: np.ndarray, Y: np.ndarray, *, lrs: Sequence[float], batch_size: int,
                iterations: int, seed: int = 0, X_test: np.ndarray | None = None,
                Y_test: np.ndarray | None = None, eval_every: int = 1,
                evaluator: Evaluator | None = None, accuracy: str = "every"
) -> list[TrainResult]:  # fmt: skip
    """One ``TrainResult`` per rate of ``lrs``: ``sgd.train``'s runs (float32, no bias), trained
    side by side. ``seconds`` is a run's share of each step it took part in, plus its scoring."""
    start = time.perf_counter()
    accuracy = check_choice("accuracy", accuracy, ACCURACY_MODES)
    rates = check_rates(lrs)
    shared = isinstance(evaluator, Evaluator) and evaluator.built_from(X, Y, X_test, Y_test)
    args = check_run_arguments(
        X, Y, X_test, Y_test, lr=rates[0], batch_size=batch_size, iterations=iterations,
        seed=seed, eval_every=eval_every, draw_batches=False, data_checked=shared,
    )  # fmt: skip
    if evaluator is None:
        evaluator = Evaluator(args.X, args.Y, args.X_test, args.Y_test)
    evaluator = check_evaluator(evaluator, args)
    with ExitStack() as stack:
        runs = [recorder(args, evaluator, accuracy, lr, stack) for lr in rates]
        seconds = _descend_together(args, evaluator, runs, rates)
        seconds += (time.perf_counter() - start - seconds.sum()) / len(runs)  # set-up, shared
        histories = []
        for j, run in enumerate(runs):
            began = time.perf_counter()
            histories.append(run.history(evaluator))
            seconds[j] += time.perf_counter() - began
    common = (args.batch_size, args.iterations, args.seed, args.eval_every)
    return [
        TrainResult(run.W, None, history, run.diverged_at, float(s), lr, *common)
        for run, history, s, lr in zip(runs, histories, seconds, rates, strict=True)
    ]


class _Stacked:
    """The live runs' weights stacked (10 L, D): one gather and two BLAS products a step."""

    def __init__(self, rates: list[float], shape: tuple[int, int], batch_size: int):
        self.k = shape[0]
        self.W = np.zeros((len(rates) * shape[0], shape[1]), dtype=np.float32)
        self.scale = np.repeat(np.asarray(rates, dtype=np.float32) / batch_size, self.k)[:, None]

    def step(self, XT: np.ndarray, YT: np.ndarray, idx: np.ndarray) -> list[tuple]:
        """Each live run's (new W, E) after the update on ``idx`` (copy a W to keep: a view)."""
        Xb = XT[idx]  # the batch, gathered once for every rate
        E = self.W @ Xb.T
        errors = E.reshape(-1, self.k, E.shape[1])  # a view: each run's E_l = W_l Xb - Yb
        errors -= YT[idx].T
        self.W = self.W - self.scale * (E @ Xb)
        rows = [slice(j, j + self.k) for j in range(0, len(self.W), self.k)]
        return [(self.W[r], E[r]) for r in rows]

    def keep(self, going: list[int]) -> None:
        """Only the runs at positions ``going`` go on."""
        rows = [i for j in going for i in range(j * self.k, (j + 1) * self.k)]
        self.W, self.scale = self.W[rows], self.scale[rows]


class _Compiled:
    """The live runs' weights apart, each updated by ``sgd.train``'s compiled update (the same
    numbers as its runs): below ``STACK_FROM`` BLAS products of a few samples cost more."""

    def __init__(self, rates: list[float], shape: tuple[int, int]):
        self.rates = list(rates)
        self.Ws = [np.zeros(shape, dtype=np.float32) for _ in rates]
        self.G = aligned_empty(shape, np.float32)

    def step(self, XT: np.ndarray, YT: np.ndarray, idx: np.ndarray) -> list[tuple]:
        """Every live run's (new W, E) after the update on the batch ``idx``."""
        pairs = zip(self.Ws, self.rates, strict=True)
        out = [sgd_update(W, XT, YT, idx, lr, self.G) for W, lr in pairs]
        self.Ws = [W for W, _ in out]
        return out

    def keep(self, going: list[int]) -> None:
        """Only the runs at positions ``going`` go on."""
        self.Ws, self.rates = [self.Ws[j] for j in going], [self.rates[j] for j in going]


def _descend_together(
    args: RunArguments, evaluator: Evaluator, runs: list[Recorder], rates: list[float]
) -> np.ndarray:
    """Train ``runs`` side by side; returns each run's share of the steps' wall time."""
    XT = np.ascontiguousarray(np.asarray(args.X, dtype=np.float32).T)  # a view of prepare's X
    YT = np.asarray(args.Y, dtype=np.float32).T
    shape, stacked = (YT.shape[1], XT.shape[1]), args.batch_size >= STACK_FROM
    weights = _Stacked(rates, shape, args.batch_size) if stacked else _Compiled(rates, shape)
    live = list(range(len(runs)))
    seconds = np.zeros(len(runs))
    with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"):
        tick = time.perf_counter()
        for t, idx in enumerate(batch_rows(args)):
            for r, (W, E) in zip(live, weights.step(XT, YT, idx), strict=True):
                if evaluator.diverged(W):
                    runs[r].diverged_at = t
                else:
                    kept = runs[r].records(t) and stacked
                    runs[r].step(t, W.copy() if kept else W, E, idx)
            now = time.perf_counter()
            seconds[live] += (now - tick) / len(live)
            tick = now
            going = [j for j, r in enumerate(live) if runs[r].diverged_at is None]
            if len(going) < len(live):
                weights.keep(going)
                live = [live[j] for j in going]
                if not live:
                    break
    return seconds
