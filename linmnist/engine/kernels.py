"""Compiled loops that numpy cannot fuse (numba): the classification margins of many scores.

Accuracy needs, for every recorded iteration t and sample i, the sign of the margin
z_true - max_{c != true} z_c. Three kernels give it (with helpers for the reach of the
weight changes, ``pair_reach``, the rank-B gap, ``rank_gaps``, and the float64 re-scoring,
``float64_correct``):

* ``margins``: of scores computed by a stacked float32 product (many W_t against a block of
  samples), when most samples must be scored anyway (early in training, sparse records);
* ``lazy_margins`` (the certified lazy evaluation): a sample whose margin at its last
  exact scoring exceeds what the weight change since then can move it keeps its verdict
  without a product, and so does one the projected test decides (the change's exact part
  on a few principal directions plus a bound on the rest); only the others are scored,
  each by ten dot products with the sample's row (a register tile of two samples and five
  classes keeps the compiled loop near the speed of a matrix product);
* ``running_margins`` (small batches): the scores updated by the rank-B recurrence
  Z_t = Z_{t-1} - A_t K_t, so that the 10 rows of Z_t never go to memory at all, with
  K_t = Xb_t^T X summed over the batch samples' non-zero pixels only.

Each kernel writes ``correct`` (margin > 0) and ``uncertain`` (|margin| <= scale_t *
norms_i, where the float32 error bound cannot decide the sign); the caller re-scores the
uncertain ones in float64. The kernels run on one thread and release the GIL: the caller
runs one per group of samples, each after its own single-threaded product (two-threaded
BLAS would keep spinning on the cores while a kernel runs).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from linmnist.engine.kernel_cache import heal_on_damage

# Samples per block: the block's (10, BLOCK) float64 scores stay in L1 cache.
BLOCK = 256
# Samples per block of the lazy scores: their state stays in cache through a chunk.
LAZY_BLOCK = 1024
# Samples per tile of ``running_margins``: their partial sums fill the vector registers.
RUNNING_TILE = 128
# Classes per register tile of ``tile_scores`` (the weights are padded to a multiple).
TILE = 5


class Samples(NamedTuple):
    """A group of samples: rows (M, D) float32, labels (M,) int64 and norms (M,) float64."""

    rows: np.ndarray
    labels: np.ndarray
    norms: np.ndarray


class Verdicts(NamedTuple):
    """A kernel's output, (T, M) bool: ``correct`` (margin > 0) and ``uncertain`` (|margin|
    within the float32 error bound, scale_t * norms_i)."""

    correct: np.ndarray
    uncertain: np.ndarray


class LazyChunk(NamedTuple):
    """The weights of a chunk of the lazy scores and their bounds (see ``lazy_margins``)."""

    W: np.ndarray  # (T, kp, D) float32, the classes padded to a multiple of TILE
    scale: np.ndarray  # (T,)
    reach: np.ndarray  # (T, anchors, k)
    perp: np.ndarray  # (T, anchors, k)
    rounding: np.ndarray  # (T, anchors)
    VU: np.ndarray  # (T, k, r)


class Anchoring(NamedTuple):
    """Per-sample state of the lazy scores, (M,) or (M, k) (see ``lazy_margins``); the
    kernel updates all but ``coords`` and ``resid``."""

    room: np.ndarray
    slot: np.ndarray
    verdict: np.ndarray
    proj_slot: np.ndarray
    offset: np.ndarray
    anchor_bound: np.ndarray
    coords: np.ndarray
    resid: np.ndarray


class RankSteps(NamedTuple):
    """A chunk of the incremental scores (see ``running_margins``)."""

    W_ref: np.ndarray  # (k, D) float32
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    A: np.ndarray  # (T, k, B) float64
    scale: np.ndarray  # (T,)


class Grams(NamedTuple):
    """What ``pair_reach`` needs of weights V_t and anchors A_a: cross (T, k, A, k) with
    cross[t, c, a, e] = V_t[c] . A_a[e], the Gram matrices own (T, k, k) of V_t and anchors
    (A, k, k) of A_a, and the rounding guard (T, A)."""

    cross: np.ndarray
    own: np.ndarray
    anchors: np.ndarray
    guard: np.ndarray


@numba.njit(inline="always")
def _block_margins(z, lab, nrm, s, true, best, correct, uncertain):  # pragma: no cover
    """Margins of the scores z (k, n) of one block: writes correct and uncertain (n,).

    One pass over the classes picks each sample's true score and the best other score with
    selects rather than a look-up by label, so the loop over samples vectorises. true and
    best are scratch space of z's dtype (max is exact in any precision); the margin is
    taken in float64, exactly. A tie between the true and the best other score gives
    margin 0: uncertain, so re-scored by the caller (np.argmax takes the first maximum).
    """
    n = z.shape[1]
    best[:] = -np.inf
    true[:] = 0
    for c in range(z.shape[0]):
        zc = z[c]
        for i in range(n):
            is_true = lab[i] == c
            true[i] = zc[i] if is_true else true[i]
            best[i] = max(best[i], -np.inf if is_true else zc[i])
    for i in range(n):
        margin = np.float64(true[i]) - np.float64(best[i])
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
        true = np.empty(hi - lo, dtype=Z.dtype)
        best = np.empty(hi - lo, dtype=Z.dtype)
        for t in range(T):
            z[:] = Z[t, :, lo:hi]
            _block_margins(
                z, labels[lo:hi], norms[lo:hi], scale[t], true, best,
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


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def lazy_margins(samples, state, chunk, base, out):  # pragma: no cover (compiled)
    """Margins of the weights W[t] (t = 0..T-1) of ``chunk`` for ``samples``.

    Sample i carries ``room[i]``, the exact |margin| / ||x_i|| certified at the weights of
    anchor ``slot[i]``, and its ``verdict[i]`` (margin > 0). Against an anchor a, the pair
    score z_true - z_c moves by (dw_true - dw_c) . x, at most ||dw_true - dw_c|| ||x||:
    ``reach[t, a, c]`` is the largest such norm over c' != c (per unit ||x||) from anchor a
    to W[t]. While room > reach the margin keeps its sign (first test).

    Otherwise the projected test: with the float32 scores s of the sample's last scoring
    (anchor b = ``proj_slot[i]``, margins within ``anchor_bound[i]`` of exact) and
    ``offset[i]`` = s - VU_b . u_i, the scores at W[t] are offset + VU[t] . u_i up to
    ``perp[t, b, true] * resid[i] + rounding[t, b] * norms[i]`` per pair (u_i =
    ``coords[i]``, ``resid[i]`` the norm of x_i outside the projection's span; an infinite
    bound disables the test). A sample it decides is anchored at W[t] for the first test,
    with the margin it certifies there as its room.

    A sample neither test decides is scored (float32, error at most scale[t] ||x_i||) and
    anchored at W[t] (anchor base + t) for both tests, or marked uncertain with room 0
    (scored again at the next step). The samples go ``LAZY_BLOCK`` at a time through the
    whole chunk, so that their state stays in cache while each W[t] is read once per block.
    Writes ``out`` and updates ``state``; returns the number of (step, sample) scorings.
    """
    rows, labels, norms = samples
    room, slot, verdict, proj_slot, offset, anchor_bound, coords, resid = state
    W, scale, reach, perp, rounding, VU = chunk
    correct, uncertain = out
    T = W.shape[0]
    k = reach.shape[2]
    r = VU.shape[2]
    m = rows.shape[0]
    todo = np.empty(LAZY_BLOCK, dtype=np.int64)
    z = np.empty((LAZY_BLOCK, W.shape[1]), dtype=np.float32)
    zt = np.empty(k)
    scored = 0
    for lo in range(0, m, LAZY_BLOCK):
        hi = min(m, lo + LAZY_BLOCK)
        for t in range(T):
            n = 0
            for i in range(lo, hi):
                uncertain[t, i] = False
                lab = labels[i]
                if room[i] > reach[t, slot[i], lab]:
                    correct[t, i] = verdict[i]
                    continue
                if anchor_bound[i] < np.inf:
                    b = proj_slot[i]
                    for c in range(k):
                        acc = offset[i, c]
                        for j in range(r):
                            acc += VU[t, c, j] * coords[i, j]
                        zt[c] = acc
                    low = np.inf
                    for c in range(k):
                        if c != lab:
                            low = min(low, zt[lab] - zt[c])
                    radius = (
                        anchor_bound[i] + perp[t, b, lab] * resid[i] + rounding[t, b] * norms[i]
                    )
                    if abs(low) > radius:
                        verdict[i] = low > 0
                        correct[t, i] = low > 0
                        room[i] = (abs(low) - radius) / norms[i]
                        slot[i] = base + t
                        continue
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
                slot[i] = proj_slot[i] = base + t
                anchor_bound[i] = bound
                for c in range(k):
                    acc = 0.0
                    for j in range(r):
                        acc += VU[t, c, j] * coords[i, j]
                    offset[i, c] = z[q, c] - acc
    return scored


@intrinsic
def _stack_floats(typingctx):  # pragma: no cover (compiled)
    """A float32 buffer of ``RUNNING_TILE`` entries on the stack, as a pointer.

    A numpy array lives on the heap, so the compiler keeps its entries in memory: an
    accumulation into it waits at every step for its own store. A stack buffer indexed by
    compile-time constants is promoted to registers.
    """

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(types.float32)
        size = context.get_constant(types.intp, RUNNING_TILE)
        return cgutils.alloca_once(builder, ty, size=size)

    return types.CPointer(types.float32)(), codegen


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def running_margins(samples, steps, out):  # pragma: no cover (compiled)
    """Margins of the scores Z_t = W_ref X - sum_{u <= t} A_u K_u, for t = 0..T-1.

    ``steps`` holds W_ref (k, D) float32, the weights before the first step; the T * B
    batch samples x_b in compressed rows (``indptr``, uint32 column ``indices``, float32
    ``values``), B per step: K_u = x_bu^T X; the coefficients A (T, k, B) float64 of each
    step, Z_t = Z_{t-1} - A_t K_t; and the error ``scale`` (T,). Writes ``out``.

    W_ref X and K_u are read from a tile of ``RUNNING_TILE`` samples transposed so that
    each pixel's values are contiguous, and accumulated in registers; K_u costs the batch
    sample's non-zero pixels only (a fifth of MNIST's). A float32 sum of products in any
    order, zeros skipped, has the error bound of a float32 product; the scores are
    accumulated in float64, so the recurrence adds no rounding error of its own beyond that
    of W_ref X and K.
    """
    rows, labels, norms = samples
    W_ref, indptr, indices, values, A, scale = steps
    correct, uncertain = out
    m, d = rows.shape
    T, k, B = A.shape
    n = RUNNING_TILE
    xt = np.zeros((d, n), dtype=np.float32)
    kr = numba.carray(_stack_floats(), n)
    z = np.zeros((k, n))
    true = np.empty(n)
    best = np.empty(n)
    for lo in range(0, m, n):
        w = min(m, lo + n) - lo
        for i in range(w):
            for j in range(d):
                xt[j, i] = rows[lo + i, j]
        for c in range(k):
            for i in range(n):
                kr[i] = 0
            for j in range(d):
                v = W_ref[c, j]
                x = xt[j]
                for i in range(n):
                    kr[i] += v * x[i]
            for i in range(n):
                z[c, i] = kr[i]
        for t in range(T):
            for b in range(B):
                r = t * B + b
                for i in range(n):
                    kr[i] = 0
                for p in range(indptr[r], indptr[r + 1]):
                    v = values[p]
                    x = xt[indices[p]]
                    for i in range(n):
                        kr[i] += v * x[i]
                # Over the whole tile (constant bounds keep kr in registers); the columns
                # past a short last tile are never read.
                for c in range(k):
                    a = A[t, c, b]
                    for i in range(n):
                        z[c, i] -= a * kr[i]
            _block_margins(
                z[:, :w], labels[lo : lo + w], norms[lo : lo + w], scale[t], true[:w], best[:w],
                correct[t, lo : lo + w], uncertain[t, lo : lo + w],
            )  # fmt: skip


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def float64_correct(W, train, test, steps, cols, labels, out):  # pragma: no cover (compiled)
    """out[q] = (arg-max of W[steps[q]] x == labels[q]) in float64, x the sample cols[q].

    W (T, k, D) holds the weights, train (N, D) and test the samples' rows as given (a
    column q >= N is the test row q - N); the first maximum wins ties, as np.argmax. The
    re-scoring rule for the margins the float32 bound cannot decide: a product of two
    float32 numbers is exact in float64, and the summation order is free (any order is a
    float64 evaluation, as a BLAS product's is).
    """
    k, d = W.shape[1], W.shape[2]
    n = train.shape[0]
    for q in range(len(steps)):
        w = W[steps[q]]
        i = cols[q]
        x = train[i] if i < n else test[i - n]
        best = -np.inf
        arg = 0
        for c in range(k):
            acc = 0.0
            for j in range(d):
                acc += np.float64(w[c, j]) * np.float64(x[j])
            if acc > best:
                best = acc
                arg = c
        out[q] = arg == labels[q]


@numba.njit(cache=True, nogil=True)
def pair_reach(full, inside):  # pragma: no cover (compiled)
    """(reach, perp) (T, A, k): reach[t, a, c] = max_{e != c} ||d_c - d_e|| and perp[t, a, c]
    the same of d's part outside U's span, d = V_t - A_a, each plus its rounding guard.

    ``full`` holds the ``Grams`` of V_t and A_a, ``inside`` those of the projections V U and
    A U with the guard of the part outside. d_c . d_e = own[t, c, e] - cross[t, c, a, e] -
    cross[t, e, a, c] + anchors[a, c, e], so that ||d_c - d_e||^2 = g_cc + g_ee - 2 g_ce,
    and the part outside the span is that minus the same of the projections (U
    orthonormal). Negative rounding results count as 0.
    """
    X, GV, GA, guard = full
    XU, GVU, GAU, guard_perp = inside
    T, k, A, _ = X.shape
    reach = np.empty((T, A, k))
    perp = np.empty((T, A, k))
    g = np.empty((k, k))
    gu = np.empty((k, k))
    for t in range(T):
        for a in range(A):
            for c in range(k):
                for e in range(k):
                    g[c, e] = GV[t, c, e] - X[t, c, a, e] - X[t, e, a, c] + GA[a, c, e]
                    gu[c, e] = GVU[t, c, e] - XU[t, c, a, e] - XU[t, e, a, c] + GAU[a, c, e]
            for c in range(k):
                full = 0.0
                outside = 0.0
                for e in range(k):
                    if e != c:
                        p2 = g[c, c] + g[e, e] - 2 * g[c, e]
                        pu = gu[c, c] + gu[e, e] - 2 * gu[c, e]
                        full = max(full, p2)
                        outside = max(outside, p2 - pu)
                reach[t, a, c] = np.sqrt(full + guard[t, a]) * (1 + 1e-6)
                perp[t, a, c] = np.sqrt(outside + guard_perp[t, a]) * (1 + 1e-6)
    return reach, perp


@numba.njit(cache=True, nogil=True)
def rank_gaps(Ws, W_ref, A, Xb):  # pragma: no cover (compiled)
    """gap[t] = max_c ||Ws[t, c] - R_t[c]|| with R_t = W_ref - sum_{u <= t} A_u Xb_u^T.

    Ws (T, k, D) are the trained weights, A (T, k, B) the update coefficients, Xb (T * B, D)
    float64 the batch samples: the distance of the trained weights to their rank-B form,
    in one pass instead of T stored matrices.
    """
    T, k, D = Ws.shape
    B = A.shape[2]
    R = W_ref.copy()
    gap = np.empty(T)
    for t in range(T):
        worst = 0.0
        for c in range(k):
            for b in range(B):
                a = A[t, c, b]
                x = Xb[t * B + b]
                for j in range(D):
                    R[c, j] -= a * x[j]
            s = 0.0
            for j in range(D):
                e = np.float64(Ws[t, c, j]) - R[c, j]
                s += e * e
            worst = max(worst, s)
        gap[t] = np.sqrt(worst)
    return gap


heal_on_damage(
    margins, tile_scores, lazy_margins, running_margins, float64_correct, pair_reach, rank_gaps
)
