"""The quadratic loss in the eigenbasis of S = X X^T / N, and full-batch gradient descent on it.

With C = Y X^T / N, the loss is a quadratic form of W (the Gram-matrix form, no pass over the
data once S and C are known):

    L(W) = 0.5 tr(W S W^T) - tr(W C^T) + 0.5 ||Y||_F^2 / N
         = L* + 0.5 tr(D S D^T),            D = W - W*,  W* = C S^+ (minimum norm).

Write S = V diag(lam) V^T. Gradient descent W <- W - lr (W S - C) from W = 0 moves every
eigen-direction on its own: with U = W V, column k obeys U_k <- (1 - lr lam_k) U_k + lr C V_k,
so U_t = U* (1 - (1 - lr lam_k)^t) and the excess loss after t steps is, in closed form,

    L(W_t) - L* = sum_k w_k (1 - lr lam_k)^(2t),      w_k = 0.5 lam_k ||U*_k||^2.

It decreases in t for lr <= 2 / lam_max and grows without bound above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linmnist.engine.evaluation import check_data
from linmnist.engine.quantity_cache import cached, data_key
from linmnist.engine.validation import check_int, check_number

# Samples converted to float64 at a time (here, in ``analysis`` and ``noise_floor``): a block of
# 2,048 is 12.8 MB, below the 32 MB from which every allocation gets fresh pages (glibc's mmap
# threshold). With whole float64 copies and blocks of 8,192, theory/subset spent 4.3-4.8 s of
# system time on page faults; 1.9-2.2 s with these.
BLOCK = 2048
# The eigenpairs come from the samples (``_from_samples``) when they are at most half the
# pixels in use: 100 MNIST images (530 pixels in use) in 19 ms against 45 ms for S's
# eigenproblem, 30 in 3 ms against 28; as fast as it at 300 images.
FEW_SAMPLES = 2


@dataclass(frozen=True)
class Spectrum:
    """The quadratic loss of a training set, in the eigenbasis of S = X X^T / N (float64).

    Attributes
    ----------
    S, C : ndarray (D, D), (10, D)
        X X^T / N and Y X^T / N.
    lam, V : ndarray (D,), (D, D)
        Eigenvalues (ascending; those at rounding level set to 0) and eigenvectors of S.
    W_star : ndarray (10, D)
        The minimum-norm minimiser C S^+.
    loss_star, loss_zero : float
        L(W*) and L(0) = 0.5 ||Y||^2 / N.
    weights : ndarray (D,)
        w_k = 0.5 lam_k ||U*_k||^2: the excess loss of W = 0 along each eigen-direction.
    n_samples : int
    """

    S: np.ndarray
    C: np.ndarray
    lam: np.ndarray
    V: np.ndarray
    W_star: np.ndarray
    loss_star: float
    loss_zero: float
    weights: np.ndarray
    n_samples: int

    @property
    def lambda_max(self) -> float:
        """The largest eigenvalue of S."""
        return float(self.lam[-1])

    @property
    def lr_max(self) -> float:
        """2 / lambda_max: full-batch gradient descent converges below it."""
        return 2.0 / self.lambda_max


def spectrum(X: np.ndarray, Y: np.ndarray) -> Spectrum:
    """The ``Spectrum`` of the training set (X (D, N), Y (10, N) one-hot), in float64; cached
    on disk per data set (``linmnist.engine.quantity_cache``)."""
    X, Y = check_data(X, Y, "X", "Y")
    key = data_key(X.T, np.argmax(Y, axis=0), f"classes {Y.shape[0]}")
    arrays = cached("spectrum", key, __file__, lambda: _decompose(X, Y))
    scalars = {"loss_star": float, "loss_zero": float, "n_samples": int}
    fields = {k: scalars[k](v) if k in scalars else v for k, v in arrays.items()}
    return Spectrum(**fields)  # type: ignore[arg-type]


def _decompose(X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
    """The fields of X and Y's ``Spectrum``, as arrays."""
    d, n = X.shape
    S, C = second_moments(X, Y)
    lam, V = _eigenpairs(S, X)
    # The same cut as linmnist.engine.analysis.least_squares: eigenvalues at rounding level
    # belong to the null space and are set to zero.
    keep = lam > lam[-1] * d * np.finfo(np.float64).eps
    lam = np.where(keep, lam, 0.0)
    CV = C @ V
    U_star = np.divide(CV, lam, out=np.zeros_like(CV), where=keep)
    weights = 0.5 * lam * np.sum(U_star**2, axis=0)
    loss_zero = 0.5 * float(np.sum(np.square(Y, dtype=np.float64))) / n
    return {
        "S": S,
        "C": C,
        "lam": lam,
        "V": V,
        "W_star": U_star @ V.T,
        "loss_star": np.array(loss_zero - float(weights.sum())),
        "loss_zero": np.array(loss_zero),
        "weights": weights,
        "n_samples": np.array(n),
    }


