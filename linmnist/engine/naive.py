"""The study's algorithm, written the naive way: the reference the engine must reproduce.

W starts at zero; each iteration takes one batch of sample indices and updates

    E = W Xb - Yb,        W <- W - (lr / B) E Xb^T

in the arithmetic of the data (float32 or float64), with the engine's own update
(``linmnist.engine.update.sgd_update``, checked against numpy's products in
tests/engine/test_update.py), so that both train the same trajectory and the comparison is
of the evaluation; then it measures, in float64, with the full products of W against every
sample as the study did:

    train_loss = 1/(2N) sum_i ||W x_i - y_i||^2
    train_acc  = mean_i [argmax W x_i == argmax y_i]     (np.argmax: first maximum on ties)
    test_acc   = the same on the test set.

Three products with the whole data per iteration: slow (``make bench`` times it against the
engine) and obviously right, which is what a reference is for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from linmnist.engine.evaluation import HISTORY_COLUMNS
from linmnist.engine.update import sgd_update


def train_naive(X, Y, X_test, Y_test, *, lr: float, batches: np.ndarray) -> pd.DataFrame:
    """History (``HISTORY_COLUMNS``) after every update, each row from float64 products.

    X, Y, X_test, Y_test are feature-major like ``linmnist.engine.sgd.train``'s; the updates
    run in ``X.dtype``; ``batches`` (iterations, B) holds the sample indices of each batch.
    The updates are the engine's, which use no BLAS, so both round the same way whatever the
    machine's thread count; the measurements use every BLAS thread.
    """
    return naive_run(X, Y, X_test, Y_test, lr=lr, batches=batches)[0]


def naive_run(
    X, Y, X_test, Y_test, *, lr: float, batches: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """``train_naive``'s history and the final weights W (to check the trajectory)."""
    X64, Y64, Xt64 = (np.asarray(a, dtype=np.float64) for a in (X, Y, X_test))
    y, y_test = np.argmax(Y, axis=0), np.argmax(Y_test, axis=0)
    W = np.zeros((Y.shape[0], X.shape[0]), dtype=X.dtype)
    XT, YT, G = np.ascontiguousarray(X.T), np.asarray(Y, dtype=X.dtype).T, np.empty_like(W)
    rows = []
    for t, idx in enumerate(batches):
        W, _ = sgd_update(W, XT, YT, idx, lr, G)
        W64 = W.astype(np.float64)
        loss = 0.5 * np.mean(np.sum((W64 @ X64 - Y64) ** 2, axis=0))
        train_acc = np.mean(np.argmax(W64 @ X64, axis=0) == y)
        test_acc = np.mean(np.argmax(W64 @ Xt64, axis=0) == y_test)
        rows.append((t, loss, train_acc, test_acc))
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS), W
