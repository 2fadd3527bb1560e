"""The quadratic loss in the eigenbasis of S = X X^T / N, and full-batch gradient descent on it.

With C = Y X^T / N, D = W - W* and W* = C S^+ (minimum norm),

    L(W) = 0.5 tr(W S W^T) - tr(W C^T) + 0.5 ||Y||_F^2 / N = L* + 0.5 tr(D S D^T).

With S = V diag(lam) V^T and U = W V, gradient descent from W = 0 moves each eigen-direction
on its own, U_t = U* (1 - (1 - lr lam_k)^t), so its excess after t steps is

    L(W_t) - L* = sum_k w_k (1 - lr lam_k)^(2t),      w_k = 0.5 lam_k ||U*_k||^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linmnist.engine.evaluation import check_data, grams
from linmnist.engine.quantity_cache import cached, data_key
from linmnist.engine.validation import check_int, check_number

# Samples converted to float64 at a time (here, in ``analysis`` and ``noise_floor``): 12.8 MB,
# below glibc's 32 MB mmap threshold (whole copies cost theory/subset 2.5 s of page faults).
BLOCK = 2048
# The eigenpairs come from the samples (``_from_samples``) when they are at most half the
# pixels in use (100 MNIST images: 19 ms against 45 ms for S's eigenproblem).
FEW_SAMPLES = 2


@dataclass(frozen=True)
class Spectrum:
    """The quadratic loss of a training set, in the eigenbasis of S = X X^T / N (float64)."""

    S: np.ndarray  # (D, D) X X^T / N
    C: np.ndarray  # (10, D) Y X^T / N
    lam: np.ndarray  # (D,) eigenvalues of S, ascending (those at rounding level set to 0)
    V: np.ndarray  # (D, D) eigenvectors
    W_star: np.ndarray  # (10, D) the minimum-norm minimiser C S^+
    loss_star: float  # L(W*)
    loss_zero: float  # L(0) = 0.5 ||Y||^2 / N
    weights: np.ndarray  # (D,) w_k, the excess loss of W = 0 along each eigen-direction
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
    """The ``Spectrum`` of the training set (X, Y) in float64, cached on disk per data set."""
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
    """S's eigenvalues (ascending) and eigenvectors, S = X X^T / N: pixels zero in every image
    have eigenvalue 0 (first), the others from S on the pixels in use (or ``_from_samples``)."""
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
    """X X^T / N and Y X^T / N in float64 (``evaluation.grams``, ``BLOCK`` samples at a time)."""
    S, C, _ = grams(X, Y, BLOCK)
    return S / X.shape[1], C / X.shape[1]


def excess_loss(spec: Spectrum, W: np.ndarray) -> float:
    """L(W) - L* = 0.5 tr(D S D^T) with D = W - W*: 10 D^2 work, no pass over the data."""
    D = np.asarray(W, dtype=np.float64) - spec.W_star
    return 0.5 * float(np.vdot(D @ spec.S, D))


def gd_excess(spec: Spectrum, lr: float, steps) -> np.ndarray:
    """L(W_t) - L* of gradient descent at ``lr`` after each of ``steps`` (inf on overflow)."""
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
    """0.5 tr(D S D^T), D = W - W_t^GD (``W`` after ``step`` updates at ``lr``): L(W) - L(W_t^GD)
    without its linear term tr(G_t D^T), of mean zero: the same expectation, never negative."""
    W = np.asarray(W, dtype=np.float64)
    if W.shape != spec.W_star.shape:
        raise ValueError(f"W must have shape {spec.W_star.shape}, got {W.shape}")
    D = W - gd_weights(spec, lr, step)
    return 0.5 * float(np.vdot(D @ spec.S, D))


def gd_steps_to(spec: Spectrum, lr: float, target: float, *, max_steps: int = 10**9) -> int | None:
    """The first t with L(W_t) - L* <= ``target`` for gradient descent, else None."""
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
