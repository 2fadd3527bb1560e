"""What one grid cell computes: one configuration trained over several seeds.

Seed ``s`` draws its batches with ``np.random.default_rng(s)``; in Task 5 it also draws its own
subset S' of ``n_prime`` training samples (``draw_subset(..., seed=s)``), so the spread over
seeds covers both the sampling of the batches and the choice of S'. The seeds listed in
``fidelity_seeds`` are evaluated after every iteration (the study's fidelity), the others every
``eval_every`` iterations. The tasks of ``grids.FINAL_ACCURACY`` (whose histories are read for
their losses only) score the accuracies at the last evaluation only.

A worker process makes many cells: the data, the warm-up of the compiled kernels and the
evaluator of the full training set (its Gram matrix) are made once per process and shared by
every cell, so that a cell's wall time is mostly its runs (``cell_job`` records both).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linmnist.engine import noise_floor
from linmnist.engine.data import load_mnist, prepare
from linmnist.engine.evaluation import LAZY_ROWS, Evaluator
from linmnist.engine.lockstep import train_rates
from linmnist.engine.sgd import TrainResult, draw_subset, train
from linmnist.engine.spectrum import Spectrum, excess_over_gd, spectrum
from linmnist.engine.validation import UsageError
from linmnist.experiments.grids import FINAL_ACCURACY, check_seed_count, eval_period
from linmnist.experiments.jobs import huge_pages
from linmnist.experiments.results import (
    atomic_write_text,
    final_metrics,
    histories,
    history_path,
    json_path,
    plain,
    read_record,
    summarize,
)


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
    evaluator: Evaluator | None = None,
    accuracy: str = "every",
) -> list[TrainResult]:
    """Train one configuration once per seed: one TrainResult per seed, in their order.

    Parameters
    ----------
    seeds : sequence of int
        Distinct seeds, one run each.
    fidelity_seeds : sequence of int
        Seeds (among ``seeds``) evaluated after every iteration, the others every
        ``eval_every`` iterations.
    n_prime : int, optional
        Train each seed on its own random subset of ``n_prime`` samples drawn without
        replacement (Task 5); the training metrics are then those of the subset.
    evaluator : Evaluator, optional
        Shared by the seeds when they train on the same data (without ``n_prime``); built
        here when not given.

    The other parameters are those of ``linmnist.engine.sgd.train``.
    """
    seeds = _check_seeds(seeds, fidelity_seeds)
    # Without subsets every seed trains on the same data: one evaluator (its Gram matrix)
    # serves them all.
    shared = None
    if n_prime is None:
        shared = Evaluator(X, Y, X_test, Y_test) if evaluator is None else evaluator
    run: dict[str, Any] = dict(
        lr=lr, batch_size=batch_size, iterations=iterations, X_test=X_test, Y_test=Y_test,
        accuracy=accuracy,
    )  # fmt: skip
    return [
        train(
            *_training_set(X, Y, n_prime=n_prime, seed=seed),
            **run,
            seed=seed,
            evaluator=shared,
            eval_every=eval_period(seed, fidelity_seeds=fidelity_seeds, eval_every=eval_every),
        )
        for seed in seeds
    ]


def _check_seeds(seeds: Sequence[int], fidelity_seeds: Sequence[int]) -> list[int]:
    """``seeds`` as a list, if they are distinct, not too many, and hold ``fidelity_seeds``."""
    seeds = list(seeds)
    check_seed_count(len(seeds))
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"seeds must be a non-empty sequence of distinct integers, got {seeds}")
    if not set(fidelity_seeds) <= set(seeds):
        raise UsageError(
            f"fidelity_seeds must be a subset of seeds {seeds}, got {list(fidelity_seeds)}"
        )
    return seeds


def _training_set(X: np.ndarray, Y: np.ndarray, *, n_prime: int | None, seed: int):
    """``(X, Y)``, or the subset of ``n_prime`` samples of ``seed`` (Task 5)."""
    if n_prime is None:
        return X, Y
    subset = draw_subset(X.shape[1], n_prime, seed=seed)
    return X[:, subset], Y[:, subset]


@functools.cache
def prepared(dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X, Y, X_test, Y_test)`` of ``dataset``, loaded once per process, in 2 MB pages
    (``jobs.huge_pages``)."""
    with huge_pages(True):
        (x, y), (x_test, y_test) = load_mnist(dataset)
        return (*prepare(x, y), *prepare(x_test, y_test))


@functools.cache
def data_spectrum(dataset: str) -> Spectrum:
    """The ``Spectrum`` of ``dataset``'s training set, once per process."""
    X, Y, _, _ = prepared(dataset)
    return spectrum(X, Y)


