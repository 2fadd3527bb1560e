"""The compiled kernels (scores, lazy and running margins) against plain numpy."""

import numpy as np
import pytest

from linmnist.engine.kernels import (
    BLOCK,
    RUNNING_TILE,
    TILE,
    Anchoring,
    LazyChunk,
    RankSteps,
    Samples,
    Verdicts,
    lazy_margins,
    rank_gaps,
    running_margins,
    tile_scores,
)


def reference(Z, labels, norms, scale):
    """(correct, uncertain) of the scores Z (T, k, M), computed with numpy in float64."""
    Z = Z.astype(np.float64)
    m = Z.shape[2]
    true = Z[:, labels, np.arange(m)]
    others = Z.copy()
    others[:, labels, np.arange(m)] = -np.inf
    margin = true - others.max(axis=1)
    return margin > 0, np.abs(margin) <= scale[:, None] * norms[None, :]


@pytest.mark.parametrize(("m", "k"), [(9, 10), (8, 3)])
def test_tile_scores_are_the_float32_products(m, k):
    """Pairs of samples and an odd one out, classes padded to the tile."""
    rng = np.random.default_rng(m)
    rows = rng.normal(size=(20, 33)).astype(np.float32)
    idx = rng.choice(20, m, replace=False)
    kp = -(-k // TILE) * TILE
    W = np.zeros((kp, 33), dtype=np.float32)
    W[:k] = rng.normal(size=(k, 33))
    out = np.full((m, kp), np.nan, dtype=np.float32)
    tile_scores(rows, idx, W, out)
    np.testing.assert_allclose(out, rows[idx] @ W.T, rtol=1e-5, atol=1e-5)


def lazy_state(m, k=10, r=2):
    """A fresh sample state: every sample is scored at the first step, no projected test."""
    return Anchoring(
        room=np.full(m, -1.0), slot=np.zeros(m, dtype=np.int64), verdict=np.zeros(m, dtype=bool),
        proj_slot=np.zeros(m, dtype=np.int64), offset=np.zeros((m, k)),
        anchor_bound=np.full(m, np.inf), coords=np.zeros((m, r)), resid=np.ones(m),
    )  # fmt: skip


def run_lazy(rows, W, reach, scale, labels, norms, state, base=0, VU=None, perp=None):
    """The kernel on W (T, k, d); by default the projected test never decides (perp = inf)."""
    T, m = len(W), len(rows)
    k = W.shape[1]
    kp = -(-k // TILE) * TILE
    Wp = np.zeros((T, kp, rows.shape[1]), dtype=np.float32)
    Wp[:, :k] = W
    A = reach.shape[1]
    VU = np.zeros((T, k, state.coords.shape[1])) if VU is None else VU
    perp = np.full((T, A, k), np.inf) if perp is None else perp
    out = Verdicts(np.zeros((T, m), dtype=bool), np.zeros((T, m), dtype=bool))
    chunk = LazyChunk(Wp, scale, reach, perp, np.full((T, A), 1e-9), VU)
    scored = lazy_margins(Samples(rows, labels, norms), state, chunk, base, out)
    return *out, scored


def test_lazy_margins_score_exhausted_samples_and_keep_the_others():
    """With an infinite reach every step scores every sample: the margins of numpy. With a
    zero reach (weights that do not move) only the uncertain samples are scored again."""
    rng = np.random.default_rng(3)
    T, k, m, d = 4, 10, 2 * BLOCK + 5, 12
    rows = (rng.integers(-2, 3, (m, d)) / 2).astype(np.float32)
    W = (rng.integers(-2, 3, (T, k, d)) / 2).astype(np.float32)
    labels = rng.integers(0, k, m)
    norms = np.sqrt((rows.astype(np.float64) ** 2).sum(axis=1))
    scale = np.full(T, 1e-3)
    Z = np.einsum("tkd,md->tkm", W.astype(np.float64), rows.astype(np.float64))
    expected_correct, expected_uncertain = reference(Z, labels, norms, scale)
    assert expected_uncertain.any()  # ties (coarse values) are there
    state = lazy_state(m)
    reach = np.full((T, T, k), np.inf)
    correct, uncertain, _ = run_lazy(rows, W, reach, scale, labels, norms, state)
    np.testing.assert_array_equal(correct, expected_correct)
    np.testing.assert_array_equal(uncertain, expected_uncertain)
    # Every sample was anchored at the last step; room 0 exactly for the uncertain ones.
    assert (state.slot == T - 1).all()
    np.testing.assert_array_equal(state.room == 0, expected_uncertain[-1])
    # The same weights again with reach 0: certain samples keep their verdict unscored.
    same = np.repeat(W[-1:], 2, axis=0)
    reach = np.zeros((2, T + 2, k))
    before = state.room.copy()
    correct, uncertain, _ = run_lazy(rows, same, reach, scale[:2], labels, norms, state, base=T)
    np.testing.assert_array_equal(correct[0], expected_correct[-1])
    np.testing.assert_array_equal(uncertain[0], expected_uncertain[-1])
    kept = before > 0
    np.testing.assert_array_equal(state.slot[kept], T - 1)
    np.testing.assert_array_equal(state.slot[~kept], T + 1)
    np.testing.assert_array_equal(state.room[kept], before[kept])


def test_the_projected_test_decides_weight_changes_inside_the_span():
    """Samples in the span of U (no residual) and a reach too large for the first test:
    after the first scoring the projected test decides every sample whose margin is clear,
    and the verdicts are the float64 ones at every step."""
    rng = np.random.default_rng(5)
    T, k, m, d, r = 12, 10, 300, 40, 6
    U = np.linalg.qr(rng.normal(size=(d, r)))[0]
    coords = rng.normal(size=(m, r))
    rows = (coords @ U.T).astype(np.float32)
    W = np.cumsum(rng.normal(size=(T, k, d)) * 0.05, axis=0).astype(np.float32)
    labels = rng.integers(0, k, m)
    norms = np.sqrt((rows.astype(np.float64) ** 2).sum(axis=1))
    scale = np.full(T, 2e-5)
    # The coordinates of the stored rows, all inside the span.
    state = lazy_state(m, k, r)._replace(coords=rows.astype(np.float64) @ U, resid=np.full(m, 1e-6))
    VU = W.astype(np.float64) @ U
    reach = np.full((T, T, k), np.inf)
    correct, uncertain, scored = run_lazy(
        rows, W, reach, scale, labels, norms, state, VU=VU, perp=np.ones((T, T, k))
    )
    Z = np.einsum("tkd,md->tkm", W.astype(np.float64), rows.astype(np.float64))
    expected_correct, _ = reference(Z, labels, norms, scale)
    decided = ~uncertain
    np.testing.assert_array_equal(correct[decided], expected_correct[decided])
    assert m <= scored < 2 * m  # the first step scores all, the projected test most of the rest


@pytest.mark.parametrize("B", [1, 3])
def test_running_margins_follow_the_rank_b_recurrence(B):
    """Z_t = W_ref X - sum_{u <= t} A_u K_u with K_u = x_bu^T X from the batch's non-zero
    pixels, then the margins of every Z_t (over a whole tile and a short last one)."""
    rng = np.random.default_rng(B)
    T, k, m, d = 9, 10, RUNNING_TILE + 100, 50
    # Small integers with zeros: every K_u is exact in float32, whatever the summation order.
    rows = (rng.integers(0, 4, size=(m, d)) * (rng.random((m, d)) < 0.3)).astype(np.float32)
    Xb = rows[rng.integers(0, m, T * B)]
    nonzero = Xb != 0
    indptr = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))])
    indices = np.nonzero(nonzero)[1].astype(np.uint32)
    # Weights in multiples of 1/8: W_ref X is exact in float32 too, in any order.
    W_ref = (rng.integers(-8, 8, size=(k, d)) / 8).astype(np.float32)
    A = rng.normal(size=(T, k, B)) * 0.1
    labels = rng.integers(0, k, m)
    norms = rng.random(m)
    scale = np.full(T, 1e-3)
    correct = np.empty((T, m), dtype=bool)
    uncertain = np.empty((T, m), dtype=bool)
    steps = RankSteps(W_ref, indptr, indices, Xb[nonzero], A, scale)
    running_margins(Samples(rows, labels, norms), steps, Verdicts(correct, uncertain))
    K = Xb.astype(np.float64) @ rows.T.astype(np.float64)
    steps = np.einsum("tkb,tbm->tkm", A, K.reshape(T, B, m))
    Z0 = W_ref.astype(np.float64) @ rows.T.astype(np.float64)
    Z = Z0[None] - np.cumsum(steps, axis=0)
    expected_correct, expected_uncertain = reference(Z, labels, norms, scale)
    # The recurrence sums in a different order than cumsum: margins within 1e-12 of the
    # bound could differ, and there are none at this scale.
    np.testing.assert_array_equal(correct, expected_correct)
    np.testing.assert_array_equal(uncertain, expected_uncertain)


def test_rank_gaps_are_the_distances_to_the_rank_b_form():
    """gap_t = max_c ||W_t[c] - (W_ref - sum_{u <= t} A_u Xb_u^T)[c]||, as numpy gives it."""
    rng = np.random.default_rng(7)
    T, k, B, d = 6, 10, 3, 20
    W_ref = rng.normal(size=(k, d))
    A = rng.normal(size=(T, k, B))
    Xb = rng.normal(size=(T * B, d))
    Ws = rng.normal(size=(T, k, d)).astype(np.float32)
    rank = W_ref - np.cumsum(A @ Xb.reshape(T, B, d), axis=0)
    expected = np.sqrt(((Ws - rank) ** 2).sum(axis=2)).max(axis=1)
    np.testing.assert_allclose(rank_gaps(Ws, W_ref, A, Xb), expected, rtol=1e-12)
