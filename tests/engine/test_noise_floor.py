"""The noise-floor predictions: their limits and the recursion's approach to the fixed point."""

import math

import numpy as np
import pytest

from linmnist.engine.noise import noise_scales
from linmnist.engine.noise_floor import (
    excess_after,
    first_order_excess,
    floor_model,
    stationary_excess,
)
from linmnist.engine.spectrum import spectrum


@pytest.fixture(scope="module")
def case(synthetic):
    (X, Y), _ = synthetic(1500, d=80, seed=11)
    spec = spectrum(X, Y)
    return spec, floor_model(spec, X, Y), X, Y


def test_tr_sigma_star_is_the_noise_at_the_optimum(case):
    spec, model, X, Y = case
    exact = noise_scales(spec.W_star, X, Y).tr_sigma
    assert model.tr_sigma_star == pytest.approx(exact, rel=1e-6)  # Z is float32


def test_the_stationary_floor_tends_to_the_first_order_one_at_small_steps(case):
    spec, model, _, _ = case
    for batch_size in (1, 100):
        small = dict(lr=1e-4 * spec.lr_max, batch_size=batch_size)
        assert stationary_excess(model, **small) == pytest.approx(
            first_order_excess(model, **small), rel=1e-3
        )
    large = dict(lr=0.2 * spec.lr_max, batch_size=1)
    assert stationary_excess(model, **large) > 1.05 * first_order_excess(model, **large)


def test_the_floor_is_unbounded_where_single_sample_sgd_diverges(case):
    spec, model, _, _ = case
    assert math.isinf(stationary_excess(model, lr=0.9 * spec.lr_max, batch_size=1))
    assert math.isinf(excess_after(model, lr=0.9 * spec.lr_max, batch_size=1, iterations=3000))


def test_the_recursion_reaches_the_fixed_point(case):
    spec, model, _, _ = case
    settings = dict(lr=0.1 * spec.lr_max, batch_size=10)
    early = excess_after(model, **settings, iterations=5)
    late = excess_after(model, **settings, iterations=20_000)
    assert early > 0  # the noise of the first steps, far from the optimum, is larger
    assert late == pytest.approx(stationary_excess(model, **settings), rel=0.02)
    assert np.isfinite(late)


def test_batch_sizes_side_by_side_are_each_alone(case):
    spec, model, _, _ = case
    lr = 0.1 * spec.lr_max
    together = excess_after(model, lr=lr, batch_size=[1, 10], iterations=50)
    alone = [excess_after(model, lr=lr, batch_size=b, iterations=50) for b in (1, 10)]
    np.testing.assert_allclose(together, alone, rtol=1e-12)
