"""The gradient noise scales of McCandlish et al. (2018), exact for the linear model.

The per-sample gradient g_i = r_i x_i^T (r_i = W x_i - y_i, G = mean g_i) is rank one, and
the Hessian acts as dW -> dW S (S = X X^T / N), so every quantity is a mean of per-sample
scalars (no per-sample gradient is formed):

    tr Sigma = mean_i ||r_i||^2 ||x_i||^2 - ||G||^2,   G^T H G = tr(G S G^T),
    tr(H Sigma) = mean_i ||r_i||^2 x_i^T S x_i - G^T H G,
    B_simple = tr Sigma / ||G||^2,  B_noise = tr(H Sigma) / G^T H G,  eps_max = ||G||^2 / G^T H G.

A gradient below ``ZERO_GRADIENT`` times the root-mean-square per-sample gradient norm counts
as zero (the optimum): B_simple and B_noise are then inf (nan if Sigma vanishes too), eps_max nan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from linmnist.engine.evaluation import check_data
from linmnist.engine.validation import UsageError

# ||G|| below this fraction of sqrt(mean ||g_i||^2) counts as zero (rounding leaves 1e-14).
ZERO_GRADIENT = 1e-10


@dataclass(frozen=True)
class SampleMoments:
    """Per-sample quantities of a training set, computed once (``sample_moments``)."""

    S: np.ndarray  # (D, D) X X^T / N in float64
    x2: np.ndarray  # (N,) ||x_i||^2
    xSx: np.ndarray  # (N,) x_i^T S x_i


@dataclass(frozen=True)
class NoiseScales:
    """The noise scales at one W (formulas and the zero-gradient case: the module docstring)."""

    tr_sigma: float  # tr Sigma
    grad_norm: float  # ||G||_F
    gHg: float  # G^T H G
    tr_h_sigma: float  # tr(H Sigma)
    b_simple: float  # tr Sigma / ||G||^2
    b_noise: float  # tr(H Sigma) / G^T H G
    eps_max: float  # ||G||^2 / G^T H G


def sample_moments(X: np.ndarray, S: np.ndarray | None = None) -> SampleMoments:
    """||x_i||^2 and x_i^T S x_i of every sample: one product S X, in float64."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] == 0:
        raise UsageError(f"X must be a 2-D array (features, samples), got shape {X.shape}")
    if S is None:
        S = X @ X.T / X.shape[1]
    x2 = np.einsum("dn,dn->n", X, X)
    xSx = np.einsum("dn,dn->n", X, S @ X)
    return SampleMoments(S=S, x2=x2, xSx=xSx)


def _ratio(numerator: float, denominator: float, zero: bool) -> float:
    if not zero:
        return numerator / denominator
    return math.inf if numerator > 0 else math.nan


def noise_scales(
    W: np.ndarray, X: np.ndarray, Y: np.ndarray, *, moments: SampleMoments | None = None
) -> NoiseScales:
    """The exact noise scales of the quadratic loss at ``W`` (10, D) on (X, Y), in float64 (X
    in float64 avoids a copy a call); ``moments`` is ``sample_moments(X)``, shared by calls."""
    X, Y = check_data(X, Y, "X", "Y")
    W = np.asarray(W, dtype=np.float64)
    if W.shape != (Y.shape[0], X.shape[0]):
        raise UsageError(f"W must have shape {(Y.shape[0], X.shape[0])}, got {W.shape}")
    if not np.isfinite(W).all():
        raise UsageError("W must hold finite numbers, got NaN or infinity")
    X = np.asarray(X, dtype=np.float64)
    if moments is None:
        moments = sample_moments(X)
    n = X.shape[1]
    R = W @ X - Y  # residuals r_i, (10, N)
    r2 = np.einsum("cn,cn->n", R, R)
    G = R @ X.T / n
    g2 = float(np.sum(G * G))
    gHg = float(np.vdot(G @ moments.S, G))
    mean_g2 = float(r2 @ moments.x2) / n  # mean ||g_i||^2
    tr_sigma = mean_g2 - g2
    tr_h_sigma = float(r2 @ moments.xSx) / n - gHg
    zero = g2 <= ZERO_GRADIENT**2 * mean_g2
    b_simple, b_noise = _ratio(tr_sigma, g2, zero), _ratio(tr_h_sigma, gHg, zero)
    eps_max = math.nan if zero else g2 / gHg
    return NoiseScales(tr_sigma, math.sqrt(g2), gHg, tr_h_sigma, b_simple, b_noise, eps_max)
