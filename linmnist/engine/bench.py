"""``make bench``: the engine against the study's naive algorithm and a PyTorch loop, like for like.

The seed-fidelity run (evaluated after every iteration) on the same batches by the naive
reference (``linmnist.engine.naive``, which trains the engine's very trajectory), a competent
PyTorch loop (float32, two threads; timed only) and the engine, each warmed up untimed first.
The peak memory is a fresh process's; ``throughput`` gives the second table.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from linmnist.engine import throughput
from linmnist.engine.evaluation import HISTORY_COLUMNS, LAZY_ROWS, Evaluator
from linmnist.engine.naive import naive_run
from linmnist.engine.sgd import sample_batches, train

# Untimed iterations of each implementation before the timed runs.
WARM_UP = 5
# The learning rate of the seed-fidelity runs (the study's Task 3 value for these batches).
LR = 0.001
# Largest relative difference between the engine's and the naive float64 training loss.
LOSS_RTOL = 1e-6


def torch_loop(X, Y, X_test, Y_test, *, lr: float, batches: np.ndarray, threads: int = 2):
    """History (``HISTORY_COLUMNS``) of the run in PyTorch, float32 on ``threads`` threads."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        Xr = torch.from_numpy(np.ascontiguousarray(X.T, dtype=np.float32))
        Yr = torch.from_numpy(np.ascontiguousarray(Y.T, dtype=np.float32))
        Xs = torch.from_numpy(np.ascontiguousarray(X_test.T, dtype=np.float32))
        y, y_test = Yr.argmax(dim=1), torch.from_numpy(np.argmax(Y_test, axis=0))
        W = torch.zeros(Y.shape[0], X.shape[0])
        rows = []
        with torch.no_grad():
            for t, idx in enumerate(batches):
                i = torch.from_numpy(idx)
                Xb, Yb = Xr[i], Yr[i]
                W -= (lr / len(idx)) * ((Xb @ W.T - Yb).T @ Xb)
                Z, Zs = Xr @ W.T, Xs @ W.T
                loss = 0.5 * ((Z - Yr) ** 2).sum() / len(Xr)
                acc = (Z.argmax(dim=1) == y).float().mean()
                test_acc = (Zs.argmax(dim=1) == y_test).float().mean()
                rows.append((t, loss.item(), acc.item(), test_acc.item()))
    finally:
        torch.set_num_threads(previous)
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def compare(X, Y, X_test, Y_test, *, lr: float = LR, batch_size: int, iterations: int,
            seed: int = 0, with_torch: bool = True) -> dict:  # fmt: skip
    """Times of the naive, PyTorch and engine runs on the same batches, and their agreement."""
    batches = sample_batches(X.shape[1], batch_size=batch_size, iterations=iterations, seed=seed)
    warm_up = batches[:WARM_UP]
    t0 = time.perf_counter()
    evaluator = Evaluator(X, Y, X_test, Y_test)
    _ = evaluator.rows32, evaluator.projection
    setup = time.perf_counter() - t0

    def engine(b):
        return train(X, Y, lr=lr, batch_size=batch_size, iterations=len(b), batches=b,
                     X_test=X_test, Y_test=Y_test, evaluator=evaluator)  # fmt: skip

    runs = {"naive": lambda b: naive_run(X, Y, X_test, Y_test, lr=lr, batches=b), "engine": engine}
    if with_torch:
        runs["torch"] = lambda b: torch_loop(X, Y, X_test, Y_test, lr=lr, batches=b)
    seconds, out = {}, {}
    for name, run in runs.items():
        # The engine's warm-up goes past its first chunk, so its every kernel is loaded.
        run(batches[: LAZY_ROWS + WARM_UP] if name == "engine" else warm_up)
        t0 = time.perf_counter()
        out[name] = run(batches)
        seconds[name] = time.perf_counter() - t0
    (naive, naive_W), fast = out["naive"], out["engine"]
    same_acc = all(np.array_equal(naive[c], fast.history[c]) for c in ("train_acc", "test_acc"))
    return {
        "batch_size": batch_size,
        "naive_s": seconds["naive"],
        "torch_s": seconds.get("torch"),
        "engine_s": seconds["engine"],
        "setup_s": setup,
        "ratio": seconds["naive"] / seconds["engine"],
        "torch_ratio": seconds["torch"] / seconds["engine"] if with_torch else None,
        "same_weights": bool(np.array_equal(naive_W, fast.W)),
        "identical_accuracy": same_acc,
        "max_loss_rel_err": float(np.max(np.abs(fast.history.train_loss / naive.train_loss - 1))),
    }


