"""The one-pass SGD update: numpy's gathered products, to the rounding of the dtype."""

import numpy as np
import pytest

from linmnist.engine.sgd import sgd_step
from linmnist.engine.update import TILE, sgd_update


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("batch_size", [1, TILE - 1, TILE, 2 * TILE + 1, 300])
@pytest.mark.parametrize("classes", [10, 7])
def test_the_update_is_numpys_to_rounding(small_data, dtype, rtol, batch_size, classes):
    """W' and E equal sgd_step's on the gathered batch, for every remainder of the tile and
    an odd number of classes (taken two at a time), repeated indices included (the batch is
    drawn with replacement)."""
    (X, Y), _ = small_data
    X, Y = X.astype(dtype), Y[:classes].astype(dtype)
    rng = np.random.default_rng(batch_size)
    W = rng.normal(scale=0.01, size=(classes, X.shape[0])).astype(dtype)
    ids = rng.integers(0, X.shape[1], size=batch_size)
    ids[-1] = ids[0]
    expected_W, expected_E = sgd_step(W, X[:, ids], Y[:, ids], 0.01)
    got_W, got_E = sgd_update(W, np.ascontiguousarray(X.T), Y.T, ids, 0.01, np.empty_like(W))
    assert got_W.dtype == got_E.dtype == dtype
    scale = np.abs(expected_E).max()
    np.testing.assert_allclose(got_E, expected_E, rtol=0, atol=rtol * 50 * scale)
    step = np.abs(expected_W - W).max()
    np.testing.assert_allclose(
        got_W, expected_W, rtol=0, atol=max(rtol * 50 * step, 4 * np.spacing(np.abs(W).max()))
    )
    assert not np.shares_memory(got_W, W)


def test_a_run_of_updates_follows_numpys_trajectory(small_data):
    """Over 200 float32 updates the rounding differences stay at the rounding level: the
    update is contractive at a stable lr, so they do not grow."""
    (X, Y), _ = small_data
    XT, G = np.ascontiguousarray(X.T), np.empty((10, X.shape[0]), np.float32)
    batches = np.random.default_rng(0).integers(0, X.shape[1], size=(200, 50))
    W_np = W = np.zeros((10, X.shape[0]), np.float32)
    for ids in batches:
        W_np, _ = sgd_step(W_np, X[:, ids], Y[:, ids], 0.01)
        W, _ = sgd_update(W, XT, Y.T, ids, 0.01, G)
    assert np.abs(W - W_np).max() <= 1e-5 * np.abs(W_np).max()
