"""The noise floor of constant-step SGD on the quadratic loss: its excess over gradient descent.

The mean of D_t = W_t - W* follows gradient descent (the batch gradient is unbiased), so
E[L(W_t)] - L(W_t^GD) = 0.5 sum_k lam_k c_k(t), c_k = sum_rows Var(D_t v_k), the noise alone.
The covariance of D_t obeys, exactly, with a = lr and mu_t the gradient-descent iterate,

    Cov_{t+1} = (I - a S) Cov_t (I - a S) + (a^2 / B) [Sigma_x(mu_t) + K(Cov_t) - S Cov_t S],

Sigma_x(mu) = mean_i ||r_i(mu)||^2 x_i x_i^T - G^T G, K(P) = mean_i (x_i^T P x_i) x_i x_i^T.
ASSUMING Cov stays diagonal in S's eigenbasis, with z_i = V^T x_i, Q_kj = mean_i z_ik^2 z_ij^2
and sigma_k(t) = mean_i z_ik^2 ||r_i(mu_t)||^2 - ||G_t v_k||^2,

    c(t+1) = (1 - a lam)^2 c(t) + (a^2 / B) [sigma(t) + Q c(t) - lam^2 c(t)].

Its predictions: first order a tr Sigma* / (4 B); the stationary point at the optimum (inf if
none); c(t) from c(0) = 0, sigma(t) interpolated between checkpoints of gradient descent.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from linmnist.engine.quantity_cache import cached, data_key
from linmnist.engine.spectrum import BLOCK, Spectrum
from linmnist.engine.validation import check_int, check_number

# Checkpoints of sigma(t) along the gradient-descent trajectory (log-spaced in t).
CHECKPOINTS = 8


@dataclass(frozen=True)
class FloorModel:
    """What the predictions need, on the eigen-directions of S with lam_k > 0. Q and sigma*
    (two D^2 N products) are computed when first read, or read from the quantity cache."""

    lam: np.ndarray  # (K,)
    residual_star: np.ndarray  # (10, N) W* X - Y
    U_star: np.ndarray  # (10, K) W* V
    V: np.ndarray  # (D, K) the eigen-directions, float32
    X: np.ndarray = field(repr=False)  # (D, N) float32
    key: str | None = None  # the cache key of Q and sigma* (None: not cached)

    # The D^2 N products in float32 (half the time of float64), accumulated in float64.
    @functools.cached_property
    def Z(self) -> np.ndarray:
        """V^T X (K, N)."""
        return self.V.T @ self.X

    @functools.cached_property
    def Z2(self) -> np.ndarray:
        """Z * Z."""
        return self.Z * self.Z

    @functools.cached_property
    def _fourth_moments(self) -> dict[str, np.ndarray]:
        return cached("floor", self.key, __file__, self._compute_fourth_moments)

    def _compute_fourth_moments(self) -> dict[str, np.ndarray]:
        zero = np.zeros((self.residual_star.shape[0], self.V.shape[1]))
        return {
            "Q": (self.Z2 @ self.Z2.T).astype(np.float64) / self.X.shape[1],
            "sigma_star": _sigma(self.Z2, self.residual_star, self.lam, zero),
        }

    @property
    def Q(self) -> np.ndarray:
        """mean_i z_ik^2 z_ij^2 (K, K)."""
        return self._fourth_moments["Q"]

    @property
    def sigma_star(self) -> np.ndarray:
        """sigma_k at the optimum (K,)."""
        return self._fourth_moments["sigma_star"]

    @property
    def tr_sigma_star(self) -> float:
        """tr Sigma at the optimum: mean_i ||r*_i||^2 ||x_i||^2 (its gradient is zero)."""
        return float(self.sigma_star.sum())


def floor_model(spec: Spectrum, X: np.ndarray, Y: np.ndarray) -> FloorModel:
    """The ``FloorModel`` of the training set whose ``Spectrum`` is ``spec``."""
    live = spec.lam > 0
    X = np.asarray(X, dtype=np.float32)
    V = spec.V[:, live].astype(np.float32)
    residual, U_star = _residual(spec.W_star, X, Y), spec.W_star @ spec.V[:, live]
    key = data_key(X.T, np.argmax(Y, axis=0), V, f"classes {Y.shape[0]}")
    return FloorModel(spec.lam[live], residual, U_star, V, X, key)


def _residual(W: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """W X - Y in float64, ``spectrum.BLOCK`` samples at a time: no float64 copy of X."""
    out = np.empty(Y.shape)
    for j in range(0, X.shape[1], BLOCK):
        cols = slice(j, j + BLOCK)
        out[:, cols] = W @ np.asarray(X[:, cols], dtype=np.float64) - Y[:, cols]
    return out


def _sigma(Z2: np.ndarray, residual: np.ndarray, lam: np.ndarray, delta: np.ndarray):
    """sigma_k = mean_i z_ik^2 ||r_i||^2 - ||G v_k||^2, with G V = delta lam (D = delta V^T)."""
    r2 = np.einsum("cn,cn->n", residual, residual).astype(Z2.dtype)
    return (Z2 @ r2).astype(np.float64) / Z2.shape[1] - np.sum((delta * lam) ** 2, axis=0)


def first_order_excess(model: FloorModel, *, lr: float, batch_size: int) -> float:
    """lr tr Sigma* / (4 B)."""
    lr = check_number("lr", lr, low=0, low_open=True)
    batch_size = check_int("batch_size", batch_size, low=1)
    return lr * model.tr_sigma_star / (4 * batch_size)


def stationary_excess(model: FloorModel, *, lr: float, batch_size: int) -> float:
    """0.5 sum lam_k c_k at the fixed point at the optimum; inf when there is none."""
    a = check_number("lr", lr, low=0, low_open=True)
    b = check_int("batch_size", batch_size, low=1)
    lam = model.lam
    A = np.diag(2 * a * lam - a * a * (1 - 1 / b) * lam**2) - (a * a / b) * model.Q
    c = np.linalg.solve(A, (a * a / b) * model.sigma_star)
    if not np.isfinite(c).all() or c.min() < 0:
        return math.inf
    return 0.5 * float(lam @ c)


def sigma_trajectory(
    model: FloorModel, *, lr: float, iterations: int, checkpoints: int = CHECKPOINTS
) -> tuple[np.ndarray, np.ndarray]:
    """(t, sigma(t)) at ``checkpoints`` log-spaced steps in [0, ``iterations``] of gradient descent
    at ``lr`` from W = 0, all checkpoints' residuals in one stacked product a block at a time."""
    lr = check_number("lr", lr, low=0, low_open=True)
    iterations = check_int("iterations", iterations, low=1)
    checkpoints = check_int("checkpoints", checkpoints, low=2)
    steps = np.unique(np.r_[0, np.geomspace(1, iterations, checkpoints - 1).round()]).astype(int)
    rho = (1.0 - lr * model.lam)[None, :] ** steps[:, None].astype(np.float64)
    delta = -model.U_star[None] * rho[:, None, :]  # (mu_t - W*) V at each checkpoint
    k, n = model.residual_star.shape
    deltas = delta.reshape(-1, delta.shape[2]).astype(model.Z.dtype)  # checkpoint x class rows
    r2 = np.empty((len(steps), n), dtype=model.Z2.dtype)
    for j in range(0, n, BLOCK):
        cols = slice(j, j + BLOCK)
        r = model.residual_star[None, :, cols] + (deltas @ model.Z[:, cols]).reshape(
            len(steps), k, -1
        )
        r2[:, cols] = np.einsum("tcn,tcn->tn", r, r)
    mean = (model.Z2 @ r2.T).T.astype(np.float64) / n
    return steps, mean - np.sum((delta * model.lam) ** 2, axis=1)