def _eigenpairs(S: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S's eigenvalues (ascending) and eigenvectors, S = X X^T / N.

    Pixels zero in every image have zero rows and columns in S: each is an eigenvector of
    eigenvalue 0 (its unit vector, first in V). The others come from the eigenproblem of S
    on the remaining D' pixels alone (530-674 of the 784 on Task 5's subsets: a third to two
    thirds of the work), or, for N <= D' / ``FEW_SAMPLES``, from the QR factors of those
    rows of X (``_from_samples``).
    """
    d, n = X.shape
    used = np.flatnonzero(np.diag(S) > 0)  # the pixels nonzero in some image
    if n * FEW_SAMPLES <= used.size:
        lam_used, V_used = _from_samples(X[used], n)
    else:
        lam_used, V_used = np.linalg.eigh(S[np.ix_(used, used)])
    V = np.zeros((d, d))
    V[np.setdiff1d(np.arange(d), used), np.arange(d - used.size)] = 1.0
    V[np.ix_(used, np.arange(d - used.size, d))] = V_used
    return np.r_[np.zeros(d - used.size), lam_used], V


def _from_samples(X: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The eigenpairs of X X^T / n, X (D, N) with N < D, from X = Q R (complete QR): with
    Q = [Q1 Q2], X X^T / n = Q1 (R1 R1^T / n) Q1^T, so they are (0, Q2) and (mu, Q1 U) for
    the N x N eigenproblem R1 R1^T / n = U diag(mu) U^T; ascending."""
    Q, R = np.linalg.qr(np.asarray(X, dtype=np.float64), mode="complete")
    R1 = R[: X.shape[1]]
    mu, U = np.linalg.eigh(R1 @ R1.T / n)
    return np.r_[np.zeros(X.shape[0] - mu.size), mu], np.hstack(
        [Q[:, mu.size :], Q[:, : mu.size] @ U]
    )


def second_moments(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X X^T / N and Y X^T / N in float64, ``BLOCK`` samples at a time through one
    float64 buffer: no float64 copy of X (its fresh pages cost more than the copy)."""
    d, n = X.shape
    S, C = np.zeros((d, d)), np.zeros((Y.shape[0], d))
    block = np.empty((d, min(BLOCK, n)), order="F")
    for j in range(0, n, BLOCK):
        cols = slice(j, j + BLOCK)
        x = block[:, : min(n - j, BLOCK)]
        x[...] = X[:, cols]
        S += x @ x.T
        C += np.asarray(Y[:, cols], dtype=np.float64) @ x.T
    return S / n, C / n


def excess_loss(spec: Spectrum, W: np.ndarray) -> float:
    """L(W) - L* = 0.5 tr(D S D^T) with D = W - W*: 10 D^2 work, no pass over the data."""
    D = np.asarray(W, dtype=np.float64) - spec.W_star
    return 0.5 * float(np.vdot(D @ spec.S, D))


def gd_excess(spec: Spectrum, lr: float, steps) -> np.ndarray:
    """The excess loss L(W_t) - L* of gradient descent at ``lr`` after each of ``steps``.

    Exact (the closed form of the module docstring). Above 2 / lambda_max the excess grows
    and becomes ``inf`` once it overflows.
    """
    lr = check_number("lr", lr, low=0, low_open=True)
    t = np.asarray(steps, dtype=np.float64)
    if t.size and (t.min() < 0 or not np.isfinite(t).all()):
        raise ValueError(f"steps must be finite and >= 0, got {steps!r}")
    live = spec.weights > 0  # directions of the null space or already at the optimum: 0
    factor = (1.0 - lr * spec.lam[live]) ** 2
    with np.errstate(over="ignore"):  # a diverging lr: the powers overflow to inf
        return (spec.weights[live] * factor ** t[..., None]).sum(axis=-1)


def gd_weights(spec: Spectrum, lr: float, step: int) -> np.ndarray:
    """W_t of gradient descent at ``lr`` from W = 0 after ``step`` steps: W* - U* rho^t V^T."""
    lr = check_number("lr", lr, low=0, low_open=True)
    step = check_int("step", step, low=0)
    U_star = spec.W_star @ spec.V
    return spec.W_star - (U_star * (1.0 - lr * spec.lam) ** step) @ spec.V.T


def excess_over_gd(spec: Spectrum, W: np.ndarray, lr: float, step: int) -> float:
    """SGD's excess over gradient descent measured by its quadratic part alone: 0.5 tr(D S D^T)
    with D = W - W_t^GD, ``W`` a run's weights after ``step`` updates at ``lr``.

    L is quadratic, so L(W) - L(W_t^GD) = tr(G_t D^T) + 0.5 tr(D S D^T) exactly, G_t the
    gradient at W_t^GD. SGD's mean iterate is gradient descent's (E[D] = 0), so the linear
    term has mean zero and both estimates have the same expectation; dropping it removes
    its spread, which grows with ||G_t||, and leaves an estimate that is never negative.
    """
    W = np.asarray(W, dtype=np.float64)
    if W.shape != spec.W_star.shape:
        raise ValueError(f"W must have shape {spec.W_star.shape}, got {W.shape}")
    D = W - gd_weights(spec, lr, step)
    return 0.5 * float(np.vdot(D @ spec.S, D))


def gd_steps_to(spec: Spectrum, lr: float, target: float, *, max_steps: int = 10**9) -> int | None:
    """The first t with L(W_t) - L* <= ``target`` for gradient descent at ``lr``; None when
    it is not reached within ``max_steps`` (always for lr > 2 / lambda_max)."""
    target = check_number("target", target, low=0, low_open=True)
    max_steps = check_int("max_steps", max_steps, low=0)
    if gd_excess(spec, lr, 0)[()] <= target:
        return 0
    if lr > spec.lr_max or gd_excess(spec, lr, max_steps)[()] > target:
        return None
    low, high = 0, 1  # excess(low) > target >= excess(high); the excess decreases in t
    while gd_excess(spec, lr, high)[()] > target:
        low, high = high, min(2 * high, max_steps)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if gd_excess(spec, lr, mid)[()] > target else (low, mid)
    return high


__all__ = [
    "Spectrum",
    "excess_loss",
    "excess_over_gd",
    "gd_excess",
    "gd_steps_to",
    "gd_weights",
    "second_moments",
    "spectrum",
]
