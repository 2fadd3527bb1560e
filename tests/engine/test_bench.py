"""The benchmark's comparison, on synthetic data."""

import pytest

from linmnist.engine.bench import compare


@pytest.mark.parametrize("batch_size", [1, 50])
def test_compare_times_both_and_finds_them_identical(small_data, batch_size):
    (X, Y), (Xt, Yt) = small_data
    r = compare(X, Y, Xt, Yt, lr=0.004, batch_size=batch_size, iterations=40)
    assert r["identical_accuracy"]
    assert r["max_loss_rel_err"] < 1e-9
    assert r["naive_s"] > 0 and r["engine_s"] > 0
    assert r["ratio"] == pytest.approx(r["naive_s"] / r["engine_s"])
