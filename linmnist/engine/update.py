"""The minibatch SGD update in one pass over the batch's samples (numba).

The update of ``linmnist.engine.sgd`` (the study's):

    E = W Xb - Yb,        W' = W - (lr / B) E Xb^T.

With numpy it is a gather of the batch (a copy of its B samples) and two skinny products
that each read that copy; at B = 1000 the copy costs as much as both products. Here each
sample x_i is read once, straight from the data set: its 10 errors e_i = W x_i - y_i
(dot products) and its share e_i x_i^T of the gradient are computed while x_i is in L1
cache, four samples and two classes at a time (one load of a sample's pixels serves two
classes, one load of a row of W or of G four samples). The sums run in
another order than BLAS's, so W' agrees with numpy's to float32 rounding, not bit for bit.

Measured on the 2-core AMD EPYC (Zen 3, ~3.1 GHz) of issue 25, one thread, MNIST at B = 1000:
with the samples in cache the 31 MFLOP of a step take ~0.5 ms, about 60% of the AVX2 FMA
peak (the error loop at ~4.5 cycles an iteration of 8 FMAs, whose floor is 4; the gradient
loop, with its two stores, at ~6); the rows gathered from DRAM add ~0.3 ms, as much as reading
them alone. A software prefetch of the next tiles' rows (llvm.prefetch, one to four tiles
ahead, spread over the class pairs) saved at most 5-8% on random data and nothing measurable
on MNIST, so there is none.
Rows, weights and scratch that start 16 bytes past a cache line, as numpy allocates them (the
data set's always), make half the 32-byte loads straddle two lines: 5-10% slower each, ~20%
together. The new weights are formed in the same call, not by numpy (~5 us a step, a quarter
of the update at B = 10).
"""

from __future__ import annotations

import numba
import numpy as np

from linmnist.engine.kernel_cache import heal_on_damage

# Samples whose errors and gradient shares are computed together.
TILE = 4


@numba.njit(nogil=True, fastmath={"reassoc", "contract"})
def _class_pair(W, YT, c, xs, ids, b, E, G):  # pragma: no cover (compiled)
    """The errors of classes c and c + 1 on the tile's samples xs = (x0, x1, x2, x3) (rows
    ids[b : b + 4]) into E, and their shares of the gradient added to G's rows c and c + 1.

    Eight sums at once (two rows of W against four samples): each load of a sample's pixels
    serves two classes, each load of a row of W four samples."""
    x0, x1, x2, x3 = xs
    w, v = W[c], W[c + 1]
    zero = W.dtype.type(0)
    s0 = s1 = s2 = s3 = t0 = t1 = t2 = t3 = zero
    for j in range(W.shape[1]):
        a0, a1, a2, a3 = x0[j], x1[j], x2[j], x3[j]
        s0 += w[j] * a0
        s1 += w[j] * a1
        s2 += w[j] * a2
        s3 += w[j] * a3
        t0 += v[j] * a0
        t1 += v[j] * a1
        t2 += v[j] * a2
        t3 += v[j] * a3
    i0, i1, i2, i3 = ids[b], ids[b + 1], ids[b + 2], ids[b + 3]
    e0, e1, e2, e3 = s0 - YT[i0, c], s1 - YT[i1, c], s2 - YT[i2, c], s3 - YT[i3, c]
    f0, f1 = t0 - YT[i0, c + 1], t1 - YT[i1, c + 1]
    f2, f3 = t2 - YT[i2, c + 1], t3 - YT[i3, c + 1]
    E[c, b], E[c, b + 1], E[c, b + 2], E[c, b + 3] = e0, e1, e2, e3
    E[c + 1, b], E[c + 1, b + 1], E[c + 1, b + 2], E[c + 1, b + 3] = f0, f1, f2, f3
    g, h = G[c], G[c + 1]
    for j in range(W.shape[1]):
        a0, a1, a2, a3 = x0[j], x1[j], x2[j], x3[j]
        g[j] += e0 * a0 + e1 * a1 + e2 * a2 + e3 * a3
        h[j] += f0 * a0 + f1 * a1 + f2 * a2 + f3 * a3


@numba.njit(nogil=True, fastmath={"reassoc", "contract"})
def _one_sample(W, YT, c, x, i, b, E, G):  # pragma: no cover (compiled)
    """The error of class c on the sample x (row i, column b of E), its share added to G[c]."""
    s = W.dtype.type(0)
    for j in range(W.shape[1]):
        s += W[c, j] * x[j]
    e = s - YT[i, c]
    E[c, b] = e
    for j in range(W.shape[1]):
        G[c, j] += e * x[j]


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _accumulate(W, XT, YT, ids, scale, E, G, W_next):  # pragma: no cover (compiled)
    """E[:, b] = W x_b - y_b for the batch's samples x_b = XT[ids[b]], G = E Xb^T and
    W_next = W - scale G."""
    k = W.shape[0]
    G[:] = W.dtype.type(0)
    n = ids.shape[0]
    full = n - n % TILE
    for b in range(0, full, TILE):
        xs = (XT[ids[b]], XT[ids[b + 1]], XT[ids[b + 2]], XT[ids[b + 3]])
        for c in range(0, k - 1, 2):
            _class_pair(W, YT, c, xs, ids, b, E, G)
        if k % 2:  # the last class of an odd number, a sample at a time
            for q in range(TILE):
                _one_sample(W, YT, k - 1, xs[q], ids[b + q], b + q, E, G)
    for b in range(full, n):
        for c in range(k):
            _one_sample(W, YT, c, XT[ids[b]], ids[b], b, E, G)
    for c in range(k):
        for j in range(W.shape[1]):
            W_next[c, j] = W[c, j] - scale * G[c, j]


heal_on_damage(_accumulate)


def sgd_update(W: np.ndarray, XT: np.ndarray, YT: np.ndarray, ids: np.ndarray, lr: float,
               G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(W - (lr / B) E Xb^T, E) with E = W Xb - Yb, for the batch ``ids`` (B sample indices).

    XT (N, D) and YT (N, 10) hold one sample per row (XT C-contiguous: each sample read as
    one run of memory); W (10, D) is in their dtype; G (10, D) is scratch space. Returns new
    arrays (callers may keep them).
    """
    E = np.empty((W.shape[0], len(ids)), dtype=W.dtype)
    W_next = np.empty_like(W)
    _accumulate(W, XT, YT, ids, W.dtype.type(lr / len(ids)), E, G, W_next)
    return W_next, E


__all__ = ["TILE", "sgd_update"]
