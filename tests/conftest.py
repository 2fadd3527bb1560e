"""Shared fixtures: small MNIST-like synthetic data, and real MNIST for integration tests."""

import numpy as np
import pytest


def mnist_like(n: int, n_test: int = 0, *, d: int = 784, seed: int = 0):
    """Sparse non-negative images of 10 noisy prototypes, scaled like pixels / 255."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((10, d)) < 0.3) * rng.integers(150, 256, (10, d))

    def make(m):
        y = rng.integers(0, 10, m)
        x = protos[y] * (rng.random((m, d)) < 0.8)
        x = x + (rng.random((m, d)) < 0.05) * rng.integers(0, 256, (m, d))
        X = (np.clip(x, 0, 255).T / 255).astype(np.float32)
        return X, np.eye(10, dtype=np.float32)[y].T.copy()

    return make(n), make(n_test)


@pytest.fixture(scope="session")
def synthetic():
    """``mnist_like`` itself, for tests that need synthetic data of another size."""
    return mnist_like


@pytest.fixture(scope="session")
def small_data():
    """((X, Y), (X_test, Y_test)) with 2,000 training and 500 test samples."""
    return mnist_like(2000, 500)


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST, prepared: ((X, Y), (X_test, Y_test)) in float32, feature-major."""
    from linmnist.engine.data import load_mnist, prepare

    (x, y), (xt, yt) = load_mnist()
    return prepare(x, y), prepare(xt, yt)
