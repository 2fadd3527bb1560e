"""Task 5 over a fine grid of training-set sizes N': least squares, SGD, and their predictions.

``sizes/n<N'>`` (``size_job``; the ``[sizes]`` section's ``n_prime`` and ``seeds``, SGD at
the ``[subset]`` task's budget) writes per seed's subset S' the loss on S', test loss and test
accuracy of the least-squares fit and of SGD, and SGD's losses predicted from S'.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linmnist.engine.analysis import optimum_metrics, quadratic_metrics
from linmnist.engine.prediction import expected_losses, held_out
from linmnist.engine.sgd import draw_subset, train
from linmnist.engine.validation import UsageError, check_int
from linmnist.experiments.cells import moments, prepared, shared_evaluator
from linmnist.experiments.grids import Cell, distinct, section
from linmnist.experiments.paths import results_dir
from linmnist.experiments.products import Product, result_product
from linmnist.experiments.results import atomic_write_text, read_record

GROUP = "sizes"
SUFFIX = ".sizes.csv"
SIZE_COLUMNS = [
    "n_prime", "seed", "ls_train_loss", "ls_test_loss", "ls_test_acc", "sgd_train_loss",
    "sgd_test_loss", "sgd_test_acc", "predicted_train_loss", "predicted_test_loss",
]  # fmt: skip


def sizes_products(
    build: Path,
    dataset: str,
    grids: dict[str, list[Cell]],
    *,
    config: str | Path | None = None,
    profile: str | None = None,
) -> list[Product]:
    """One product per size of the ``[sizes]`` section (with the ``subset`` task)."""
    raw = section(config, GROUP, profile=profile)
    if not raw or not grids.get("subset"):
        return []
    unknown = sorted(set(raw) - {"n_prime", "seeds"})
    if unknown or not {"n_prime", "seeds"} <= set(raw):
        raise UsageError(f"sizes: the keys are n_prime and seeds, got {sorted(raw)}")
    sizes, seeds = (
        distinct(f"sizes.{k}", raw[k], lambda n, v, low=low: check_int(n, v, low=low), "integers")
        for k, low in (("n_prime", 1), ("seeds", 0))
    )
    budget = {k: grids["subset"][0].params[k] for k in ("lr", "batch_size", "iterations")}
    products, job = [], f"{__name__}:size_job"
    for n in sorted(sizes, reverse=True):  # the largest first: a build's last jobs are short
        params = {"dataset": dataset, "n_prime": n, "seeds": seeds, **budget}
        products.append(result_product(build, GROUP, f"n{n}", job, params, [f"n{n}{SUFFIX}"]))
    return products


@functools.cache
def _held_out(dataset: str):
    _, _, X_test, Y_test = prepared(dataset)
    return held_out(X_test, Y_test)


def _row(dataset: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    X, Y, X_test, Y_test = prepared(dataset)
    n = params["n_prime"]
    # S' = the whole training set (in another order) when N' = N: the fit, the moments and
    # the law of SGD do not depend on the order, so the whole set's, made once, serve.
    if n == X.shape[1]:
        Xs, Ys, evaluator, model = X, Y, shared_evaluator(dataset), moments(dataset)
    else:
        subset = draw_subset(X.shape[1], n, seed=seed)
        Xs, Ys, evaluator, model = X[:, subset], Y[:, subset], None, moments(dataset, n, seed)
    fit = optimum_metrics(model[0].W_star, Xs, Ys, X_test, Y_test)
    budget = {k: params[k] for k in ("lr", "batch_size", "iterations")}
    run = train(Xs, Ys, **budget, seed=seed, X_test=X_test, Y_test=Y_test,
                eval_every=budget["iterations"], evaluator=evaluator)  # fmt: skip
    last = run.history.iloc[-1]
    curve = expected_losses(
        *model, lr=budget["lr"], batch_size=budget["batch_size"],
        iterations=[budget["iterations"] - 1], test=_held_out(dataset),
    ).iloc[0]  # fmt: skip
    ok = run.diverged_at is None
    return {
        "n_prime": n,
        "seed": seed,
        "ls_train_loss": max(fit.loss, 0.0),
        "ls_test_loss": fit.test_loss,
        "ls_test_acc": fit.test_acc,
        "sgd_train_loss": float(last["train_loss"]) if ok else np.inf,
        "sgd_test_loss": float(quadratic_metrics(run.W, X_test, Y_test)[0]) if ok else np.inf,
        "sgd_test_acc": float(last["test_acc"]) if ok else np.nan,
        "predicted_train_loss": float(curve["train_loss"]),
        "predicted_test_loss": float(curve["test_loss"]),
    }


def size_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of ``sizes/n<N'>``: ``n<N'>.sizes.csv`` (module docstring)."""
    rows = [_row(params["dataset"], params, seed) for seed in params["seeds"]]
    frame = pd.DataFrame(rows, columns=SIZE_COLUMNS)
    atomic_write_text(Path(out) / f"{stem}{SUFFIX}", frame.to_csv(index=False))
    return {"seeds": len(rows)}


def load_sizes(build: Path, sizes: list[int]) -> pd.DataFrame:
    """The rows of the ok products ``sizes/n<N'>`` of ``sizes`` in ``build``."""
    directory = results_dir(build) / GROUP
    frames = [
        pd.read_csv(directory / f"n{n}{SUFFIX}")
        for n in sizes
        if read_record(directory / f"n{n}.json")["status"] == "ok"
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SIZE_COLUMNS)
