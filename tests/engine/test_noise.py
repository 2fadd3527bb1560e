"""The noise scales against explicit per-sample gradients, and on MNIST at W = 0 and W*."""

import math

import numpy as np
import pytest

from linmnist.engine.noise import noise_scales, sample_moments
from linmnist.engine.spectrum import spectrum


def _brute(W, X, Y):
    """Every quantity from the per-sample gradients g_i = r_i x_i^T, vectorised row-major."""
    n = X.shape[1]
    S = X @ X.T / n
    g = np.stack([np.outer(W @ X[:, i] - Y[:, i], X[:, i]).ravel() for i in range(n)])
    G = g.mean(axis=0)
    sigma = (g - G).T @ (g - G) / n  # the covariance over the samples
    H = np.kron(np.eye(W.shape[0]), S)  # dW -> dW S on row-major vec(dW)
    gHg = G @ H @ G
    return {
        "tr_sigma": np.trace(sigma),
        "grad_norm": np.linalg.norm(G),
        "gHg": gHg,
        "tr_h_sigma": np.trace(H @ sigma),
        "b_simple": np.trace(sigma) / (G @ G),
        "b_noise": np.trace(H @ sigma) / gHg,
        "eps_max": (G @ G) / gHg,
    }


def test_the_noise_scales_are_those_of_the_per_sample_gradients(synthetic):
    (X, Y), _ = synthetic(40, d=12, seed=1)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    W = np.random.default_rng(2).normal(size=(10, 12)) * 0.1
    scales = noise_scales(W, X, Y)
    for name, value in _brute(W, X, Y).items():
        assert getattr(scales, name) == pytest.approx(value, rel=1e-10), name


def test_the_sample_moments_are_per_sample_norms_and_curvatures(synthetic):
    (X, _), _ = synthetic(30, d=8, seed=4)
    X = X.astype(np.float64)
    S = X @ X.T / X.shape[1]
    moments = sample_moments(X)
    np.testing.assert_allclose(moments.x2, [x @ x for x in X.T])
    np.testing.assert_allclose(moments.xSx, [x @ S @ x for x in X.T])


def test_at_a_zero_gradient_the_scales_are_infinite_and_eps_max_undefined(synthetic):
    (X, Y), _ = synthetic(200, d=20, seed=5)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    at_optimum = noise_scales(spectrum(X, Y).W_star, X, Y)
    assert at_optimum.tr_sigma > 0 and at_optimum.tr_h_sigma > 0
    assert math.isinf(at_optimum.b_simple) and math.isinf(at_optimum.b_noise)
    assert math.isnan(at_optimum.eps_max)
    exact = noise_scales(np.eye(10), np.eye(10), np.eye(10))  # every residual is zero
    assert exact.tr_sigma == 0 and math.isnan(exact.b_simple) and math.isnan(exact.b_noise)


@pytest.mark.integration
@pytest.mark.slow
def test_on_mnist_at_zero_and_at_the_optimum(mnist):
    (X, Y), _ = mnist
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    spec = spectrum(X, Y)
    moments = sample_moments(X, spec.S)
    zero = noise_scales(np.zeros((10, 784)), X, Y, moments=moments)
    # At W = 0 every residual is -y_i (norm 1) and G = -C: tr Sigma = tr S - ||C||^2 and
    # tr(H Sigma) = mean_i x_i^T S x_i - tr(C S C^T) = ||S||_F^2 - tr(C S C^T).
    C = spec.C
    assert zero.tr_sigma == pytest.approx(np.trace(spec.S) - np.sum(C * C), rel=1e-9)
    assert zero.tr_h_sigma == pytest.approx(np.sum(spec.S**2) - np.vdot(C @ spec.S, C), rel=1e-9)
    assert zero.grad_norm == pytest.approx(np.linalg.norm(C))
    assert 1 < zero.b_noise < zero.b_simple < 100
    assert zero.eps_max < spec.lr_max
    optimum = noise_scales(spec.W_star, X, Y, moments=moments)
    assert math.isinf(optimum.b_simple) and math.isinf(optimum.b_noise)
    assert math.isnan(optimum.eps_max)
    r = spec.W_star @ X - Y
    assert optimum.tr_sigma == pytest.approx(np.mean(np.sum(r * r, 0) * moments.x2), rel=1e-9)


def test_non_finite_weights_are_refused_by_name():
    rng = np.random.default_rng(0)
    X = rng.random((5, 30))
    Y = np.eye(10)[:, np.arange(30) % 10]
    with pytest.raises(ValueError, match="W must hold finite numbers"):
        noise_scales(np.full((10, 5), np.nan), X, Y)
