"""Rates trained side by side on the same batches are the runs ``train`` makes one by one."""

import numpy as np
import pandas as pd
import pytest

from linmnist.engine.evaluation import Evaluator
from linmnist.engine.lockstep import STACK_FROM, train_rates
from linmnist.engine.sgd import train
from linmnist.engine.validation import UsageError

RATES = [0.001, 0.02, 0.3, 5.0]  # the last two diverge on the small data, at different steps


@pytest.mark.parametrize(
    ("batch_size", "eval_every", "accuracy"),
    [(1, 1, "every"), (10, 5, "every"), (50, 7, "final")],  # incremental, lazy, loss-only
)
def test_side_by_side_runs_are_the_separate_runs(small_data, batch_size, eval_every, accuracy):
    """Each rate's history, divergence and final W are train's to float32 rounding, and a run
    that diverges leaves the others going."""
    (X, Y), (Xt, Yt) = small_data
    ev = Evaluator(X, Y, Xt, Yt)
    kwargs = dict(batch_size=batch_size, iterations=40, seed=4, X_test=Xt, Y_test=Yt,
                  eval_every=eval_every, evaluator=ev, accuracy=accuracy)  # fmt: skip
    together = train_rates(X, Y, lrs=RATES, **kwargs)
    diverged = set()
    for lr, run in zip(RATES, together, strict=True):
        alone = train(X, Y, lr=lr, **kwargs)
        assert (run.lr, run.seed, run.eval_every) == (lr, 4, eval_every)
        assert run.diverged_at == alone.diverged_at
        diverged.add(run.diverged_at is not None)
        h, g = run.history, alone.history
        np.testing.assert_array_equal(h["iteration"], g["iteration"])
        np.testing.assert_allclose(h["train_loss"], g["train_loss"], rtol=2e-5)
        np.testing.assert_allclose(h[["train_acc", "test_acc"]], g[["train_acc", "test_acc"]],
                                   atol=2 / len(Xt.T))  # fmt: skip
        np.testing.assert_allclose(run.W, alone.W, rtol=1e-4, atol=1e-6)
        if batch_size < STACK_FROM:  # each rate's own compiled update: train's numbers
            np.testing.assert_array_equal(run.W, alone.W)
            pd.testing.assert_frame_equal(h, g)
    assert diverged == {True, False}


def test_each_run_gets_its_share_of_the_time(small_data):
    """Every run's seconds are positive, a diverged run's less than a finished one's."""
    (X, Y), _ = small_data
    runs = train_rates(X, Y, lrs=[0.01, 5.0], batch_size=10, iterations=200, eval_every=50)
    assert runs[1].diverged_at is not None and runs[0].diverged_at is None
    assert 0 < runs[1].seconds < runs[0].seconds


@pytest.mark.parametrize(
    ("lrs", "message"),
    [([], "non-empty"), ([0.1, 0.1], "distinct"), ([0.1, -1], "lrs"), (["a"], "lrs")],
)
def test_bad_rates_are_refused(small_data, lrs, message):
    (X, Y), _ = small_data
    with pytest.raises(UsageError, match=message):
        train_rates(X, Y, lrs=lrs, batch_size=10, iterations=5)
