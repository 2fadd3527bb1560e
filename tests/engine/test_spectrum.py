"""The quadratic loss in the eigenbasis of S: the closed forms against explicit iteration."""

import numpy as np
import pytest

from linmnist.engine import spectrum as spectrum_module
from linmnist.engine.analysis import least_squares
from linmnist.engine.sgd import train
from linmnist.engine.spectrum import (
    excess_loss,
    excess_over_gd,
    gd_excess,
    gd_steps_to,
    gd_weights,
    spectrum,
)


@pytest.fixture(scope="module")
def data(synthetic):
    (X, Y), _ = synthetic(600, d=60, seed=3)
    X[:5] = 0  # a null space, as MNIST's always-zero pixels
    return X.astype(np.float64), Y.astype(np.float64)


def _loss(W, X, Y):
    return 0.5 * np.sum((W @ X - Y) ** 2) / X.shape[1]


def test_the_optimum_is_that_of_least_squares(data):
    X, Y = data
    spec = spectrum(X, Y)
    opt = least_squares(X, Y)
    assert spec.loss_star == pytest.approx(opt.loss, rel=1e-6)
    np.testing.assert_allclose(spec.W_star, opt.W, atol=1e-6)
    assert spec.loss_zero == 0.5
    assert spec.lr_max == pytest.approx(2 / np.linalg.eigvalsh(X @ X.T / X.shape[1])[-1])


