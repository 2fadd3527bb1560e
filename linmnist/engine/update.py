"""The minibatch SGD update in one pass over the batch's samples (numba).

The update of ``linmnist.engine.sgd`` (the study's):

    E = W Xb - Yb,        W' = W - (lr / B) E Xb^T.

With numpy it is a gather of the batch (a copy of its B samples) and two skinny products
that each read that copy; at B = 1000 the copy costs as much as both products. Here each
sample x_i is read once, straight from the data set: its 10 errors e_i = W x_i - y_i
(dot products) and its share e_i x_i^T of the gradient are computed while x_i is in L1
cache, four samples at a time (one load of a row of W or of G serves four). The sums run in
another order than BLAS's, so W' agrees with numpy's to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np

from linmnist.engine.kernel_cache import heal_on_damage

# Samples whose errors and gradient shares are computed together.
TILE = 4


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _accumulate(W, XT, YT, ids, E, G):  # pragma: no cover (compiled)
    """E[:, b] = W x_b - y_b for the batch's samples x_b = XT[ids[b]], and G = E Xb^T."""
    k, d = W.shape
    zero = W.dtype.type(0)
    G[:] = zero
    n = ids.shape[0]
    full = n - n % TILE
    for b in range(0, full, TILE):
        i0, i1, i2, i3 = ids[b], ids[b + 1], ids[b + 2], ids[b + 3]
        x0, x1, x2, x3 = XT[i0], XT[i1], XT[i2], XT[i3]
        for c in range(k):
            w = W[c]
            s0 = s1 = s2 = s3 = zero
            for j in range(d):
                s0 += w[j] * x0[j]
                s1 += w[j] * x1[j]
                s2 += w[j] * x2[j]
                s3 += w[j] * x3[j]
            e0, e1 = s0 - YT[i0, c], s1 - YT[i1, c]
            e2, e3 = s2 - YT[i2, c], s3 - YT[i3, c]
            E[c, b], E[c, b + 1], E[c, b + 2], E[c, b + 3] = e0, e1, e2, e3
            g = G[c]
            for j in range(d):
                g[j] += e0 * x0[j] + e1 * x1[j] + e2 * x2[j] + e3 * x3[j]
    for b in range(full, n):
        i = ids[b]
        x = XT[i]
        for c in range(k):
            s = zero
            for j in range(d):
                s += W[c, j] * x[j]
            e = s - YT[i, c]
            E[c, b] = e
            for j in range(d):
                G[c, j] += e * x[j]


heal_on_damage(_accumulate)


def sgd_update(W: np.ndarray, XT: np.ndarray, YT: np.ndarray, ids: np.ndarray, lr: float,
               G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(W - (lr / B) E Xb^T, E) with E = W Xb - Yb, for the batch ``ids`` (B sample indices).

    XT (N, D) and YT (N, 10) hold one sample per row (XT C-contiguous: each sample read as
    one run of memory); W (10, D) is in their dtype; G (10, D) is scratch space. Returns new
    arrays (callers may keep them).
    """
    E = np.empty((W.shape[0], len(ids)), dtype=W.dtype)
    _accumulate(W, XT, YT, ids, E, G)
    return W - W.dtype.type(lr / len(ids)) * G, E


__all__ = ["TILE", "sgd_update"]
