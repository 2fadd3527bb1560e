"""The closed-form optimum."""

import numpy as np
import pytest

from linmnist.engine import analysis
from linmnist.engine.analysis import least_squares, quadratic_metrics
from linmnist.engine.sgd import train


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("n", [1000, 300])  # more samples than the 784 inputs, and fewer
def test_least_squares_solves_the_normal_equations(small_data, bias, n):
    (X, Y), (Xt, Yt) = small_data
    X, Y = X[:, :n], Y[:, :n]
    res = least_squares(X, Y, Xt, Yt, bias=bias)
    X64 = X.astype(np.float64)
    Xa = np.vstack([X64, np.ones((1, X.shape[1]))]) if bias else X64
    Wa = np.hstack([res.W, res.b[:, None]]) if bias else res.W
    grad = (Wa @ Xa - Y) @ Xa.T / X.shape[1]
    assert np.abs(grad).max() < 1e-8
    loss = 0.5 * np.mean(np.sum((Wa @ Xa - Y) ** 2, axis=0))
    assert res.loss == pytest.approx(loss, rel=1e-9)
    assert (res.b is None) != bias
    # The minimum-norm solution: no component in the null space of the inputs.
    reference = np.linalg.lstsq(Xa.T, Y.T.astype(np.float64), rcond=None)[0].T
    np.testing.assert_allclose(Wa, reference, atol=1e-6)
    Xta = np.vstack([Xt, np.ones((1, Xt.shape[1]))]) if bias else Xt.astype(np.float64)
    scores = Wa @ Xta
    assert res.test_loss == pytest.approx(0.5 * np.mean(np.sum((scores - Yt) ** 2, axis=0)))
    assert res.test_acc == np.mean(np.argmax(scores, axis=0) == np.argmax(Yt, axis=0))


@pytest.mark.slow  # about a second: make test, not make test-fast
def test_sgd_never_beats_the_closed_form_loss(small_data):
    (X, Y), _ = small_data
    opt = least_squares(X, Y)
    run = train(X, Y, lr=0.01, batch_size=50, iterations=300, eval_every=5)
    assert run.history.train_loss.min() >= opt.loss
    assert np.isnan(opt.test_acc) and np.isnan(opt.test_loss)


def test_the_metrics_go_a_block_of_samples_at_a_time_for_a_stack_of_fits(small_data, monkeypatch):
    """Blocks of 128 samples, the last one shorter: the loss and accuracy of all at once, for
    one W and for each W of a stack."""
    (X, Y), _ = small_data
    X, Y = X[:, :1000], Y[:, :1000]
    Ws = np.random.default_rng(1).normal(size=(3, 10, X.shape[0])) * 0.05
    monkeypatch.setattr(analysis, "BLOCK", 128)
    losses, accs = quadratic_metrics(Ws, X, Y)
    assert losses.shape == accs.shape == (3,)
    for W, loss, acc in zip(Ws, losses, accs, strict=True):
        scores = W @ X.astype(np.float64)
        expected = 0.5 * np.mean(np.sum((scores - Y) ** 2, axis=0))
        assert loss == pytest.approx(expected) == quadratic_metrics(W, X, Y)[0]
        assert acc == np.mean(np.argmax(scores, axis=0) == np.argmax(Y, axis=0))


def test_least_squares_refuses_nan_instead_of_returning_it(small_data):
    (X, Y), _ = small_data
    X = X.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="X must hold finite numbers"):
        least_squares(X, Y)


@pytest.mark.integration
def test_closed_form_reproduces_spec_on_mnist(mnist):
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
