"""The batch-size scaling law as products in ``results/scaling/`` (section ``[scaling]``):
``bs<B>``, each batch size's lr search; ``gd``, gradient descent's steps to each target and
the noise scales along it; ``predicted``, the steps predicted from the data; ``floor``, the
noise-floor predictions of ``FLOOR_TASKS``' configurations. ``load_scaling`` reads them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linmnist.engine import noise_floor
from linmnist.engine.noise import noise_scales, sample_moments
from linmnist.engine.scaling import (
    RUN_COLUMNS,
    TargetData,
    lr_grid,
    predict_search,
    predicted_columns,
    search_lr,
    target_columns,
    target_data,
)
from linmnist.engine.sgd import MAX_ITERATIONS, check_batch_size
from linmnist.engine.spectrum import Spectrum, gd_excess, gd_steps_to, gd_weights
from linmnist.engine.validation import UsageError, check_int, check_number
from linmnist.experiments.cells import data_spectrum, moments, prepared
from linmnist.experiments.grids import Cell, check_seed_count, distinct, section
from linmnist.experiments.products import Product, result_product
from linmnist.experiments.results import atomic_write_text, plain, read_record

GROUP = "scaling"
MODULE = "linmnist.experiments.scaling"
GD, FLOOR, PREDICTED = "gd", "floor", "predicted"
RUNS_SUFFIX = ".runs.csv"
TRAJECTORY_FILE = f"{GD}.trajectory.csv"
FLOOR_FILE = f"{FLOOR}.csv"
CURVES_FILE = f"{FLOOR}.curves.csv"
PREDICTED_FILE = f"{PREDICTED}.csv"
# The keys of the [scaling] section, with what each holds.
SCALING_KEYS = {
    "batch_size": "batch sizes (distinct integers >= 1), one product each",
    "targets": "target excess losses over the optimum (decreasing, > 0)",
    "seeds": "seeds of every (batch size, lr) (distinct integers >= 0)",
    "lr_top": "the grid's largest lr as a fraction of 2 / lambda_max, in (0, 1)",
    "lr_per_octave": "grid points per halving of the lr",
    "lr_octaves": "halvings of the lr below the top",
    "max_steps": "steps after which a run stops",
    "trajectory_points": "points of the noise scales along gradient descent",
}
TRAJECTORY_COLUMNS = [
    "step", "excess", "tr_sigma", "grad_norm", "gHg", "tr_h_sigma", "b_simple", "b_noise",
    "eps_max",
]  # fmt: skip
FLOOR_COLUMNS = [
    "task", "cell", "lr", "batch_size", "iterations", "gd_excess", "first_order", "stationary",
    "predicted",
]  # fmt: skip
CURVE_COLUMNS = ["lr", "iterations", "batch_size", "predicted"]
# The noise floor's predicted curve against the batch size at CURVE_SIZES (each a column of
# the recursion) for the (lr, iterations) of CURVE_TASK; the floor table covers FLOOR_TASKS.
CURVE_TASK, FLOOR_TASKS = "grid", ("grid", "stability")
CURVE_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
TRAJECTORY_STEP = 1.0  # the noise scales along gradient descent at TRAJECTORY_STEP / lambda_max


def scaling_settings(config: str | Path | None = None, *, profile: str | None = None) -> dict:
    """The validated ``[scaling]`` section (profile overrides applied); {} without one."""
    raw = section(config, GROUP, profile=profile)
    if not raw:
        return {}
    unknown = sorted(set(raw) - set(SCALING_KEYS))
    missing = [k for k in SCALING_KEYS if k not in raw]
    if unknown or missing:
        raise UsageError(
            f"scaling: unknown key(s) {unknown} or missing key(s) {missing}; the keys are "
            + "; ".join(f"{k} ({v})" for k, v in SCALING_KEYS.items())
        )
    targets = distinct(
        "scaling.targets", raw["targets"], lambda n, v: check_number(n, v, low=0, low_open=True)
    )
    if sorted(targets, reverse=True) != targets:
        raise UsageError(f"scaling.targets must be decreasing, got {targets}")
    lr_top = check_number("scaling.lr_top", raw["lr_top"], low=0, low_open=True, high=1)
    if lr_top == 1:
        raise UsageError("scaling.lr_top must be below 1 (gradient descent stalls at 2/lambda_max)")
    sizes = distinct(
        "scaling.batch_size", raw["batch_size"], lambda n, v: check_batch_size(v, name=n)
    )
    seeds = raw["seeds"]
    check_seed_count(len(seeds) if isinstance(seeds, list) else 0, "scaling.seeds")
    return {
        "batch_size": sizes,
        "targets": targets,
        "seeds": distinct("scaling.seeds", seeds, lambda n, v: check_int(n, v, low=0)),
        "lr_top": lr_top,
        **{
            key: check_int(f"scaling.{key}", raw[key], low=2 if key == "trajectory_points" else 1)
            for key in ("lr_per_octave", "lr_octaves", "trajectory_points")
        },
        "max_steps": check_int("scaling.max_steps", raw["max_steps"], low=1, high=MAX_ITERATIONS),
    }


def scaling_products(
    build: Path,
    dataset: str,
    *,
    config: str | Path | None = None,
    profile: str | None = None,
    grids: dict[str, list[Cell]] | None = None,
) -> list[Product]:
    """The products of the ``[scaling]`` section (none without one)."""
    settings = scaling_settings(config, profile=profile)
    if not settings:
        return []
    common = {"dataset": dataset, **{k: v for k, v in settings.items() if k != "batch_size"}}

    def product(stem: str, job: str, outputs: tuple[str, ...], **params) -> Product:
        return result_product(build, GROUP, stem, f"{MODULE}:{job}", {**common, **params}, outputs)

    # The longest first (the predictions, then the largest batches), so that a build's last
    # jobs are short ones.
    products = [
        product(PREDICTED, "predicted_job", (PREDICTED_FILE,), batch_size=settings["batch_size"])
    ]
    configurations = [
        [task, cell.name, cell.params["lr"], cell.params["batch_size"], cell.params["iterations"]]
        for task in FLOOR_TASKS
        for cell in (grids or {}).get(task, [])
    ]
    products.append(
        product(FLOOR, "floor_job", (FLOOR_FILE, CURVES_FILE), configurations=configurations)
    )
    products += [
        product(f"bs{b}", "batch_job", (f"bs{b}{RUNS_SUFFIX}",), batch_size=b)
        for b in sorted(settings["batch_size"], reverse=True)
    ]
    products.append(product(GD, "gd_job", (f"{GD}{RUNS_SUFFIX}", TRAJECTORY_FILE)))
    return products


@functools.cache
def _target_data(dataset: str) -> TargetData:
    X, Y, _, _ = prepared(dataset)
    return target_data(data_spectrum(dataset), X, Y)


def _lrs(spec: Spectrum, params: dict[str, Any]) -> np.ndarray:
    grid = {key: params[f"lr_{key}"] for key in ("top", "per_octave", "octaves")}
    return lr_grid(spec.lr_max, **grid)


def _basics(spec: Spectrum) -> dict[str, Any]:
    return {"lambda_max": spec.lambda_max, "lr_max": spec.lr_max, "loss_star": spec.loss_star}


def batch_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of ``scaling/bs<B>``: the lr search of one batch size over every seed."""
    spec = data_spectrum(params["dataset"])
    search = {k: params[k] for k in ("batch_size", "seeds", "targets", "max_steps")}
    runs = search_lr(_target_data(params["dataset"]), lrs=list(_lrs(spec, params)), **search)
    atomic_write_text(Path(out) / f"{stem}{RUNS_SUFFIX}", runs.to_csv(index=False))
    return plain({**_basics(spec), "runs": len(runs), "steps": int(runs["steps_run"].sum())})


