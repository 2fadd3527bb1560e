"""What one grid cell computes: one configuration trained over several seeds.

Seed ``s`` draws its batches with ``np.random.default_rng(s)`` (and in Task 5 its subset S',
``draw_subset``); ``fidelity_seeds`` are evaluated after every iteration, the others every
``eval_every``. A worker loads the data, warms up and builds the evaluator once for its cells.
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
from linmnist.experiments import results
from linmnist.experiments.grids import FINAL_ACCURACY, check_seed_count, eval_period, seed_period
from linmnist.experiments.jobs import huge_pages


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
    """One TrainResult per seed (with ``n_prime``, each on its own subset), as ``train``."""
    seeds = _check_seeds(seeds, fidelity_seeds)
    shared = None  # without subsets, one evaluator (its Gram matrix) serves every seed
    if n_prime is None:
        shared = Evaluator(X, Y, X_test, Y_test) if evaluator is None else evaluator
    run: dict[str, Any] = dict(
        lr=lr, batch_size=batch_size, iterations=iterations, X_test=X_test, Y_test=Y_test,
        accuracy=accuracy, evaluator=shared,
    )  # fmt: skip
    period = functools.partial(eval_period, fidelity_seeds=fidelity_seeds, eval_every=eval_every)
    return [
        train(*_training_set(X, Y, n_prime=n_prime, seed=s), **run, seed=s, eval_every=period(s))
        for s in seeds
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
    """``(X, Y, X_test, Y_test)`` of ``dataset``, once per process, in 2 MB pages."""
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
    """(Spectrum, FloorModel) of the training set, or of seed's Task 5 subset S' (cached)."""
    X, Y = _training_set(*prepared(dataset)[:2], n_prime=n_prime, seed=seed)
    spec = data_spectrum(dataset) if n_prime is None else spectrum(X, Y)
    return spec, noise_floor.floor_model(spec, X, Y)


def final_excesses(spec: Spectrum, runs: Sequence[TrainResult]) -> list[float]:
    """Each run's excess over gradient descent after its updates; NaN if it diverged."""
    return [
        np.nan
        if run.diverged_at is not None
        else excess_over_gd(spec, run.W, run.lr, run.iterations)
        for run in runs
    ]


def cell_lr(params: dict[str, Any]) -> float:
    """A cell's ``lr``, or ``edge_factor`` x the predicted instability edge of its batch size."""
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
    """Each code path of ``train`` run once per process, so set-up lands in no run's time."""
    X, Y, X_test, Y_test = (a[:, :512] for a in prepared(dataset))
    for batch_size, lr, iterations in ((1, 1e-3, 3), (100, 1e-3, LAZY_ROWS + 1), (100, 10.0, 3)):
        train(X, Y, lr=lr, batch_size=batch_size, iterations=iterations, X_test=X_test,
              Y_test=Y_test)  # fmt: skip
    return True


def cell_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of a grid cell: every seed trained, ``<stem>.history.csv`` written."""
    start = time.perf_counter()
    X, Y, X_test, Y_test = prepared(params["dataset"])
    warmed_up(params["dataset"])
    n_prime, lr = params.get("n_prime"), cell_lr(params)
    keys = ("batch_size", "iterations", "seeds", "fidelity_seeds", "eval_every")
    runs = train_seeds(
        X, Y, X_test=X_test, Y_test=Y_test, lr=lr, n_prime=n_prime, accuracy=_accuracy(params),
        evaluator=None if n_prime is not None else shared_evaluator(params["dataset"]),
        **{k: params[k] for k in keys},
    )  # fmt: skip
    results.atomic_write_text(
        results.history_path(out, stem), results.histories(runs).to_csv(index=False)
    )
    seeds = _entries(runs, None if n_prime is not None else data_spectrum(params["dataset"]))
    extra = {} if "lr" in params else {"derived": {"lr": lr}}
    return _cell_record(params, seeds, start, sum(run.seconds for run in runs), **extra)


def _accuracy(params: dict[str, Any]) -> str:
    return "final" if params["task"] in FINAL_ACCURACY else "every"


def _entries(runs: Sequence[TrainResult], spec: Spectrum | None) -> list[dict[str, Any]]:
    """The record's seed entries of ``runs``, with their final excess on ``spec`` (or NaN)."""
    summary = results.summarize(runs)
    if spec is not None:
        summary["final_excess"] = final_excesses(spec, runs)
    return [results.plain(row) for row in summary.to_dict("records")]


