"""SGD's learning curves and instability edges, predicted from the data alone, as products.

``theory/<task>`` (``curves_job``) writes ``<task>.curves.csv`` (the expected training and test
loss of each configuration of ``TASKS``), ``edges.csv`` for ``EDGES_TASK`` and ``optimum.csv``
for ``OPTIMUM_TASK``; ``load_theory`` reads them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linmnist.engine.analysis import quadratic_metrics
from linmnist.engine.noise_floor import largest_stable_lr
from linmnist.engine.prediction import CURVE_COLUMNS, HeldOut, expected_losses, held_out
from linmnist.engine.sgd import draw_subset
from linmnist.experiments.cells import moments, prepared
from linmnist.experiments.grids import Cell
from linmnist.experiments.paths import results_dir
from linmnist.experiments.products import Product, result_product
from linmnist.experiments.results import atomic_write_text, read_record

GROUP = "theory"
CURVES_SUFFIX, EDGES_FILE, OPTIMUM_FILE = ".curves.csv", "edges.csv", "optimum.csv"
# The tasks whose configurations are predicted, and those whose products give the edges and
# the subsets' optima.
TASKS = ("grid", "stability", "subset")
EDGES_TASK, OPTIMUM_TASK = "stability", "subset"
EDGE_COLUMNS = ["batch_size", "lr_edge", "lr_gd"]
OPTIMUM_COLUMNS = ["n_prime", "seed", "train_loss", "train_acc", "test_acc"]
EXTRA_OUTPUTS = {EDGES_TASK: (EDGES_FILE,), OPTIMUM_TASK: (OPTIMUM_FILE,)}


def theory_products(build: Path, dataset: str, grids: dict[str, list[Cell]]) -> list[Product]:
    """One product ``theory/<task>`` per task of ``TASKS`` in ``grids``."""
    edge_sizes = sorted(
        {c.params["batch_size"] for t in ("grid", "stability", "edge") for c in grids.get(t, [])}
    )
    products = []
    for task in (t for t in TASKS if grids.get(t)):
        confs = [{"task": task, "cell": c.name, **_settings(c.params)} for c in grids[task]]
        params = {"dataset": dataset, "configurations": confs}
        params |= {"edge_batch_sizes": edge_sizes} if task == EDGES_TASK else {}
        outputs = (f"{task}{CURVES_SUFFIX}", *EXTRA_OUTPUTS.get(task, ()))
        products.append(
            result_product(build, GROUP, task, f"{__name__}:curves_job", params, outputs)
        )
    return products


def _settings(params: dict[str, Any]) -> dict[str, Any]:
    keys = ("lr", "batch_size", "iterations")
    subset = {"n_prime": params["n_prime"], "seeds": params["seeds"]} if "n_prime" in params else {}
    return {**{k: params[k] for k in keys}, **subset}


def _curves(dataset: str, test: HeldOut, confs: list[dict[str, Any]]) -> pd.DataFrame:
    """The predicted curves of a group (for Task 5 the mean over its seeds' subsets)."""
    first = confs[0]
    settings = {"lr": first["lr"], "iterations": np.arange(first["iterations"]), "test": test}
    if "n_prime" not in first:
        sizes = [conf["batch_size"] for conf in confs]
        frame = expected_losses(*moments(dataset), batch_size=sizes, **settings)
        named = {conf["batch_size"]: conf for conf in confs}
        return frame.assign(
            **{k: frame["batch_size"].map(lambda b, k=k: named[b][k]) for k in ("task", "cell")}
        )
    (conf,) = confs
    curves = [
        expected_losses(*moments(dataset, conf["n_prime"], seed), batch_size=conf["batch_size"],
                        **settings)
        for seed in conf["seeds"]
    ]  # fmt: skip
    mean = pd.concat(curves).groupby(["batch_size", "iteration"], as_index=False).mean()
    return mean.assign(task=conf["task"], cell=conf["cell"])


def _groups(configurations: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The configurations predicted together (of one task, lr and iterations)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for i, conf in enumerate(configurations):
        alone = "n_prime" in conf
        key = (conf["task"], conf["lr"], conf["iterations"], i if alone else None)
        groups.setdefault(key, []).append(conf)
    return list(groups.values())


def _optima(dataset: str, configurations: list[dict[str, Any]]) -> pd.DataFrame:
    """The least-squares fit of each seed's subset S' (``OPTIMUM_COLUMNS``)."""
    _, Y, X_test, Y_test = prepared(dataset)
    keys = sorted({(c["n_prime"], s) for c in configurations for s in c["seeds"]})
    rows, fits = [], []
    for n_prime, seed in keys:
        spec, model = moments(dataset, n_prime, seed)
        labels = Y[:, draw_subset(Y.shape[1], n_prime, seed=seed)]
        loss, train_acc = quadratic_metrics(spec.W_star, model.X, labels)
        rows.append((n_prime, seed, float(loss), float(train_acc)))
        fits.append(spec.W_star)
    test_acc = quadratic_metrics(np.stack(fits), X_test, Y_test)[1]
    table = [(*row, acc) for row, acc in zip(rows, test_acc, strict=True)]
    return pd.DataFrame(table, columns=OPTIMUM_COLUMNS)


def curves_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of ``theory/<task>`` (module docstring)."""
    dataset = params["dataset"]
    _, _, X_test, Y_test = prepared(dataset)
    test = held_out(X_test, Y_test)
    configurations = params["configurations"]
    frames = [_curves(dataset, test, group) for group in _groups(configurations)]
    curves = pd.concat(frames)[["task", "cell", *CURVE_COLUMNS]]
    atomic_write_text(Path(out) / f"{stem}{CURVES_SUFFIX}", curves.to_csv(index=False))
    spec, model = moments(dataset)
    if stem == EDGES_TASK:
        sizes = params["edge_batch_sizes"]
        edges = [[b, largest_stable_lr(model, batch_size=b), spec.lr_max] for b in sizes]
        frame = pd.DataFrame(edges, columns=EDGE_COLUMNS)
        atomic_write_text(Path(out) / EDGES_FILE, frame.to_csv(index=False))
    if stem == OPTIMUM_TASK:
        optima = _optima(dataset, configurations)
        atomic_write_text(Path(out) / OPTIMUM_FILE, optima.to_csv(index=False))
    return {"configurations": len(configurations), "lambda_max": spec.lambda_max}


@dataclass
class Theory:
    """The predictions of a build; ``error`` says why products failed."""

    curves: pd.DataFrame
    edges: pd.DataFrame
    optimum: pd.DataFrame
    error: str | None = None


def load_theory(build: Path, tasks: Sequence[str]) -> Theory:
    """The ``Theory`` of ``tasks`` in the build in ``build`` (their records must exist)."""
    directory = results_dir(build) / GROUP
    curves, errors = [], []
    edges, optimum = pd.DataFrame(columns=EDGE_COLUMNS), pd.DataFrame(columns=OPTIMUM_COLUMNS)
    for task in tasks:
        record = read_record(directory / f"{task}.json")
        if record["status"] != "ok":
            errors.append(f"{task}: {record.get('error') or 'failed'}")
            continue
        curves.append(pd.read_csv(directory / f"{task}{CURVES_SUFFIX}"))
        if task == EDGES_TASK:
            edges = pd.read_csv(directory / EDGES_FILE)
        if task == OPTIMUM_TASK:
            optimum = pd.read_csv(directory / OPTIMUM_FILE)
    frame = pd.concat(curves) if curves else pd.DataFrame(columns=["task", "cell", *CURVE_COLUMNS])
    return Theory(curves=frame, edges=edges, optimum=optimum, error="; ".join(errors) or None)