def predicted_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of ``scaling/predicted``: the predicted lr search of every batch size."""
    spec, model = moments(params["dataset"])
    sigmas: dict[float, tuple[np.ndarray, np.ndarray]] = {}  # shared by the batch sizes
    search: dict[str, Any] = {"lrs": list(_lrs(spec, params)), "sigmas": sigmas}
    search |= {k: params[k] for k in ("targets", "max_steps")}
    tables = [predict_search(spec, model, batch_size=b, **search) for b in params["batch_size"]]
    table = pd.concat(tables, ignore_index=True)
    atomic_write_text(Path(out) / PREDICTED_FILE, table.to_csv(index=False))
    return plain({**_basics(spec), "rates": len(table)})


def gd_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of ``scaling/gd``: exact gradient descent on the grid and the noise scales."""
    X, Y, _, _ = prepared(params["dataset"])
    spec = data_spectrum(params["dataset"])
    targets, lrs = params["targets"], _lrs(spec, params)
    rows = [[lr, *(gd_steps_to(spec, lr, target) for target in targets)] for lr in lrs]
    runs = pd.DataFrame(rows, columns=["lr", *target_columns(len(targets))]).astype(float)
    X64 = np.asarray(X, dtype=np.float64)
    second = sample_moments(X64, spec.S)

    def scales_at(lr: float, step: int) -> dict[str, Any]:
        scales = noise_scales(gd_weights(spec, lr, step), X64, Y, moments=second)
        return {"step": step, "excess": float(gd_excess(spec, lr, step)), **vars(scales)}

    # The noise scales depend on the point W, and the points at which runs at different rates
    # reach a target differ: near 2 / lambda_max the stiffest direction still oscillates and
    # dominates G. They are taken along descent at TRAJECTORY_STEP / lambda_max, where every
    # direction decays monotonically (as in gradient flow).
    lr = TRAJECTORY_STEP / spec.lambda_max
    at_target = [
        {"target": target, "lr": lr, **scales_at(lr, gd_steps_to(spec, lr, target))}  # type: ignore[arg-type]
        for target in targets
    ]
    points = params["trajectory_points"]
    end = 2 * at_target[-1]["step"]
    steps = np.unique(np.r_[0, np.geomspace(1, end, points - 1).round()]).astype(int)
    trajectory = pd.DataFrame([scales_at(lr, int(t)) for t in steps], columns=TRAJECTORY_COLUMNS)
    optimum = noise_scales(spec.W_star, X64, Y, moments=second)
    atomic_write_text(Path(out) / f"{stem}{RUNS_SUFFIX}", runs.to_csv(index=False))
    atomic_write_text(Path(out) / TRAJECTORY_FILE, trajectory.to_csv(index=False))
    at = {"at_zero": scales_at(lr, 0), "at_target": at_target, "optimum": vars(optimum)}
    return plain({**_basics(spec), "loss_zero": spec.loss_zero, "trajectory_lr": lr, **at})


