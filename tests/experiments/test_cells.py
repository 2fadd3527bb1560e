"""One grid cell's computation: a run per seed, fidelity seeds evaluated at every iteration."""

import numpy as np
import pandas as pd
import pytest

from linmnist.engine.sgd import draw_subset, train
from linmnist.experiments.cells import eval_period, train_seeds


def test_fidelity_seeds_are_evaluated_every_iteration_the_others_thinned(small_data):
    """Seed 0 gets one history row per iteration, the others every eval_every and the last."""
    (X, Y), (Xt, Yt) = small_data
    runs = train_seeds(
        X,
        Y,
        X_test=Xt,
        Y_test=Yt,
        lr=0.01,
        batch_size=10,
        iterations=25,
        seeds=[0, 3],
        fidelity_seeds=[0],
        eval_every=10,
    )
    assert [r.seed for r in runs] == [0, 3]
    assert [r.eval_every for r in runs] == [1, 10]
    assert runs[0].history["iteration"].tolist() == list(range(25))
    assert runs[1].history["iteration"].tolist() == [0, 10, 20, 24]
    assert runs[1].history["test_acc"].notna().all()
    assert eval_period(3, fidelity_seeds=[0], eval_every=10) == 10


def test_seeds_equal_independent_runs(small_data):
    """Each seed's run is exactly linmnist.engine.sgd.train with that seed."""
    (X, Y), _ = small_data
    runs = train_seeds(X, Y, lr=0.01, batch_size=5, iterations=12, seeds=[2, 5], fidelity_seeds=[])
    alone = train(X, Y, lr=0.01, batch_size=5, iterations=12, seed=5)
    pd.testing.assert_frame_equal(runs[1].history, alone.history)
    np.testing.assert_array_equal(runs[1].W, alone.W)
    assert not np.array_equal(runs[0].W, runs[1].W)


def test_each_seed_trains_on_its_own_subset(small_data):
    """With n_prime, seed s trains (and is measured) on draw_subset(N, n_prime, seed=s)."""
    (X, Y), (Xt, Yt) = small_data
    runs = train_seeds(
        X, Y, X_test=Xt, Y_test=Yt, n_prime=50, lr=0.01, batch_size=20, iterations=8, seeds=[0, 1]
    )
    for run in runs:
        subset = draw_subset(X.shape[1], 50, seed=run.seed)
        alone = train(
            X[:, subset],
            Y[:, subset],
            X_test=Xt,
            Y_test=Yt,
            lr=0.01,
            batch_size=20,
            iterations=8,
            seed=run.seed,
            eval_every=run.eval_every,
        )
        pd.testing.assert_frame_equal(run.history, alone.history)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": []}, "seeds must be a non-empty sequence of distinct integers"),
        ({"seeds": [1, 1]}, "seeds must be a non-empty sequence of distinct integers"),
        ({"seeds": [1], "fidelity_seeds": [0]}, r"fidelity_seeds must be a subset of seeds \[1\]"),
    ],
)
def test_wrong_seeds_are_refused(small_data, kwargs, message):
    """Seeds must be distinct and the fidelity seeds among them."""
    (X, Y), _ = small_data
    with pytest.raises(ValueError, match=message):
        train_seeds(X, Y, lr=0.01, batch_size=5, iterations=2, **kwargs)
