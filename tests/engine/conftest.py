"""The engine tests' reference: the study's naive algorithm, run once per configuration.

``naive_case(dtype, batch_size)`` is a ``NaiveCase``: the data in ``dtype``, the batches and
the history that ``linmnist.engine.naive.train_naive`` (float64 products with the whole data
after every update) gives on them. It is cached for the session, so every test comparing
the engine with the naive evaluation on one configuration shares one oracle run.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from linmnist.engine.evaluation import Evaluator
from linmnist.engine.naive import train_naive
from linmnist.engine.sgd import sample_batches

# 1,000 + 250 samples: the engine still meets margins its float32 bound cannot decide (and
# re-scores them in float64) at batch sizes 3 to 10. 300 iterations: at least two chunks of
# the incremental scores for every batch size below INCREMENTAL_BELOW (256 at B = 1).
N_TRAIN, N_TEST = 1000, 250
ITERATIONS = 300
LR = 0.004
SEED = 5


@dataclass(frozen=True)
class NaiveCase:
    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    lr: float
    batches: np.ndarray
    history: pd.DataFrame

    def run_kwargs(self) -> dict:
        """``train``'s arguments that replay this run (with its test set and dtype)."""
        iterations, batch_size = self.batches.shape
        return dict(
            lr=self.lr, batch_size=batch_size, iterations=iterations, batches=self.batches,
            X_test=self.X_test, Y_test=self.Y_test, dtype=self.X.dtype,
        )  # fmt: skip


@pytest.fixture(scope="session")
def naive_case(synthetic):
    """``naive_case(dtype, batch_size)``: the oracle run of that configuration, made once."""
    data, runs = {}, {}

    def get(dtype, batch_size: int) -> NaiveCase:
        dtype, batch_size = np.dtype(dtype), int(batch_size)
        if dtype not in data:
            (X, Y), (Xt, Yt) = synthetic(N_TRAIN, N_TEST)
            X, Y, Xt, Yt = (a.astype(dtype) for a in (X, Y, Xt, Yt))
            X[:50], Xt[:50] = 0, 0  # pixels zero everywhere are left out of the products
            for a in (X, Y, Xt, Yt):
                a.flags.writeable = False
            data[dtype] = X, Y, Xt, Yt
        if (dtype, batch_size) not in runs:
            X, Y, Xt, Yt = data[dtype]
            batches = sample_batches(
                N_TRAIN, batch_size=batch_size, iterations=ITERATIONS, seed=SEED
            )
            batches.flags.writeable = False
            # Its many small products run on one BLAS thread: on a busy machine, threads
            # waiting for each other at every product would make it ten times slower.
            with threadpool_limits(limits=1, user_api="blas"):
                history = train_naive(X, Y, Xt, Yt, lr=LR, batches=batches)
            runs[dtype, batch_size] = NaiveCase(X, Y, Xt, Yt, LR, batches, history)
        case = runs[dtype, batch_size]
        return NaiveCase(**{**vars(case), "history": case.history.copy()})

    return get


@pytest.fixture(scope="session")
def small_evaluators(small_data):
    """Evaluators of ``small_data``: ``[True]`` with its test set, ``[False]`` without it. The
    runs of a test whose subject is not the evaluator's set-up share them and skip its
    per-dataset work (0.15 s a run): a shared evaluator gives the same histories
    (``test_sgd.test_a_shared_evaluator_gives_the_same_runs``)."""
    (X, Y), (Xt, Yt) = small_data
    return {True: Evaluator(X, Y, Xt, Yt), False: Evaluator(X, Y)}
