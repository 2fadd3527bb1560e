"""Compiled loops that numpy cannot fuse (numba): the classification margins of many scores.

Accuracy needs, for every recorded iteration t and sample i, the sign of the margin
z_true - max_{c != true} z_c. Three kernels give it:

* ``margins``: of scores computed by a stacked float32 product (many W_t against a block of
  samples), when most samples must be scored anyway (early in training, sparse records);
* ``lazy_margins`` (the certified lazy evaluation): a sample whose margin at its last
  exact scoring exceeds what the weight change since then can move it keeps its verdict
  without a product; only the others are scored, each by ten dot products with the
  sample's row (a register tile of two samples and five classes keeps the compiled loop
  near the speed of a matrix product);
* ``running_margins`` (small batches): the scores updated by the rank-B recurrence
  Z_t = Z_{t-1} - A_t K_t, so that the 10 rows of Z_t never go to memory at all.

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
# Classes per register tile of ``tile_scores`` (the weights are padded to a multiple).
TILE = 5


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


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def tile_scores(rows, idx, W, out):  # pragma: no cover (compiled)
    """out[q, c] = rows[idx[q]] . W[c] in float32, for q < len(idx).

    W (kp, d) holds the weights padded with zero rows to a multiple of ``TILE`` classes.
    Two samples times five classes per pass over d: each loaded x_j serves five classes
    and each w_cj two samples, in ten independent sums that the compiler vectorises (the
    summation order is free: the float32 error bound holds for any order).
    """
    kp, d = W.shape
    m = len(idx)
    for q in range(0, m - 1, 2):
        x0 = rows[idx[q]]
        x1 = rows[idx[q + 1]]
        for c in range(0, kp, TILE):
            w0, w1, w2, w3, w4 = W[c], W[c + 1], W[c + 2], W[c + 3], W[c + 4]
            a0 = a1 = a2 = a3 = a4 = b0 = b1 = b2 = b3 = b4 = np.float32(0)
            for j in range(d):
                u = x0[j]
                v = x1[j]
                a0 += u * w0[j]
                b0 += v * w0[j]
                a1 += u * w1[j]
                b1 += v * w1[j]
                a2 += u * w2[j]
                b2 += v * w2[j]
                a3 += u * w3[j]
                b3 += v * w3[j]
                a4 += u * w4[j]
                b4 += v * w4[j]
            out[q, c], out[q, c + 1], out[q, c + 2], out[q, c + 3], out[q, c + 4] = (
                a0, a1, a2, a3, a4
            )  # fmt: skip
            out[q + 1, c], out[q + 1, c + 1], out[q + 1, c + 2] = b0, b1, b2
            out[q + 1, c + 3], out[q + 1, c + 4] = b3, b4
    if m % 2:
        x0 = rows[idx[m - 1]]
        for c in range(kp):
            acc = np.float32(0)
            for j in range(d):
                acc += x0[j] * W[c, j]
            out[m - 1, c] = acc


@numba.njit(cache=True, nogil=True)
def lazy_margins(
    rows, W, reach, scale, labels, norms, room, slot, verdict, base, correct, uncertain, todo, z
):  # pragma: no cover (compiled)
    """Margins of the weights W[t] (t = 0..T-1) for the samples ``rows`` (M, d) float32.

    Sample i carries ``room[i]``, the exact |margin| / ||x_i|| certified at its last
    scoring, the weights of that scoring (anchor ``slot[i]``) and its ``verdict[i]``
    (margin > 0). Against an anchor a, the pair score z_true - z_c moves by
    (dw_true - dw_c) . x, at most ||dw_true - dw_c|| ||x||: ``reach[t, a, c]`` is the
    largest such norm over c' != c (per unit ||x||) from anchor a to W[t]. While
    room > reach the margin keeps its sign; otherwise the sample is scored (float32, error
    at most scale[t] ||x_i||), becomes anchored at W[t] (anchor base + t) and gets its new
    room, or is marked uncertain with room 0 (scored again at the next step).
    All per-sample arrays are (M,), correct and uncertain (T, M); todo (M,) int64 and z
    (M, kp) float32 are scratch space. Returns the number of (step, sample) scorings.
    """
    k = reach.shape[2]
    scored = 0
    for t in range(W.shape[0]):
        n = 0
        for i in range(rows.shape[0]):
            if room[i] > reach[t, slot[i], labels[i]]:
                correct[t, i] = verdict[i]
                uncertain[t, i] = False
            else:
                todo[n] = i
                n += 1
        scored += n
        tile_scores(rows, todo[:n], W[t], z)
        for q in range(n):
            i = todo[q]
            lab = labels[i]
            best = -np.inf
            for c in range(k):
                if c != lab:
                    best = max(best, z[q, c])
            margin = np.float64(z[q, lab]) - np.float64(best)
            bound = scale[t] * norms[i]
            verdict[i] = margin > 0
            correct[t, i] = margin > 0
            uncertain[t, i] = abs(margin) <= bound
            room[i] = (abs(margin) - bound) / norms[i] if abs(margin) > bound else 0.0
            slot[i] = base + t
    return scored


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
