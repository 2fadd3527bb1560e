"""The bench's training-only table: both timings per batch size, side by side."""

import numpy as np
import pytest

from linmnist.engine import throughput
from linmnist.engine.validation import UsageError


def test_the_floor_reads_every_batch_sample_twice():
    XT = np.arange(12, dtype=np.float32).reshape(4, 3)  # sample i sums to 9 i + 3
    batches = np.array([[0, 3], [1, 1]])
    assert throughput._read_twice(XT, batches) == pytest.approx(2 * (3 + 30 + 12 + 12))


def test_measure_gives_each_batch_size_its_timings_and_ratio(small_data):
    (X, Y), _ = small_data
    frame = throughput.measure(X, Y, batch_sizes=[1, 50], iterations=20, repeats=3)
    assert frame["batch_size"].tolist() == [1, 50]
    for name in ("train", "floor"):
        assert (frame[f"{name}_min"] <= frame[f"{name}_s"]).all()
        assert (frame[f"{name}_s"] <= frame[f"{name}_max"]).all()
    np.testing.assert_allclose(frame["ratio"], frame["train_s"] / frame["floor_s"])
    text = throughput.table(frame, 20)
    assert len(text.splitlines()) == 4 and "train/floor" in text
    with pytest.raises(UsageError, match="repeats"):
        throughput.measure(X, Y, batch_sizes=[1], repeats=0)