@functools.cache
def moments(
    dataset: str, n_prime: int | None = None, seed: int = 0
) -> tuple[Spectrum, noise_floor.FloorModel]:
    """(Spectrum, FloorModel) of ``dataset``'s training set, or of the subset S' that seed
    ``seed`` draws in Task 5, once per process."""
    X, Y, _, _ = prepared(dataset)
    if n_prime is None:
        spec = data_spectrum(dataset)
    else:
        subset = draw_subset(X.shape[1], n_prime, seed=seed)
        X, Y = X[:, subset], Y[:, subset]
        spec = spectrum(X, Y)
    return spec, noise_floor.floor_model(spec, X, Y)


def final_excesses(spec: Spectrum, runs: Sequence[TrainResult]) -> list[float]:
    """Each run's excess over gradient descent after its updates (``excess_over_gd``), NaN
    for a run that diverged."""
    return [
        np.nan
        if run.diverged_at is not None
        else excess_over_gd(spec, run.W, run.lr, run.iterations)
        for run in runs
    ]


def cell_lr(params: dict[str, Any]) -> float:
    """A cell's lr: ``lr``, or ``edge_factor`` times the instability edge predicted for its
    batch size (``noise_floor.largest_stable_lr``) on the training set."""
    if "lr" in params:
        return params["lr"]
    _, model = moments(params["dataset"])
    edge = noise_floor.largest_stable_lr(model, batch_size=params["batch_size"])
    return float(params["edge_factor"] * edge)


@functools.cache
def shared_evaluator(dataset: str) -> Evaluator:
    """The evaluator of ``dataset``'s full training and test sets, built once per process."""
    return Evaluator(*prepared(dataset))


@functools.cache
def warmed_up(dataset: str) -> bool:
    """Run each code path of ``train`` once on a slice of the data, once per process, so that
    one-off set-up (loading the compiled kernels, BLAS start-up) lands in no run's seconds:
    the incremental scores (batch 1), the stacked products of a first chunk and the lazy
    scores of the next (batch 100), and a divergence."""
    X, Y, X_test, Y_test = (a[:, :512] for a in prepared(dataset))
    for batch_size, lr, iterations in ((1, 1e-3, 3), (100, 1e-3, LAZY_ROWS + 1), (100, 10.0, 3)):
        train(X, Y, lr=lr, batch_size=batch_size, iterations=iterations, X_test=X_test,
              Y_test=Y_test)  # fmt: skip
    return True


def cell_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of a grid cell (``linmnist.experiments.products.cell_product``).

    Trains every seed of the cell, writes ``<stem>.history.csv`` into ``out`` and returns the
    fields of its record: task, cell, notebook (None), one entry per seed
    (``linmnist.experiments.results.SEED_FIELDS``, with the final excess over gradient descent
    measured on the full training set), ``derived`` (the parameters the job
    computed: the lr of an ``edge`` cell, ``cell_lr``), and the cell's times: ``job_seconds``
    (this function, wall), ``run_seconds`` (the seeds' own seconds, summed) and
    ``overhead_seconds``, their difference (data, warm-up, set-up and writing).
    """
    start = time.perf_counter()
    X, Y, X_test, Y_test = prepared(params["dataset"])
    warmed_up(params["dataset"])
    n_prime = params.get("n_prime")
    lr = cell_lr(params)
    runs = train_seeds(
        X,
        Y,
        X_test=X_test,
        Y_test=Y_test,
        lr=lr,
        batch_size=params["batch_size"],
        iterations=params["iterations"],
        seeds=params["seeds"],
        fidelity_seeds=params["fidelity_seeds"],
        eval_every=params["eval_every"],
        n_prime=n_prime,
        evaluator=None if n_prime is not None else shared_evaluator(params["dataset"]),
        accuracy="final" if params["task"] in FINAL_ACCURACY else "every",
    )
    atomic_write_text(history_path(out, stem), histories(runs).to_csv(index=False))
    seeds = _entries(runs, None if n_prime is not None else data_spectrum(params["dataset"]))
    extra = {} if "lr" in params else {"derived": {"lr": lr}}
    return _cell_record(params, seeds, start, sum(run.seconds for run in runs), **extra)


def _entries(runs: Sequence[TrainResult], spec: Spectrum | None) -> list[dict[str, Any]]:
    """The record's per-seed entries of ``runs`` (``summarize``), each with its run's final
    excess over gradient descent on ``spec``'s training set (NaN without ``spec``: a run on
    its own subset)."""
    summary = summarize(runs)
    if spec is not None:
        summary["final_excess"] = final_excesses(spec, runs)
    return [plain(row) for row in summary.to_dict("records")]


def _cell_record(
    params: dict[str, Any], seeds: list, start: float, run_seconds: float, **extra: Any
) -> dict[str, Any]:
    """A cell job's fields of its record (``cell_job``), its job started at ``start``."""
    job_seconds = time.perf_counter() - start
    return {
        "task": params["task"],
        "cell": params["cell"],
        "notebook": None,
        "seeds": seeds,
        **extra,
        "job_seconds": job_seconds,
        "run_seconds": run_seconds,
        "overhead_seconds": job_seconds - run_seconds,
    }


