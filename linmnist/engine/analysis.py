"""Analytic anchors of the study: the closed-form optimum and the stability threshold.

Both come from the second moment S = X X^T of the training inputs (D x D, small):

* the quadratic loss is minimised by any W with W S = Y X^T (the normal equations);
  we take the minimum-norm one, W* = (Y X^T) S^+, since S is singular on MNIST (pixels
  that are zero in every image);
* full-batch gradient descent on it, W <- W - lr (W S - Y X^T) / N, is stable only for
  lr < 2 / lambda_max(S / N).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linmnist.engine.evaluation import check_data, check_test_data, with_bias_row
from linmnist.engine.validation import UsageError, check_bool


@dataclass
class LeastSquares:
    """Closed-form minimiser of the quadratic loss, with its training loss and accuracies
    (fractions; test_acc is NaN without a test set)."""

    W: np.ndarray  # (10, D)
    b: np.ndarray | None  # (10,), when fitted with ``bias=True``
    loss: float
    train_acc: float
    test_acc: float


@dataclass
class Stability:
    """Largest eigenvalue of X X^T / N and the gradient-descent threshold 2 / lambda_max."""

    lambda_max: float
    lr_max: float


def _pinv_psd(S: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a symmetric positive semi-definite matrix via its eigenbasis."""
    vals, vecs = np.linalg.eigh(S)
    keep = vals > vals[-1] * S.shape[0] * np.finfo(S.dtype).eps
    return (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T


def least_squares(
    X: np.ndarray,
    Y: np.ndarray,
    X_test: np.ndarray | None = None,
    Y_test: np.ndarray | None = None,
    *,
    bias: bool = False,
) -> LeastSquares:
    """The minimum-norm W (and b) minimising 1/(2N) sum ||W x + b - y||^2, with its metrics.

    The metrics are computed in float64 from the scores W X directly (one product per set).
    """
    bias = check_bool("bias", bias)
    X, Y = check_data(X, Y, "X", "Y")
    X_test, Y_test = check_test_data(X_test, Y_test, X, Y)
    Xb = with_bias_row(np.asarray(X, dtype=np.float64), bias)
    Y64 = Y.astype(np.float64)
    # W* = Y X^T (X X^T)^+ = Y (X^T X)^+ X^T: the second form inverts an N x N matrix
    # instead of a D x D one, cheaper when there are fewer samples than inputs.
    if Xb.shape[1] < Xb.shape[0]:
        W = (Y64 @ _pinv_psd(Xb.T @ Xb)) @ Xb.T
    else:
        W = (Y64 @ Xb.T) @ _pinv_psd(Xb @ Xb.T)
    scores = W @ Xb
    test_acc = np.nan
    if X_test is not None:
        test_acc = _accuracy(W @ with_bias_row(np.asarray(X_test, dtype=np.float64), bias), Y_test)
    W, b = (W[:, :-1], W[:, -1]) if bias else (W, None)
    return LeastSquares(
        W=W,
        b=b,
        loss=float(0.5 * np.mean(np.sum((scores - Y64) ** 2, axis=0))),
        train_acc=_accuracy(scores, Y),
        test_acc=float(test_acc),
    )


def _accuracy(scores: np.ndarray, Y: np.ndarray) -> float:
    """Share of columns whose largest score (the first, on ties) is the label's."""
    return float(np.mean(np.argmax(scores, axis=0) == np.argmax(Y, axis=0)))


def stability_threshold(X: np.ndarray) -> Stability:
    """lambda_max of X X^T / N and the full-batch gradient-descent limit lr < 2 / lambda_max."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] == 0 or not np.issubdtype(X.dtype, np.number):
        raise UsageError(
            "X must be a 2-D array (features, samples) of numbers with at least one sample, "
            f"got {X.dtype} {X.shape}"
        )
    if np.issubdtype(X.dtype, np.complexfloating) or not np.isfinite(X).all():
        raise UsageError(
            f"X must hold finite real numbers, got dtype {X.dtype} with NaN, inf or complex"
        )
    X = X.astype(np.float64, copy=False)
    lam = float(np.linalg.eigvalsh(X @ X.T / X.shape[1])[-1])
    return Stability(lambda_max=lam, lr_max=2.0 / lam)
