"""Compiled loops that numpy cannot fuse (numba): the classification margins of many scores.

Accuracy needs, for every recorded iteration t and sample i, the sign of the margin
z_true - max_{c != true} z_c. With numpy each step (take the true score, mask it, take the
max, compare with the error bound) is a pass over all T x 10 x M scores in memory; here a
block of samples is done in one pass while it is in cache. At batch size 1 the scores are
also updated here, by the rank-1 recurrence Z_t = Z_{t-1} - a_t K_t, so that the 10 rows
of Z_t never go to memory at all.

Each kernel writes ``correct`` (margin > 0) and ``uncertain`` (|margin| <= scale_t *
norms_i, where the float32 error bound cannot decide the sign); the caller re-scores the
uncertain ones in float64. The kernels run on one thread and release the GIL: the caller
runs one per group of samples, each after its own single-threaded product (two-threaded
BLAS would keep spinning on the cores while a kernel runs).
"""

from __future__ import annotations

import numba
import numpy as np

# Samples per block: the block's (10, BLOCK) float64 scores stay in L1 cache.
BLOCK = 256


@numba.njit(inline="always")
def _block_margins(z, lab, nrm, s, top1, top2, correct, uncertain):  # pragma: no cover
    """Margins of the scores z (k, n) of one block: writes correct and uncertain (n,).

    The best other score is the largest score unless that is the true one, then the
    second largest: two running maxima (min and max only, so the loop over samples
    vectorises) and one look-up of the true score. top1 and top2 are scratch space of z's
    dtype (max is exact in any precision); the margin is taken in float64, exactly.
    A tie for the largest score gives margin 0: uncertain, so re-scored by the caller.
    """
    n = z.shape[1]
    top1[:] = -np.inf
    top2[:] = -np.inf
    for c in range(z.shape[0]):
        zc = z[c]
        for i in range(n):
            v = zc[i]
            top2[i] = max(top2[i], min(top1[i], v))
            top1[i] = max(top1[i], v)
    for i in range(n):
        true = z[lab[i], i]
        best = top2[i] if true == top1[i] else top1[i]
        margin = np.float64(true) - np.float64(best)
        correct[i] = margin > 0
        uncertain[i] = abs(margin) <= s * nrm[i]


@numba.njit(cache=True, nogil=True)
def margins(Z, labels, norms, scale, correct, uncertain):  # pragma: no cover (compiled)
    """Margins of the scores Z (T, k, M) float32, one row of weights per t.

    labels (M,) int64, norms (M,) and scale (T,) float64; writes correct and uncertain
    (T, M) bool.
    """
    T, k, m = Z.shape
    for blk in range((m + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(m, lo + BLOCK)
        z = np.empty((k, hi - lo), dtype=Z.dtype)
        top1 = np.empty(hi - lo, dtype=Z.dtype)
        top2 = np.empty(hi - lo, dtype=Z.dtype)
        for t in range(T):
            z[:] = Z[t, :, lo:hi]
            _block_margins(
                z, labels[lo:hi], norms[lo:hi], scale[t], top1, top2,
                correct[t, lo:hi], uncertain[t, lo:hi],
            )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def running_margins(Z0, K, A, labels, norms, scale, correct, uncertain):  # pragma: no cover
    """Margins of the scores Z_t = Z0 - sum_{u <= t} A_u K_u, for t = 0..T-1.

    Parameters
    ----------
    Z0 : float32 (k, M)
        Scores before the first step.
    K : float32 (T * B, M)
        Rows x_b^T X of the batch samples, B per step.
    A : float64 (T, k, B)
        Coefficients of each step: Z_t = Z_{t-1} - A_t K_t.
    labels, norms, scale, correct, uncertain
        As for ``margins``.

    The scores are accumulated in float64, so the recurrence adds no rounding error of
    its own beyond that of Z0 and K (the caller's error bound covers those).
    """
    k, m = Z0.shape
    T, _, B = A.shape
    for blk in range((m + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(m, lo + BLOCK)
        z = np.empty((k, hi - lo))
        top1 = np.empty(hi - lo)
        top2 = np.empty(hi - lo)
        for c in range(k):
            z[c, :] = Z0[c, lo:hi]
        for t in range(T):
            for b in range(B):
                Kr = K[t * B + b, lo:hi]
                for c in range(k):
                    a = A[t, c, b]
                    zc = z[c]
                    for i in range(hi - lo):
                        zc[i] -= a * Kr[i]
            _block_margins(
                z, labels[lo:hi], norms[lo:hi], scale[t], top1, top2,
                correct[t, lo:hi], uncertain[t, lo:hi],
            )  # fmt: skip