def sourced_cell_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of a cell whose runs another product made, named by ``params["source"]``: a
    cell of an earlier task (``products.source_cell``) or its task's rates trained side by
    side (``lockstep_job``, whose files hold a column ``lr``). No training: its seeds' rows of
    the source's history at its own evaluation schedule (accuracies at the last evaluation
    only for ``FINAL_ACCURACY``), as ``cell_job`` would have written them, and the source's
    final excesses and divergences. Its record's ``source`` names the source; its seeds'
    ``seconds`` are those of a lockstep source's runs, NaN for another cell's (whose runs
    were evaluated on its own schedule). The source's files lie beside its own: ``out`` is a
    staging directory in its own task's directory."""
    start = time.perf_counter()
    task, cell = params["source"]["task"], params["source"]["cell"]
    directory = Path(out).parent.parent / task
    entries = read_record(json_path(directory, cell))["seeds"]
    history = pd.read_csv(history_path(directory, cell))
    lockstep = "lr" in history.columns
    if lockstep:  # every rate's runs: this cell's rate only
        history = history[np.isclose(history["lr"], params["lr"], rtol=1e-12, atol=0)]
        history = history.drop(columns="lr")
        entries = [e for e in entries if math.isclose(e["lr"], params["lr"], rel_tol=1e-12)]
    source = {entry["seed"]: entry for entry in entries}
    last = params["iterations"] - 1
    frames, seeds = [], []
    for seed in params["seeds"]:
        period = eval_period(seed, fidelity_seeds=params["fidelity_seeds"],
                             eval_every=params["eval_every"])  # fmt: skip
        rows = history[history["seed"] == seed]
        rows = rows[(rows["iteration"] % period == 0) | (rows["iteration"] == last)].copy()
        if params["task"] in FINAL_ACCURACY:
            rows.loc[rows.index[:-1], ["train_acc", "test_acc"]] = np.nan
        frames.append(rows)
        seeds.append(plain({
            "seed": seed, "eval_every": period, **final_metrics(rows),
            "final_excess": source[seed]["final_excess"],
            "diverged_at": source[seed]["diverged_at"],
            "seconds": source[seed]["seconds"] if lockstep else math.nan,
        }))  # fmt: skip
    atomic_write_text(history_path(out, stem), pd.concat(frames).to_csv(index=False))
    run_seconds = sum(s["seconds"] for s in seeds) if lockstep else 0.0
    return _cell_record(params, seeds, start, run_seconds, source=f"{task}/{cell}")


def lockstep_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of ``lockstep/<task>_bs<B>`` (``products.lockstep_groups``): per seed, every
    rate of ``params["lrs"]`` trained side by side (``linmnist.engine.lockstep.train_rates``).
    Writes ``<stem>.history.csv`` (columns lr, then those of ``cell_job``'s) and returns a
    seed row per rate and seed (``lr`` and ``SEED_FIELDS``) and its times."""
    start = time.perf_counter()
    X, Y, X_test, Y_test = prepared(params["dataset"])
    warmed_up(params["dataset"])
    runs: list[TrainResult] = []
    for seed in params["seeds"]:
        runs += train_rates(
            X, Y, X_test=X_test, Y_test=Y_test, lrs=params["lrs"],
            batch_size=params["batch_size"], iterations=params["iterations"], seed=seed,
            eval_every=eval_period(seed, fidelity_seeds=params["fidelity_seeds"],
                                   eval_every=params["eval_every"]),
            evaluator=shared_evaluator(params["dataset"]),
            accuracy="final" if params["task"] in FINAL_ACCURACY else "every",
        )  # fmt: skip
    history = histories(runs)
    history.insert(0, "lr", np.repeat([run.lr for run in runs], [len(r.history) for r in runs]))
    atomic_write_text(history_path(out, stem), history.to_csv(index=False))
    entries = _entries(runs, data_spectrum(params["dataset"]))
    seeds = [{"lr": run.lr, **entry} for run, entry in zip(runs, entries, strict=True)]
    run_seconds = sum(run.seconds for run in runs)
    return {**_cell_record(params, seeds, start, run_seconds), "task": "lockstep"}
