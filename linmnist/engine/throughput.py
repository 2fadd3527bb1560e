"""Training-only throughput against the memory-traffic floor (``make bench``'s second table).

Training only is ``sgd.train`` with no test set and one evaluation; the floor is the time to
read every batch's samples twice (numpy's two products). Both run on the same batches,
alternately, ``repeats`` times.
"""

from __future__ import annotations

import time

import numba
import numpy as np
import pandas as pd

from linmnist.engine.evaluation import Evaluator
from linmnist.engine.sgd import sample_batches, train
from linmnist.engine.validation import check_int

# The learning rate of the timed runs: stable at every batch size on MNIST.
LR = 0.001


@numba.njit(nogil=True, fastmath={"reassoc", "contract"})
def _read_twice(XT, batches):  # pragma: no cover (compiled)
    """Sum every sample of every batch twice, straight from the data set (rows of XT)."""
    total = 0.0
    for ids in batches:
        for _ in range(2):
            for i in ids:
                x = XT[i]
                s = x.dtype.type(0)
                for j in range(x.shape[0]):
                    s += x[j]
                total += s
    return total


def measure(
    X: np.ndarray, Y: np.ndarray, *, batch_sizes, iterations: int = 1000, repeats: int = 5
) -> pd.DataFrame:
    """Per batch size: training-only and floor seconds over ``repeats``, and their ratio."""
    iterations = check_int("iterations", iterations, low=1)
    repeats = check_int("repeats", repeats, low=1)
    evaluator = Evaluator(X, Y)
    XT = np.ascontiguousarray(X.T)
    rows = []
    for batch_size in batch_sizes:
        batches = sample_batches(X.shape[1], batch_size=batch_size, iterations=iterations)
        run = dict(lr=LR, batch_size=batch_size, iterations=iterations, batches=batches,
                   eval_every=iterations, evaluator=evaluator)  # fmt: skip
        train(X, Y, **{**run, "iterations": 5, "batches": batches[:5], "eval_every": 5})
        _read_twice(XT, batches[:5])  # compiled and warm before anything is timed
        seconds: dict[str, list[float]] = {"train": [], "floor": []}
        for _ in range(repeats):
            t0 = time.perf_counter()
            train(X, Y, **run)
            seconds["train"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _read_twice(XT, batches)
            seconds["floor"].append(time.perf_counter() - t0)
        row = {"batch_size": batch_size}
        for name, values in seconds.items():
            row.update({f"{name}_s": np.median(values), f"{name}_min": min(values),
                        f"{name}_max": max(values)})  # fmt: skip
        rows.append({**row, "ratio": row["train_s"] / row["floor_s"]})
    return pd.DataFrame(rows)


def table(frame: pd.DataFrame, iterations: int) -> str:
    """``measure``'s frame as the bench prints it."""
    lines = [
        f"Training only, {iterations} iterations (median and range of the repeats): train = "
        "updates and divergence check; floor = reading each batch's samples twice.",
        f"{'batch':>6} {'train s':>8} {'range':>13} {'floor s':>8} {'range':>13} "
        f"{'train/floor':>12}",
    ]
    for r in frame.itertuples():
        lines.append(
            f"{r.batch_size:>6} {r.train_s:>8.3f} {r.train_min:>6.3f}–{r.train_max:<6.3f} "
            f"{r.floor_s:>8.3f} {r.floor_min:>6.3f}–{r.floor_max:<6.3f} {r.ratio:>11.2f}x"
        )
    return "\n".join(lines)
