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

from linmnist.engine.evaluation import check_data, evaluate_trajectory, with_bias_row
from linmnist.engine.validation import UsageError, check_bool


@dataclass
class LeastSquares:
    """Closed-form minimiser of the quadratic loss.

    Attributes
    ----------
    W : ndarray (10, D)
    b : ndarray (10,) or None
        Bias, when fitted with ``bias=True``.
    loss, train_acc, test_acc : float
        Training loss and accuracies (fractions) of the optimum; test_acc is NaN
        without a test set.
    """

    W: np.ndarray
    b: np.ndarray | None
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
    """The minimum-norm W (and b) minimising 1/(2N) sum ||W x + b - y||^2, with its metrics."""
    bias = check_bool("bias", bias)
    X, Y = check_data(X, Y, "X", "Y")
    Xb = with_bias_row(np.asarray(X, dtype=np.float64), bias)
    W = (Y.astype(np.float64) @ Xb.T) @ _pinv_psd(Xb @ Xb.T)
    W, b = (W[:, :-1], W[:, -1]) if bias else (W, None)
    row = evaluate_trajectory(
        W[None], X, Y, X_test, Y_test, bs=None if b is None else b[None]
    ).iloc[0]
    return LeastSquares(
        W=W,
        b=b,
        loss=float(row.train_loss),
        train_acc=float(row.train_acc),
        test_acc=float(row.test_acc),
    )


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