def agrees(result: dict) -> bool:
    """Whether the engine reproduced the naive run: its weights, accuracies and loss."""
    same = result["same_weights"] and result["identical_accuracy"]
    return same and result["max_loss_rel_err"] <= LOSS_RTOL


def table(results: list[dict], peaks: list[float]) -> str:
    """The bench's table: one line per batch size."""
    lines = [
        f"{'batch':>6} {'naive s':>8} {'torch s':>8} {'engine s':>9} {'set-up s':>9} "
        f"{'naive/eng':>10} {'torch/eng':>10} {'same run':>9} {'loss rel err':>13} {'peak GB':>8}"
    ]
    for r, peak in zip(results, peaks, strict=True):
        torch_s = "-" if r["torch_s"] is None else f"{r['torch_s']:.1f}"
        torch_ratio = "-" if r["torch_ratio"] is None else f"{r['torch_ratio']:.1f}x"
        same = r["same_weights"] and r["identical_accuracy"]
        lines.append(
            f"{r['batch_size']:>6} {r['naive_s']:>8.1f} {torch_s:>8} {r['engine_s']:>9.2f} "
            f"{r['setup_s']:>9.2f} {r['ratio']:>9.1f}x {torch_ratio:>10} {str(same):>9} "
            f"{r['max_loss_rel_err']:>13.1e} {peak:>8.2f}"
        )
    return "\n".join(lines)


def peak_rss_of_one_run(batch_size: int, iterations: int) -> float:
    """Peak resident memory (GB) of a fresh process that loads MNIST and runs the engine once."""
    code = (
        f"from linmnist.engine.bench import probe_memory; probe_memory({batch_size}, {iterations})"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def peak_rss_gb() -> float:
    """Peak resident memory of this process (GB): /proc's VmHWM (ru_maxrss spans an exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _mnist():
    from linmnist.engine.data import load_mnist, prepare

    (x, y), (xt, yt) = load_mnist()
    return prepare(x, y), prepare(xt, yt)


def bench(iterations: int, batch_sizes: list[int], *, with_torch: bool = True) -> bool:
    """Print the bench's table on MNIST; True when every engine run agrees with the naive one."""
    (X, Y), (Xt, Yt) = _mnist()
    print(
        f"Seed-fidelity run on MNIST: lr {LR}, {iterations} iterations, train and test "
        "evaluated after every iteration. naive = the study's float64 products; torch = float32, "
        "2 threads, one product per split per iteration; set-up = the engine's evaluator "
        "(built once per data set, its quantities read from the disk cache once computed), not in "
        "'engine s'; peak = one engine run in a fresh process."
    )
    results = [
        compare(X, Y, Xt, Yt, batch_size=b, iterations=iterations, with_torch=with_torch)
        for b in batch_sizes
    ]
    peaks = [peak_rss_of_one_run(b, iterations) for b in batch_sizes]
    print(table(results, peaks), end="\n\n")
    print(throughput.table(throughput.measure(X, Y, batch_sizes=batch_sizes,
                                              iterations=iterations), iterations))  # fmt: skip
    return all(agrees(r) for r in results)


def probe_memory(batch_size: int, iterations: int) -> None:
    """Load MNIST, make one engine run and print this process's peak memory (GB)."""
    (X, Y), (Xt, Yt) = _mnist()
    train(X, Y, lr=LR, batch_size=batch_size, iterations=iterations, X_test=Xt, Y_test=Yt)
    print(peak_rss_gb())
