"""The benchmark's comparison and table, on synthetic data (no timing assertions)."""

import numpy as np
import pytest

from linmnist.engine.bench import agrees, compare, peak_rss_gb, table, torch_loop
from linmnist.engine.naive import train_naive
from linmnist.engine.sgd import sample_batches


# The PyTorch column imports torch (seconds): make test runs it, make test-fast the numpy one.
@pytest.mark.parametrize(
    ("batch_size", "with_torch"), [(1, False), pytest.param(50, True, marks=pytest.mark.slow)]
)
def test_compare_runs_one_trajectory_and_finds_it_identical(small_data, batch_size, with_torch):
    (X, Y), (Xt, Yt) = small_data
    r = compare(X, Y, Xt, Yt, lr=0.004, batch_size=batch_size, iterations=40, with_torch=with_torch)
    assert r["same_weights"] and r["identical_accuracy"] and agrees(r)
    assert r["max_loss_rel_err"] < 1e-9
    assert r["naive_s"] > 0 and r["engine_s"] > 0 and r["setup_s"] > 0
    assert r["ratio"] == pytest.approx(r["naive_s"] / r["engine_s"])
    assert (r["torch_s"] is not None) == with_torch
    lines = table([r], [0.25]).splitlines()
    assert len(lines) == 2 and lines[1].split()[0] == str(batch_size)
    assert lines[1].split()[-1] == "0.25" and "True" in lines[1]


def test_a_differing_history_fails_the_bench():
    good = {"same_weights": True, "identical_accuracy": True, "max_loss_rel_err": 1e-12}
    assert agrees(good)
    assert not agrees({**good, "identical_accuracy": False})
    assert not agrees({**good, "same_weights": False})
    assert not agrees({**good, "max_loss_rel_err": 1e-3})


@pytest.mark.slow
def test_the_torch_loop_trains_the_same_model(small_data):
    """float32 on another library: the same run up to rounding (loss within 1e-4)."""
    (X, Y), (Xt, Yt) = small_data
    batches = sample_batches(X.shape[1], batch_size=20, iterations=30, seed=1)
    naive = train_naive(X, Y, Xt, Yt, lr=0.004, batches=batches)
    loop = torch_loop(X, Y, Xt, Yt, lr=0.004, batches=batches)
    assert list(loop.iteration) == list(range(30))
    np.testing.assert_allclose(loop.train_loss, naive.train_loss, rtol=1e-4)
    assert np.max(np.abs(loop.train_acc - naive.train_acc)) <= 2 / X.shape[1]


def test_peak_memory_is_this_process_high_water_mark():
    before = peak_rss_gb()
    block = np.ones(64 * 1024**2 // 8)  # 64 MB, touched
    assert peak_rss_gb() >= before and peak_rss_gb() > 0.05
    del block
