"""Compiled loops that numpy cannot fuse (numba): the classification margins of many scores.

The sign of the margin z_true - max_{c != true} z_c of every recorded W_t and sample comes
from ``margins`` (scores of a stacked float32 product), ``lazy_margins`` (the certified lazy
evaluation: only samples the weight change may have flipped are scored) or
``running_margins`` (small batches: Z_t = Z_{t-1} - A_t K_t, K_t = Xb_t^T X over the batch
samples' non-zero pixels). Each writes ``correct`` (margin > 0) and ``uncertain`` (|margin|
<= scale_t norms_i: the float32 bound cannot decide), which the caller re-scores in float64
(``float64_correct``). The kernels run on one thread and release the GIL.
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
    """A kernel's output (T, M): margin > 0, and |margin| within scale_t * norms_i."""

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
    """Per-sample state of ``lazy_margins``, (M,) or (M, k); it updates all but coords and resid."""

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
    """``pair_reach``'s cross[t, c, a, e] = V_t[c] . A_a[e], the Gram matrices own (T, k, k) of
    V_t and anchors (A, k, k) of A_a, and the rounding guard (T, A)."""

    cross: np.ndarray
    own: np.ndarray
    anchors: np.ndarray
    guard: np.ndarray


@numba.njit(inline="always")
def _block_margins(z, lab, nrm, s, true, best, correct, uncertain):  # pragma: no cover
    """Margins of one block's scores z (k, n) into correct and uncertain (n,): the true and best
    other scores picked with selects (the loop vectorises), the margin in float64, exactly. A tie
    gives margin 0: uncertain, re-scored by the caller (np.argmax takes the first)."""
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
    """Margins of the scores Z (T, k, M) float32 into correct and uncertain (T, M)."""
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
    """out[q, c] = rows[idx[q]] . W[c] in float32, W (kp, d) padded to ``TILE`` classes: two samples
    x five classes per pass, ten independent sums (the error bound holds in any order)."""
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
    """Margins of the weights W[t] of ``chunk`` for ``samples``; returns the scorings made.

    Sample i carries ``room[i]``, its |margin| / ||x_i|| certified at anchor ``slot[i]``, and
    ``verdict[i]``. ``reach[t, a, c]`` bounds how far a pair score z_c - z_e moves per unit
    ||x|| from anchor a to W[t]: while room > reach the verdict holds (first test).
    Otherwise the projected test: the scores at W[t] are ``offset[i]`` + VU[t] . u_i (u_i =
    ``coords[i]``) up to ``anchor_bound[i] + perp[t, b, true] resid[i] + rounding[t, b]
    norms[i]``, b = ``proj_slot[i]`` (an infinite bound disables it); a sample it decides is
    anchored at W[t] with the margin it certifies. The others are scored (float32, error at
    most scale[t] ||x_i||) and anchored at W[t] (anchor base + t) for both tests, or marked
    uncertain. The samples go ``LAZY_BLOCK`` at a time through the chunk (state in cache).
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
    """A float32 buffer of ``RUNNING_TILE`` entries on the stack: indexed by compile-time
    constants it is promoted to registers (a heap array's accumulation waits for its stores)."""

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(types.float32)
        size = context.get_constant(types.intp, RUNNING_TILE)
        return cgutils.alloca_once(builder, ty, size=size)

    return types.CPointer(types.float32)(), codegen


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def running_margins(samples, steps, out):  # pragma: no cover (compiled)
    """Margins of the scores Z_t = W_ref X - sum_{u <= t} A_u K_u, for t = 0..T-1.

    ``steps``: W_ref (k, D) float32; the T * B batch samples in compressed rows (``indptr``,
    uint32 ``indices``, float32 ``values``), K_u = x_bu^T X; A (T, k, B) float64; ``scale``.
    W_ref X and K_u are read from a tile of ``RUNNING_TILE`` samples transposed (each pixel's
    values contiguous) and accumulated in registers, in float32 (any order has a product's
    error bound); Z accumulates in float64 and adds no rounding of its own.
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
    """out[q] = (arg-max of W[steps[q]] x == labels[q]) in float64 (first maximum on ties), x the
    sample cols[q] (train rows, then test rows): any order is a float64 evaluation."""
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
    """(reach, perp) (T, A, k): max_{e != c} ||d_c - d_e||, d = V_t - A_a, and the same of d's
    part outside U's span, each with its rounding guard, from the ``Grams`` ``full`` (of V, A)
    and ``inside`` (of V U, A U): d_c . d_e = own[t, c, e] - cross[t, c, a, e] -
    cross[t, e, a, c] + anchors[a, c, e]; the part outside is the difference (U orthonormal)."""
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
    """gap[t] = max_c ||Ws[t, c] - R_t[c]||, R_t = W_ref - sum_{u <= t} A_u Xb_u^T: the distance
    of the trained weights to their rank-B form (Xb (T * B, D) float64), in one pass."""
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
