"""``make bench``: the engine against the study's naive algorithm, side by side in one run.

The naive reference (``linmnist.engine.naive.train_naive``) trains with the same updates
and, after every update, evaluates in float64 the way the study did: one full product W X
for the loss, another for the training accuracy, and one with the test set. Both runs use
the same batches.
Each is first run untimed for a few iterations, so that neither timing includes one-off
costs of the process (BLAS start-up, loading the compiled kernels from numba's cache).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import numpy as np

from linmnist.engine.naive import train_naive
from linmnist.engine.sgd import sample_batches, train
from linmnist.engine.validation import UsageError, check_int

# Untimed iterations of each implementation before the timed runs.
WARM_UP = 5


def compare(X, Y, X_test, Y_test, *, lr: float, batch_size: int, iterations: int, seed: int = 0):
    """Time the naive reference and the engine on the same batches; check they agree."""
    batches = sample_batches(X.shape[1], batch_size=batch_size, iterations=iterations, seed=seed)
    warm_up = batches[:WARM_UP]
    train_naive(X, Y, X_test, Y_test, lr=lr, batches=warm_up)
    train(X, Y, lr=lr, batch_size=batch_size, iterations=len(warm_up), batches=warm_up,
          X_test=X_test, Y_test=Y_test)  # fmt: skip
    t0 = time.perf_counter()
    naive = train_naive(X, Y, X_test, Y_test, lr=lr, batches=batches)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = train(
        X,
        Y,
        lr=lr,
        batch_size=batch_size,
        iterations=iterations,
        batches=batches,
        X_test=X_test,
        Y_test=Y_test,
    ).history
    t_fast = time.perf_counter() - t0
    same_acc = bool(
        np.array_equal(naive.train_acc, fast.train_acc)
        and np.array_equal(naive.test_acc, fast.test_acc)
    )
    loss_rel = float(np.max(np.abs(fast.train_loss / naive.train_loss - 1)))
    return {
        "batch_size": batch_size,
        "naive_s": t_naive,
        "engine_s": t_fast,
        "ratio": t_naive / t_fast,
        "identical_accuracy": same_acc,
        "max_loss_rel_err": loss_rel,
    }


def _peak_rss_of_one_run(batch_size: int, iterations: int) -> float:
    """Peak resident memory (GB) of a fresh process that loads MNIST and runs the engine once."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "linmnist.engine.bench",
            "--probe-memory",
            str(batch_size),
            str(iterations),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip())


def _mnist():
    from linmnist.engine.data import load_mnist, prepare

    (x, y), (xt, yt) = load_mnist()
    return prepare(x, y), prepare(xt, yt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m linmnist.engine.bench", description=__doc__)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1])
    parser.add_argument("--probe-memory", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        check_int("--iterations", args.iterations, low=1)
        for batch_size in args.batch_sizes:
            check_int("--batch-sizes", batch_size, low=1)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    (X, Y), (Xt, Yt) = _mnist()
    if args.probe_memory:
        batch_size, iterations = args.probe_memory
        train(X, Y, lr=0.001, batch_size=batch_size, iterations=iterations, X_test=Xt, Y_test=Yt)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
        return 0
    print(
        f"Seed-fidelity run on MNIST: lr 0.001, {args.iterations} iterations, train and test "
        "evaluated after every iteration; naive = float64 products as in the study."
    )
    print(
        f"{'batch':>6} {'naive s':>9} {'engine s':>9} {'ratio':>7} {'same acc':>9} "
        f"{'loss rel err':>13} {'peak GB':>8}"
    )
    ok = True
    for batch_size in args.batch_sizes:
        r = compare(X, Y, Xt, Yt, lr=0.001, batch_size=batch_size, iterations=args.iterations)
        peak = _peak_rss_of_one_run(batch_size, args.iterations)
        print(
            f"{batch_size:>6} {r['naive_s']:>9.1f} {r['engine_s']:>9.2f} {r['ratio']:>6.1f}x "
            f"{str(r['identical_accuracy']):>9} {r['max_loss_rel_err']:>13.1e} {peak:>8.2f}"
        )
        ok &= r["identical_accuracy"] and r["max_loss_rel_err"] <= 1e-6
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