def test_the_eigenpairs_are_those_of_s_with_the_zero_pixels_apart(data, monkeypatch):
    """S is accumulated a few samples at a time (a last block shorter than the others) and
    decomposed on the pixels nonzero in some image; the zero pixels' unit vectors complete an
    orthonormal V with eigenvalue 0, and S = V diag(lam) V^T."""
    X, Y = data
    X = X[[5, 0, 6, 1, 2, 7, 3, 4, *range(8, 60)]]  # the zero pixels (rows 0-4) among others
    monkeypatch.setattr(spectrum_module, "BLOCK", 128)
    spec = spectrum(X.astype(np.float32), Y)
    X64 = X.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(spec.S, X64 @ X64.T / X.shape[1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(spec.C, Y @ X64.T / X.shape[1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(spec.V.T @ spec.V, np.eye(60), atol=1e-12)
    np.testing.assert_allclose(spec.V * spec.lam @ spec.V.T, spec.S, atol=1e-12)
    zero = np.flatnonzero(~X.any(axis=1))
    np.testing.assert_array_equal(spec.V[zero][:, :5], np.eye(5))
    assert (spec.lam[:5] == 0).all() and (np.diff(spec.lam) >= 0).all()
    assert (spec.lam[5:] > 0).all()
    np.testing.assert_allclose(spec.lam[5:], np.linalg.eigvalsh(X64 @ X64.T / 600)[5:], rtol=1e-9)
    assert (spec.W_star[:, zero] == 0).all()


def test_few_samples_give_the_eigenpairs_of_s_by_their_qr_factors(data, monkeypatch):
    """12 samples of 55 pixels in use (and 5 zero ones): the eigenpairs from the QR factors
    of X are those of S's eigenproblem, V is orthonormal and S = V diag(lam) V^T."""
    X, Y = data[0][:, :12], data[1][:, :12]
    spec = spectrum(X, Y)
    monkeypatch.setattr(spectrum_module, "FEW_SAMPLES", 10**6)  # S's eigenproblem
    reference = spectrum(X, Y)
    np.testing.assert_allclose(spec.V.T @ spec.V, np.eye(60), atol=1e-12)
    np.testing.assert_allclose(spec.V * spec.lam @ spec.V.T, spec.S, atol=1e-12)
    assert (spec.lam[:48] == 0).all() and (spec.lam[48:] > 0).all()
    np.testing.assert_allclose(spec.lam, reference.lam, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(spec.W_star, reference.W_star, rtol=1e-7, atol=1e-9)
    assert spec.loss_star == pytest.approx(reference.loss_star, abs=1e-12)


def test_lr_max_separates_convergence_from_divergence(small_data):
    """Full-batch gradient descent converges a little below 2 / lambda_max and diverges a
    little above it (the loss passes DIVERGENCE_LOSS after about 90 iterations)."""
    (X, Y), _ = small_data
    X, Y = X[:, :500], Y[:, :500]
    lr_max = spectrum(X, Y).lr_max
    full = np.tile(np.arange(500), (200, 1))
    kwargs = dict(batch_size=500, iterations=200, batches=full, eval_every=50)
    below = train(X, Y, lr=0.95 * lr_max, **kwargs)
    above = train(X, Y, lr=1.05 * lr_max, **kwargs)
    assert below.diverged_at is None
    assert below.history.train_loss.iloc[-1] < below.history.train_loss.iloc[0]
    assert above.diverged_at is not None


def test_the_gram_form_of_the_loss_is_the_loss(data):
    X, Y = data
    spec = spectrum(X, Y)
    W = np.random.default_rng(0).normal(size=(10, X.shape[0])) * 0.01
    assert spec.loss_star + excess_loss(spec, W) == pytest.approx(_loss(W, X, Y), rel=1e-10)


def test_gradient_descent_in_closed_form_is_gradient_descent(data):
    X, Y = data
    spec = spectrum(X, Y)
    lr = 0.9 * spec.lr_max
    W, losses = np.zeros((10, X.shape[0])), []
    for _ in range(40):
        losses.append(_loss(W, X, Y))
        W = W - lr * (W @ X - Y) @ X.T / X.shape[1]
    np.testing.assert_allclose(gd_excess(spec, lr, np.arange(40)) + spec.loss_star, losses)
    np.testing.assert_allclose(gd_weights(spec, lr, 40), W, atol=1e-9)
    first = next(t for t, loss in enumerate(losses) if loss - spec.loss_star <= 0.1)
    assert gd_steps_to(spec, lr, 0.1) == first


def test_steps_to_a_target_beyond_reach_or_already_reached(data):
    X, Y = data
    spec = spectrum(X, Y)
    assert gd_steps_to(spec, 0.5 * spec.lr_max, 1.0) == 0
    assert gd_steps_to(spec, 1.5 * spec.lr_max, 0.1) is None
    assert gd_steps_to(spec, 0.5 * spec.lr_max, 1e-12, max_steps=100) is None
    # a diverging rate grows to inf without a RuntimeWarning (an error under pytest)
    assert np.isinf(gd_excess(spec, 3 * spec.lr_max, [10**6])[0])


@pytest.mark.slow  # 100 seeds
def test_the_excess_over_gd_is_the_loss_difference_without_its_linear_term(data):
    """L(W) - L(W_t^GD) = <G_t, D> + excess_over_gd exactly; over seeds both have the same
    mean (E[D] = 0), but only the loss difference takes the linear term's spread, and the
    excess over gradient descent is never negative."""
    X, Y = data
    spec = spectrum(X, Y)
    lr, steps = 0.02 * spec.lr_max, 20  # far from the optimum: a large gradient G_t
    W_gd = gd_weights(spec, lr, steps)
    G = W_gd @ spec.S - spec.C
    excess, difference = [], []
    for seed in range(100):
        run = train(X, Y, lr=lr, batch_size=50, iterations=steps, seed=seed, eval_every=steps,
                    dtype=np.float64)  # fmt: skip
        excess.append(excess_over_gd(spec, run.W, lr, steps))
        difference.append(_loss(run.W, X, Y) - _loss(W_gd, X, Y))
        linear = float(np.vdot(G, run.W - W_gd))
        assert difference[-1] == pytest.approx(linear + excess[-1], rel=1e-8, abs=1e-12)
    excess, difference = np.array(excess), np.array(difference)
    assert (excess >= 0).all()
    se = np.std(difference - excess, ddof=1) / np.sqrt(len(excess))
    assert abs(np.mean(difference) - np.mean(excess)) < 3 * se  # the linear term: mean zero
    assert np.std(difference) > 3 * np.std(excess)  # and most of the spread
    with pytest.raises(ValueError, match="shape"):
        excess_over_gd(spec, run.W[:, :-1], lr, steps)
