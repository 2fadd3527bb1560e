"""The study's algorithm, written the naive way: the reference the engine must reproduce.

From W = 0, each batch updates W <- W - (lr / B) (W Xb - Yb) Xb^T (``update.sgd_update``, the
engine's own), then the loss and accuracies come from float64 products of W with every
sample, as the study did: slow and obviously right.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from linmnist.engine.evaluation import HISTORY_COLUMNS
from linmnist.engine.update import sgd_update


def train_naive(X, Y, X_test, Y_test, *, lr: float, batches: np.ndarray) -> pd.DataFrame:
    """History after every update of ``batches``, each row from float64 products."""
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
