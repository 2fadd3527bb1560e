"""The closed-form optimum and the stability threshold."""

import numpy as np
import pytest

from linmnist.engine.analysis import least_squares, stability_threshold
from linmnist.engine.sgd import train


@pytest.mark.parametrize("bias", [False, True])
def test_least_squares_solves_the_normal_equations(small_data, bias):
    (X, Y), (Xt, Yt) = small_data
    res = least_squares(X, Y, Xt, Yt, bias=bias)
    X64 = X.astype(np.float64)
    Xa = np.vstack([X64, np.ones((1, X.shape[1]))]) if bias else X64
    Wa = np.hstack([res.W, res.b[:, None]]) if bias else res.W
    grad = (Wa @ Xa - Y) @ Xa.T / X.shape[1]
    assert np.abs(grad).max() < 1e-8
    loss = 0.5 * np.mean(np.sum((Wa @ Xa - Y) ** 2, axis=0))
    assert res.loss == pytest.approx(loss, rel=1e-9)
    assert (res.b is None) != bias


def test_sgd_never_beats_the_closed_form_loss(small_data):
    (X, Y), _ = small_data
    opt = least_squares(X, Y)
    run = train(X, Y, lr=0.01, batch_size=50, iterations=300, eval_every=5)
    assert run.history.train_loss.min() >= opt.loss
    assert np.isnan(opt.test_acc)


def test_stability_threshold_separates_convergence_from_divergence(small_data):
    (X, Y), _ = small_data
    X, Y = X[:, :500], Y[:, :500]
    st = stability_threshold(X)
    assert st.lambda_max == pytest.approx(np.linalg.eigvalsh(X @ X.T / 500.0)[-1], rel=1e-6)
    # Above the threshold the loss passes DIVERGENCE_LOSS after about 90 iterations.
    full = np.tile(np.arange(500), (200, 1))
    kwargs = dict(batch_size=500, iterations=200, batches=full, eval_every=50)
    below = train(X, Y, lr=0.95 * st.lr_max, **kwargs)
    above = train(X, Y, lr=1.05 * st.lr_max, **kwargs)
    assert below.diverged_at is None
    assert below.history.train_loss.iloc[-1] < below.history.train_loss.iloc[0]
    assert above.diverged_at is not None


def test_stability_threshold_refuses_bad_input():
    with pytest.raises(ValueError, match="X must be a 2-D array"):
        stability_threshold(np.zeros(5))
    with pytest.raises(ValueError, match="X must hold finite real numbers"):
        stability_threshold(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="X must hold finite real numbers"):
        stability_threshold(np.eye(2, dtype=complex))


def test_least_squares_refuses_nan_instead_of_returning_it(small_data):
    (X, Y), _ = small_data
    X = X.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="X must hold finite numbers"):
        least_squares(X, Y)


@pytest.mark.integration
def test_closed_form_and_stability_reproduce_spec_on_mnist(mnist):
    (X, Y), (Xt, Yt) = mnist
    opt = least_squares(X, Y, Xt, Yt)
    assert (round(opt.loss, 4), round(100 * opt.train_acc, 2), round(100 * opt.test_acc, 2)) == (
        0.1955,
        85.19,
        85.34,
    )
    opt_b = least_squares(X, Y, Xt, Yt, bias=True)
    assert (round(opt_b.loss, 4), round(100 * opt_b.train_acc, 2)) == (0.19, 85.77)
    assert round(100 * opt_b.test_acc, 2) == 86.03
    st = stability_threshold(X)
    assert round(st.lambda_max, 2) == 38.09
    assert round(st.lr_max, 4) == 0.0525
