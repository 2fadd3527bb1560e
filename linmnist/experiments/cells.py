"""What one grid cell computes: one configuration trained over several seeds.

Seed ``s`` draws its batches with ``np.random.default_rng(s)``; in Task 5 it also draws its own
subset S' of ``n_prime`` training samples (``draw_subset(..., seed=s)``), so the spread over
seeds covers both the sampling of the batches and the choice of S'. The seeds listed in
``fidelity_seeds`` are evaluated after every iteration (the study's fidelity), the others every
``eval_every`` iterations.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linmnist.engine.data import load_mnist, prepare
from linmnist.engine.evaluation import Evaluator
from linmnist.engine.sgd import TrainResult, draw_subset, train
from linmnist.engine.validation import UsageError
from linmnist.experiments.results import (
    atomic_write_text,
    histories,
    history_path,
    plain,
    summarize,
)


def eval_period(seed: int, *, fidelity_seeds: Sequence[int], eval_every: int) -> int:
    """Evaluation period of ``seed``: 1 for a fidelity seed, ``eval_every`` otherwise."""
    return 1 if seed in fidelity_seeds else eval_every


def train_seeds(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    lr: float,
    batch_size: int,
    iterations: int,
    seeds: Sequence[int] = (0,),
    fidelity_seeds: Sequence[int] = (0,),
    eval_every: int = 1,
    n_prime: int | None = None,
    X_test: np.ndarray | None = None,
    Y_test: np.ndarray | None = None,
) -> list[TrainResult]:
    """Train one configuration once per seed.

    Parameters
    ----------
    X, Y : ndarray (784, N), (10, N)
        Training set, feature-major, as ``linmnist.engine.data.prepare`` returns it.
    lr, batch_size, iterations : float, int, int
        The SGD configuration (see ``linmnist.engine.sgd.train``).
    seeds : sequence of int
        Distinct seeds, one run each.
    fidelity_seeds : sequence of int
        Seeds (among ``seeds``) evaluated after every iteration.
    eval_every : int
        Evaluation period of the other seeds (>= 1).
    n_prime : int, optional
        Train each seed on its own random subset of ``n_prime`` samples drawn without
        replacement (Task 5); the training metrics are then those of the subset.
    X_test, Y_test : ndarray, optional
        Full test set, scored at every evaluated iteration.

    Returns
    -------
    list of TrainResult
        One result per seed, in the order of ``seeds``.
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"seeds must be a non-empty sequence of distinct integers, got {seeds}")
    if not set(fidelity_seeds) <= set(seeds):
        raise UsageError(
            f"fidelity_seeds must be a subset of seeds {seeds}, got {list(fidelity_seeds)}"
        )
    runs = []
    # Without subsets every seed trains on the same data: one evaluator (Gram matrix, float32
    # copy of the data) serves them all.
    shared = None if n_prime is not None else Evaluator(X, Y, X_test, Y_test)
    if shared is not None:
        _ = shared.X32  # the float32 copy is built here, not in the first seed's seconds
    for seed in seeds:
        Xs, Ys = X, Y
        if n_prime is not None:
            subset = draw_subset(X.shape[1], n_prime, seed=seed)
            Xs, Ys = X[:, subset], Y[:, subset]
        runs.append(
            train(
                Xs,
                Ys,
                lr=lr,
                batch_size=batch_size,
                iterations=iterations,
                seed=seed,
                X_test=X_test,
                Y_test=Y_test,
                evaluator=shared,
                eval_every=eval_period(seed, fidelity_seeds=fidelity_seeds, eval_every=eval_every),
            )
        )
    return runs


@functools.cache
def prepared(dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X, Y, X_test, Y_test)`` of ``dataset``, loaded once per process."""
    (x, y), (x_test, y_test) = load_mnist(dataset)
    return (*prepare(x, y), *prepare(x_test, y_test))


@functools.cache
def warmed_up(dataset: str) -> bool:
    """Run each code path of ``train`` once on a slice of the data, once per process, so that
    one-off set-up (loading the compiled kernels, BLAS start-up) lands in no run's seconds."""
    X, Y, X_test, Y_test = (a[:, :512] for a in prepared(dataset))
    for batch_size in (1, 100):  # the incremental scores (small batches) and the products
        train(X, Y, lr=1e-3, batch_size=batch_size, iterations=3, X_test=X_test, Y_test=Y_test)
    return True


def cell_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of a grid cell (``linmnist.experiments.products.cell_product``).

    Trains every seed of the cell, writes ``<stem>.history.csv`` into ``out`` and returns the
    fields of its record: task, cell, notebook (None) and one entry per seed
    (``linmnist.experiments.results.SEED_FIELDS``).
    """
    X, Y, X_test, Y_test = prepared(params["dataset"])
    warmed_up(params["dataset"])
    runs = train_seeds(
        X,
        Y,
        X_test=X_test,
        Y_test=Y_test,
        lr=params["lr"],
        batch_size=params["batch_size"],
        iterations=params["iterations"],
        seeds=params["seeds"],
        fidelity_seeds=params["fidelity_seeds"],
        eval_every=params["eval_every"],
        n_prime=params.get("n_prime"),
    )
    atomic_write_text(history_path(out, stem), histories(runs).to_csv(index=False))
    seeds = [plain(row) for row in summarize(runs).to_dict("records")]
    return {"task": params["task"], "cell": params["cell"], "notebook": None, "seeds": seeds}