def noise_covariance(model: FloorModel, *, lr: float, batch_size: int | Sequence[int],
                     steps: Sequence[int] | np.ndarray,
                     sigma: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:  # fmt: skip
    """c(t) (len(steps), K, batch sizes) after each of ``steps`` of the recursion from c(0) = 0 (inf
    or nan on overflow); ``sigma`` by default ``sigma_trajectory(model, lr=lr, ...)``."""
    a = check_number("lr", lr, low=0, low_open=True)
    sizes = [check_int("batch_size", b, low=1) for b in np.atleast_1d(batch_size).tolist()]
    steps = np.asarray(steps, dtype=np.int64).reshape(-1)
    if steps.size == 0 or steps[0] < 0 or np.any(np.diff(steps) < 0):
        raise ValueError(f"steps must be a non-empty ascending sequence of ints >= 0, got {steps}")
    last = int(steps[-1])
    if sigma is None:
        sigma = sigma_trajectory(model, lr=a, iterations=max(last, 1))
    checkpoints, sigmas = sigma
    lam, Q = model.lam[:, None], model.Q  # Q read once, not at every step
    noise = a * a / np.asarray(sizes, dtype=np.float64)  # a^2 / B, one column per batch size
    keep = (1.0 - a * lam) ** 2 - noise * lam**2
    c = np.zeros((len(lam), len(sizes)))
    out = np.zeros((len(steps), *c.shape))
    j, k = 0, int(np.searchsorted(steps, 0, side="right"))  # c(0) = 0 is already in out
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging recursion: inf or nan
        for t in range(last):
            while j + 1 < len(checkpoints) - 1 and checkpoints[j + 1] <= t:
                j += 1
            w = (t - checkpoints[j]) / (checkpoints[j + 1] - checkpoints[j])
            source = ((1 - w) * sigmas[j] + w * sigmas[j + 1])[:, None]
            c = keep * c + noise * (source + Q @ c)
            while k < len(steps) and steps[k] == t + 1:
                out[k] = c
                k += 1
    return out


def excess_after(model: FloorModel, *, lr: float, batch_size: int | Sequence[int], iterations: int,
                 sigma: tuple[np.ndarray, np.ndarray] | None = None
) -> float | np.ndarray:  # fmt: skip
    """0.5 sum lam_k c_k(t) after ``iterations`` steps (per batch size; inf on overflow)."""
    iterations = check_int("iterations", iterations, low=1)
    c = noise_covariance(model, lr=lr, batch_size=batch_size, steps=[iterations], sigma=sigma)
    with np.errstate(invalid="ignore"):
        excess = 0.5 * (model.lam @ c[0])
    excess = np.where(np.isfinite(excess), excess, np.inf)
    return float(excess[0]) if np.ndim(batch_size) == 0 else excess


def largest_stable_lr(model: FloorModel, *, batch_size: int) -> float:
    """The lr above which the recursion's c(t) grows without bound: SGD's instability edge.

    c <- T c + (a^2 / B) sigma, T = I - a L1 + a^2 L2 >= 0, L1 = 2 diag(lam), L2 =
    (1 - 1/B) diag(lam)^2 + Q / B, reaches spectral radius 1 where L2 v = (1/a) L1 v first has a
    solution: a* = 2 / lambda_max(diag(lam)^-1/2 L2 diag(lam)^-1/2) (2 / lambda_max(S) at B = inf).
    """
    b = check_int("batch_size", batch_size, low=1)
    root = 1.0 / np.sqrt(model.lam)
    L2 = (1.0 - 1.0 / b) * np.diag(model.lam**2) + model.Q / b
    return 2.0 / float(np.linalg.eigvalsh(root[:, None] * L2 * root[None, :])[-1])