def floor_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of ``scaling/floor``: the noise-floor predictions of every configuration."""
    spec, model = moments(params["dataset"])
    rows = []
    for task, cell, lr, batch_size, iterations in params["configurations"]:
        first, stationary = (
            excess(model, lr=lr, batch_size=batch_size)
            for excess in (noise_floor.first_order_excess, noise_floor.stationary_excess)
        )
        gd = float(gd_excess(spec, lr, iterations))
        row = [task, cell, lr, batch_size, iterations, gd, first, stationary, math.nan]
        rows.append(dict(zip(FLOOR_COLUMNS, row, strict=True)))
    # The recursion of every batch size of one (lr, iterations) at once; above 2 / lambda_max
    # gradient descent (the mean of SGD) itself diverges and nothing is predicted.
    groups: dict[tuple[float, int], list[dict]] = {}
    for entry in rows:
        if entry["lr"] < spec.lr_max:
            groups.setdefault((entry["lr"], entry["iterations"]), []).append(entry)
    curves = []
    for (lr, iterations), members in groups.items():
        sizes = {r["batch_size"] for r in members}
        if any(r["task"] == CURVE_TASK for r in members):
            sizes |= {b for b in CURVE_SIZES if b <= max(sizes)}
        ordered = sorted(sizes)
        values = noise_floor.excess_after(model, lr=lr, batch_size=ordered, iterations=iterations)
        predicted = dict(zip(ordered, np.atleast_1d(values).tolist(), strict=True))
        for entry in members:
            entry["predicted"] = predicted[entry["batch_size"]]
        if any(r["task"] == CURVE_TASK for r in members):
            curves += [[lr, iterations, b, predicted[b]] for b in ordered]
    table = pd.DataFrame(rows, columns=FLOOR_COLUMNS)
    atomic_write_text(Path(out) / FLOOR_FILE, table.to_csv(index=False))
    curve_table = pd.DataFrame(curves, columns=CURVE_COLUMNS)
    atomic_write_text(Path(out) / CURVES_FILE, curve_table.to_csv(index=False))
    mean_x2 = float(np.trace(spec.S))  # mean ||x_i||^2
    return plain({**_basics(spec), "tr_sigma_star": model.tr_sigma_star, "mean_x2": mean_x2})


@dataclass
class Scaling:
    """The scaling experiment of a build (a failed product's tables empty)."""

    runs: pd.DataFrame  # every SGD run of every batch size (RUN_COLUMNS, steps_<i>)
    gd: pd.DataFrame  # gradient descent's exact steps per lr (lr, steps_<i>)
    trajectory: pd.DataFrame  # the noise scales along gradient descent (TRAJECTORY_COLUMNS)
    floor: pd.DataFrame  # the noise-floor predictions (FLOOR_COLUMNS)
    floor_curves: pd.DataFrame  # the prediction against the batch size (CURVE_COLUMNS)
    predicted: pd.DataFrame  # predicted steps per batch size and rate (predicted_columns)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # stem -> record
    failed: dict[str, str] = field(default_factory=dict)  # stem -> error of a failed product

    @property
    def params(self) -> dict[str, Any]:
        """The parameters shared by the products (those of ``scaling/gd``)."""
        return self.records[GD]["params"]

    @property
    def targets(self) -> list[float]:
        return list(self.params["targets"])

    @property
    def wall_seconds(self) -> float:
        """The jobs' summed wall time."""
        return float(sum(r.get("wall_seconds") or 0.0 for r in self.records.values()))


def load_scaling(directory: str | Path, batch_sizes: list[int]) -> Scaling:
    """The products in ``directory``; FileNotFoundError when a record is missing."""
    directory = Path(directory)
    stems = [f"bs{b}" for b in batch_sizes] + [GD, FLOOR, PREDICTED]
    records = {}
    for stem in stems:
        path = directory / f"{stem}.json"
        if not path.is_file():
            raise FileNotFoundError(f"no scaling result {stem} in {directory} ({path.name})")
        records[stem] = read_record(path)
    failed = {s: r.get("error") or "failed" for s, r in records.items() if r["status"] != "ok"}

    def read(stem: str, name: str, columns: list[str]) -> pd.DataFrame:
        if stem in failed:
            return pd.DataFrame(columns=columns)
        return pd.read_csv(directory / name)

    n = len(records[GD]["params"]["targets"])
    runs = [read(f"bs{b}", f"bs{b}{RUNS_SUFFIX}", RUN_COLUMNS) for b in batch_sizes]
    return Scaling(
        runs=pd.concat(runs, ignore_index=True),
        gd=read(GD, f"{GD}{RUNS_SUFFIX}", ["lr", *target_columns(n)]),
        trajectory=read(GD, TRAJECTORY_FILE, TRAJECTORY_COLUMNS),
        floor=read(FLOOR, FLOOR_FILE, FLOOR_COLUMNS),
        floor_curves=read(FLOOR, CURVES_FILE, CURVE_COLUMNS),
        predicted=read(PREDICTED, PREDICTED_FILE, predicted_columns(n)),
        records=records,
        failed=failed,
    )
