"""The study's algorithm, written the naive way: the reference the engine must reproduce.

W starts at zero; each iteration takes one batch of sample indices and updates

    E = W Xb - Yb,        W <- W - (lr / B) E Xb^T

in the arithmetic of the data (float32 or float64), then measures, in float64, with the
full products of W against every sample as the study did:

    train_loss = 1/(2N) sum_i ||W x_i - y_i||^2
    train_acc  = mean_i [argmax W x_i == argmax y_i]     (np.argmax: first maximum on ties)
    test_acc   = the same on the test set.

Three products with the whole data per iteration: slow (``make bench`` times it against the
engine) and obviously right, which is what a reference is for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from linmnist.engine.evaluation import HISTORY_COLUMNS


def train_naive(X, Y, X_test, Y_test, *, lr: float, batches: np.ndarray) -> pd.DataFrame:
    """History (``HISTORY_COLUMNS``) after every update, each row from float64 products.

    X, Y, X_test, Y_test are feature-major like ``linmnist.engine.sgd.train``'s; the updates
    run in ``X.dtype``; ``batches`` (iterations, B) holds the sample indices of each batch.
    The updates run on one BLAS thread, as the engine's do, so both round the same way and
    train the same trajectory whatever the machine's thread count; the measurements use them
    all.
    """
    return naive_run(X, Y, X_test, Y_test, lr=lr, batches=batches)[0]


def naive_run(
    X, Y, X_test, Y_test, *, lr: float, batches: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """``train_naive``'s history and the final weights W (to check the trajectory)."""
    X64, Y64, Xt64 = (np.asarray(a, dtype=np.float64) for a in (X, Y, X_test))
    y, y_test = np.argmax(Y, axis=0), np.argmax(Y_test, axis=0)
    W = np.zeros((Y.shape[0], X.shape[0]), dtype=X.dtype)
    rows = []
    for t, idx in enumerate(batches):
        Xb, Yb = X[:, idx], Y[:, idx]
        with threadpool_limits(limits=1, user_api="blas"):
            E = W @ Xb - Yb
            W = W - (lr / Xb.shape[1]) * (E @ Xb.T)
        W64 = W.astype(np.float64)
        loss = 0.5 * np.mean(np.sum((W64 @ X64 - Y64) ** 2, axis=0))
        train_acc = np.mean(np.argmax(W64 @ X64, axis=0) == y)
        test_acc = np.mean(np.argmax(W64 @ Xt64, axis=0) == y_test)
        rows.append((t, loss, train_acc, test_acc))
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS), W
