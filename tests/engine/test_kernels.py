"""The compiled margin kernels against plain numpy."""

import numpy as np
import pytest

from linmnist.engine.kernels import BLOCK, margins, running_margins


def reference(Z, labels, norms, scale):
    """(correct, uncertain) of the scores Z (T, k, M), computed with numpy in float64."""
    Z = Z.astype(np.float64)
    m = Z.shape[2]
    true = Z[:, labels, np.arange(m)]
    others = Z.copy()
    others[:, labels, np.arange(m)] = -np.inf
    margin = true - others.max(axis=1)
    return margin > 0, np.abs(margin) <= scale[:, None] * norms[None, :]


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    T, k, m = 7, 10, 2 * BLOCK + 37  # blocks and a partial one
    # Coarse values so that ties and margins at the bound occur.
    Z = (rng.integers(-4, 5, (T, k, m)) / 4).astype(np.float32)
    labels = rng.integers(0, k, m)
    norms = rng.random(m)
    scale = rng.random(T)
    return Z, labels, norms, scale


def test_margins_equal_numpy_including_ties(scores):
    Z, labels, norms, scale = scores
    T, _, m = Z.shape
    correct = np.zeros((T, m), dtype=bool)
    uncertain = np.zeros((T, m), dtype=bool)
    margins(Z, labels, norms, scale, correct, uncertain)
    expected_correct, expected_uncertain = reference(Z, labels, norms, scale)
    np.testing.assert_array_equal(correct, expected_correct)
    np.testing.assert_array_equal(uncertain, expected_uncertain)
    # A tie at the top involving the true class is neither correct nor certain.
    top = Z.max(axis=1)
    tied = (Z == top[:, None, :]).sum(axis=1) > 1
    true_on_top = Z[:, labels, np.arange(m)] == top
    assert np.any(tied & true_on_top)
    assert not np.any(correct[tied & true_on_top])
    assert np.all(uncertain[tied & true_on_top])


def test_margins_write_into_strided_views(scores):
    """The evaluator hands each thread a column slice of its output arrays."""
    Z, labels, norms, scale = scores
    T, _, m = Z.shape
    correct = np.zeros((T, m + 10), dtype=bool)
    uncertain = np.zeros((T, m + 10), dtype=bool)
    margins(Z, labels, norms, scale, correct[:, 5 : m + 5], uncertain[:, 5 : m + 5])
    expected_correct, expected_uncertain = reference(Z, labels, norms, scale)
    np.testing.assert_array_equal(correct[:, 5 : m + 5], expected_correct)
    np.testing.assert_array_equal(uncertain[:, 5 : m + 5], expected_uncertain)
    assert not correct[:, :5].any() and not uncertain[:, m + 5 :].any()


@pytest.mark.parametrize("B", [1, 3])
def test_running_margins_follow_the_rank_b_recurrence(B):
    """Z_t = Z0 - sum_{u <= t} A_u K_u, then the margins of every Z_t."""
    rng = np.random.default_rng(B)
    T, k, m = 9, 10, BLOCK + 100
    Z0 = rng.normal(size=(k, m)).astype(np.float32)
    K = rng.normal(size=(T * B, m)).astype(np.float32)
    A = rng.normal(size=(T, k, B)) * 0.1
    labels = rng.integers(0, k, m)
    norms = rng.random(m)
    scale = np.full(T, 1e-3)
    correct = np.empty((T, m), dtype=bool)
    uncertain = np.empty((T, m), dtype=bool)
    running_margins(Z0, K, A, labels, norms, scale, correct, uncertain)
    steps = np.einsum("tkb,tbm->tkm", A, K.astype(np.float64).reshape(T, B, m))
    Z = Z0.astype(np.float64)[None] - np.cumsum(steps, axis=0)
    expected_correct, expected_uncertain = reference(Z, labels, norms, scale)
    # The recurrence sums in a different order than cumsum: margins within 1e-12 of the
    # bound could differ, and there are none at this scale.
    np.testing.assert_array_equal(correct, expected_correct)
    np.testing.assert_array_equal(uncertain, expected_uncertain)
