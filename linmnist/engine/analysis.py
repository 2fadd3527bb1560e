"""The closed-form optimum of the study: the minimum-norm W* = (Y X^T / N) S^+ of the normal
equations, S = X X^T / N singular on MNIST (``linmnist.engine.spectrum``'s W*)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linmnist.engine.evaluation import check_data, check_test_data, with_bias_row
from linmnist.engine.spectrum import BLOCK, spectrum
from linmnist.engine.validation import check_bool


@dataclass
class LeastSquares:
    """Closed-form minimiser of the quadratic loss, its losses and accuracies (fractions)."""

    W: np.ndarray  # (10, D)
    b: np.ndarray | None  # (10,), when fitted with ``bias=True``
    loss: float
    train_acc: float
    test_acc: float
    test_loss: float


def least_squares(X, Y, X_test=None, Y_test=None, *, bias: bool = False) -> LeastSquares:
    """The minimum-norm W (and b with ``bias``) of the quadratic loss, with its metrics."""
    bias = check_bool("bias", bias)
    X, Y = check_data(X, Y, "X", "Y")
    X_test, Y_test = check_test_data(X_test, Y_test, X, Y)
    Xb, Xb_test = with_bias_row(X, bias), with_bias_row(X_test, bias)
    return optimum_metrics(spectrum(Xb, Y).W_star, Xb, Y, Xb_test, Y_test, bias=bias)


def optimum_metrics(W, X, Y, X_test=None, Y_test=None, *, bias: bool = False) -> LeastSquares:
    """The ``LeastSquares`` of ``W`` on ``X`` (a last row of ones when ``bias``)."""
    loss, train_acc = map(float, quadratic_metrics(W, X, Y))
    test_loss, test_acc = np.nan, np.nan
    if X_test is not None and Y_test is not None:
        test_loss, test_acc = map(float, quadratic_metrics(W, X_test, Y_test))
    W, b = (W[:, :-1], W[:, -1]) if bias else (W, None)
    return LeastSquares(W, b, loss, train_acc, test_acc, test_loss)


def quadratic_metrics(W: np.ndarray, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(0.5 mean ||W x - y||^2, share of samples whose first largest score is the label's) of W
    (10, D) or of a stack (m, 10, D), from float64 scores, ``BLOCK`` samples at a time."""
    W = np.asarray(W, dtype=np.float64)
    stack, n = W.shape[:-2], X.shape[1]
    squares, hits = np.zeros(stack), np.zeros(stack, dtype=np.int64)
    for j in range(0, n, BLOCK):
        labels = Y[:, j : j + BLOCK]
        x = np.asarray(X[:, j : j + BLOCK], dtype=np.float64)
        scores = (W.reshape(-1, W.shape[-1]) @ x).reshape(*stack, *labels.shape)
        squares += np.sum((scores - labels) ** 2, axis=(-2, -1))
        hits += np.sum(np.argmax(scores, axis=-2) == np.argmax(labels, axis=0), axis=-1)
    return 0.5 * squares / n, hits / n