def _cell_record(
    params: dict[str, Any], seeds: list, start: float, run_seconds: float, **extra: Any
) -> dict[str, Any]:
    """A cell job's record fields, with its job's, its runs' and its overhead's seconds."""
    job_seconds = time.perf_counter() - start
    head = {"task": params["task"], "cell": params["cell"], "notebook": None, "seeds": seeds}
    times = {"job_seconds": job_seconds, "run_seconds": run_seconds}
    return {**head, **extra, **times, "overhead_seconds": job_seconds - run_seconds}


def sourced_cell_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of a cell whose runs ``params["source"]`` made, as ``cell_job`` writes."""
    start = time.perf_counter()
    task, cell = params["source"]["task"], params["source"]["cell"]
    directory = Path(out).parent.parent / task
    entries = results.read_record(results.json_path(directory, cell))["seeds"]
    history = pd.read_csv(results.history_path(directory, cell))
    lockstep = "lr" in history.columns
    if lockstep:  # every rate's runs: this cell's rate only
        history = history[np.isclose(history["lr"], params["lr"], rtol=1e-12, atol=0)]
        history = history.drop(columns="lr")
        entries = [e for e in entries if math.isclose(e["lr"], params["lr"], rel_tol=1e-12)]
    source = {entry["seed"]: entry for entry in entries}
    last = params["iterations"] - 1
    frames, seeds = [], []
    for seed in params["seeds"]:
        period = seed_period(params, seed)
        rows = history[history["seed"] == seed]
        rows = rows[(rows["iteration"] % period == 0) | (rows["iteration"] == last)].copy()
        if params["task"] in FINAL_ACCURACY:
            rows.loc[rows.index[:-1], ["train_acc", "test_acc"]] = np.nan
        frames.append(rows)
        entry = {"seed": seed, "eval_every": period, **results.final_metrics(rows)}
        entry |= {k: source[seed][k] for k in ("final_excess", "diverged_at")}
        entry["seconds"] = source[seed]["seconds"] if lockstep else math.nan
        seeds.append(results.plain(entry))
    results.atomic_write_text(
        results.history_path(out, stem), pd.concat(frames).to_csv(index=False)
    )
    run_seconds = sum(s["seconds"] for s in seeds) if lockstep else 0.0
    return _cell_record(params, seeds, start, run_seconds, source=f"{task}/{cell}")


def lockstep_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of ``lockstep/<task>_bs<B>``: every rate of ``params["lrs"]`` side by side."""
    start = time.perf_counter()
    X, Y, X_test, Y_test = prepared(params["dataset"])
    warmed_up(params["dataset"])
    runs: list[TrainResult] = []
    for seed in params["seeds"]:
        runs += train_rates(
            X, Y, X_test=X_test, Y_test=Y_test, lrs=params["lrs"],
            batch_size=params["batch_size"], iterations=params["iterations"], seed=seed,
            eval_every=seed_period(params, seed),
            evaluator=shared_evaluator(params["dataset"]), accuracy=_accuracy(params),
        )  # fmt: skip
    history = results.histories(runs)
    history.insert(0, "lr", np.repeat([run.lr for run in runs], [len(r.history) for r in runs]))
    results.atomic_write_text(results.history_path(out, stem), history.to_csv(index=False))
    entries = _entries(runs, data_spectrum(params["dataset"]))
    seeds = [{"lr": run.lr, **entry} for run, entry in zip(runs, entries, strict=True)]
    run_seconds = sum(run.seconds for run in runs)
    return {**_cell_record(params, seeds, start, run_seconds), "task": "lockstep"}
