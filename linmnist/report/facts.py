"""The numbers each discussion of the report quotes, computed from the tables.

Every discussion of the report is a template (``linmnist.report.narrative``) filled from
one frozen dataclass of this module: numbers, booleans, identifiers and short lists of
them, never an English sentence. Each dataclass has a function computing it from the
tables of ``linmnist.report.tables``:

* ``ScopeFacts`` (``scope_facts``): ``narrative.render("title" | "scope", facts)``;
* ``DataFacts`` (``data_facts``): ``narrative.render("data", facts)``;
* ``BatchSizeFacts`` (``batch_size_facts``): ``narrative.render("batch_size", facts)``;
* ``CostFacts`` (``cost_facts``): ``narrative.render("cost", facts)``;
* ``SubsetFacts`` (``subset_facts``): ``narrative.render("subset", facts)``;
* ``StabilityFacts`` (``stability_facts``): ``narrative.render("stability", facts)``;
* ``SweepCostFacts`` (``sweep_cost_facts``): ``narrative.render("sweep_cost", facts)``;
* ``ScalingFacts`` (``linmnist.report.scaling.scaling_facts``): ``narrative.render(
  "scaling_<part>", facts)``.

A number that is undefined (no seed to average, a spread of one seed) is None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from linmnist.report.study import (
    CLASS_NAMES,
    STUDY_LRS,
    STUDY_SECONDS_PER_RUN,
    check_dataset,
    dataset_name,
    is_study_dataset,
    label_text,
)
from linmnist.report.tables import (
    Bounds,
    best_lr,
    check_frame,
    divergence_boundary,
    study_positions,
)

# The training loss at W = 0: 0.5 ||y||^2 = 0.5 for every one-hot label.
INITIAL_LOSS = 0.5
# The bounds of ``tables.Bounds`` that a divergence boundary is compared with, in order.
BOUND_NAMES = ("lr_max", "mean_sample_lr", "per_sample_lr")


def _float(value) -> float | None:
    """``value`` as a float, None when it is missing or not finite."""
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


# --- the dataset ------------------------------------------------------------------------


@dataclass(frozen=True)
class ScopeFacts:
    """Which dataset a report is on.

    Attributes
    ----------
    dataset : str
        Its identifier ("mnist", "fashion-mnist").
    name : str
        Its display name.
    study : bool
        It is the study's dataset: the study's reported figures are shown.
    profile : str or None
        The profile of the configuration the build ran (None: the study's full configuration).
    """

    dataset: str
    name: str
    study: bool
    profile: str | None = None


def scope_facts(dataset: str, profile: str | None = None) -> ScopeFacts:
    """The scope of a report on ``dataset`` built with ``profile`` (a ValueError for an
    unknown dataset)."""
    return ScopeFacts(
        dataset=check_dataset(dataset),
        name=dataset_name(dataset),
        study=is_study_dataset(dataset),
        profile=profile,
    )


@dataclass(frozen=True)
class DataFacts:
    """The Task 1 description of the dataset, from the loaded arrays.

    Attributes
    ----------
    dataset, name : str
        Identifier and display name.
    n_train, n_test : int
        Training and test images.
    rows, cols : int
        Image height and width in pixels; n_pixels = rows * cols.
    labels : tuple of str
        Every label as shown in titles (``study.label_text``), label 0 first.
    """

    dataset: str
    name: str
    n_train: int
    n_test: int
    rows: int
    cols: int
    n_pixels: int
    labels: tuple[str, ...]


def data_facts(dataset: str, *, n_train: int, n_test: int, image_shape: Sequence[int]) -> DataFacts:
    """The facts of ``dataset`` as loaded: its sizes and the shape of one image (rows, cols)."""
    rows, cols = (int(n) for n in image_shape)
    return DataFacts(
        dataset=check_dataset(dataset),
        name=dataset_name(dataset),
        n_train=int(n_train),
        n_test=int(n_test),
        rows=rows,
        cols=cols,
        n_pixels=rows * cols,
        labels=tuple(label_text(dataset, k) for k in range(len(CLASS_NAMES[dataset]))),
    )


# --- Task 4: the batch size -------------------------------------------------------------


@dataclass(frozen=True)
class LrStability:
    """What the threshold predicts for one learning rate of the grid and what happened.

    ``factor`` is |1 - lr lambda_max|; ``diverged_from`` and ``diverged_to`` are the
    earliest and latest iteration at which one of its runs diverged (None if none did).
    """

    lr: float
    above_threshold: bool
    factor: float
    n_runs: int
    n_diverged: int
    diverged_from: int | None
    diverged_to: int | None


@dataclass(frozen=True)
class BatchNoise:
    """At one learning rate, the smallest and the largest batch size where no seed diverged.

    ``*_acc`` are mean final test accuracies (fractions) with their standard deviations over
    seeds (``*_acc_sd``, None for one seed), ``*_loss`` mean final training losses, and
    ``spread_ratio`` is small_acc_sd / large_acc_sd (None unless both are defined and the
    latter is positive).
    """

    lr: float
    small_batch: int
    large_batch: int
    small_acc: float | None
    small_acc_sd: float | None
    large_acc: float | None
    large_acc_sd: float | None
    small_loss: float | None
    large_loss: float | None
    spread_ratio: float | None


@dataclass(frozen=True)
class SingleSample:
    """A single-sample step at the largest learning rate of the grid below the threshold.

    ``factor_typical`` = 1 - lr mean ||x||^2 and ``factor_largest`` = 1 - lr max ||x||^2
    multiply the error along the sample of the step.
    """

    lr: float
    curvature_mean: float
    curvature_max: float
    factor_typical: float
    factor_largest: float


@dataclass(frozen=True)
class DataSeen:
    """The samples one run of ``batch_size`` sees: iterations x batch size, and in epochs."""

    batch_size: int
    samples: int
    epochs: float


@dataclass(frozen=True)
class BestPick:
    """The best learning rate of a batch size (on training loss) and the study's claim."""

    batch_size: int
    lr: float
    study_lr: float | None


@dataclass(frozen=True)
class BatchSizeFacts:
    """Every number of the Task 4 discussion of the batch size.

    Attributes
    ----------
    lambda_max, lr_max : float
        Largest eigenvalue of X X^T / N and the threshold 2 / lambda_max.
    iterations, n_train : int
        Iterations of each run and training-set size.
    stability : tuple of LrStability
        One per learning rate of the grid, largest first.
    noise : tuple of BatchNoise
        One per learning rate with at least two batch sizes where no seed diverged.
    single_sample : SingleSample or None
        None unless the grid has batch size 1, the per-sample curvature is known and some
        learning rate is below the threshold.
    data_seen : tuple of DataSeen
        One per batch size, smallest first.
    best : tuple of BestPick
        One per batch size with a configuration where no seed diverged.
    n_study_claims, n_agree : int
        Batch sizes where the study claimed a best lr, and where it is ours.
    study : bool
        Set our picks beside the study's claims.
    """

    lambda_max: float
    lr_max: float
    iterations: int
    n_train: int
    stability: tuple[LrStability, ...]
    noise: tuple[BatchNoise, ...]
    single_sample: SingleSample | None
    data_seen: tuple[DataSeen, ...]
    best: tuple[BestPick, ...]
    n_study_claims: int
    n_agree: int
    study: bool


def _cell(table: pd.DataFrame, lr: float, batch_size: int):
    rows = table[np.isclose(table["lr"], lr) & (table["batch_size"] == batch_size)]
    return rows.iloc[0] if len(rows) else None


def _noise(ok: pd.DataFrame, lr: float, batch_sizes: list[int]) -> BatchNoise | None:
    cells = [_cell(ok, lr, b) for b in batch_sizes]
    cells = [c for c in cells if c is not None and c["n_diverged"] == 0]
    if len(cells) < 2:
        return None
    small, large = cells[0], cells[-1]
    sd_small, sd_large = _float(small["final_test_acc_sd"]), _float(large["final_test_acc_sd"])
    defined = sd_small is not None and sd_large is not None and sd_large > 0
    return BatchNoise(
        lr=float(lr),
        small_batch=int(small["batch_size"]),
        large_batch=int(large["batch_size"]),
        small_acc=_float(small["final_test_acc_mean"]),
        small_acc_sd=sd_small,
        large_acc=_float(large["final_test_acc_mean"]),
        large_acc_sd=sd_large,
        small_loss=_float(small["final_train_loss_mean"]),
        large_loss=_float(large["final_train_loss_mean"]),
        spread_ratio=sd_small / sd_large if defined else None,
    )


def batch_size_facts(
    table: pd.DataFrame,
    *,
    lr_max: float,
    lambda_max: float,
    n_train: int,
    curvature: tuple[float, float] | None = None,
    study: bool = True,
) -> BatchSizeFacts:
    """The facts of the Task 4 discussion, from the grid and the stability threshold.

    Parameters
    ----------
    table : DataFrame
        ``tables.grid_table(...)``.
    lr_max, lambda_max : float
        The stability threshold 2 / lambda_max and lambda_max of X X^T / N
        (``linmnist.engine.analysis.stability_threshold``).
    n_train : int
        The training-set size (to count epochs).
    curvature : (float, float), optional
        Mean and maximum per-sample ||x||^2 (``tables.sample_curvature``), to explain the
        noise of batch size 1.
    study : bool
        Set the best learning rates beside the study's claim (for MNIST, its dataset).
    """
    check_frame(table, "table", ["lr", "batch_size", "n_diverged", "n_seeds", "iterations"])
    if not (np.isfinite(lr_max) and lr_max > 0 and np.isfinite(lambda_max) and lambda_max > 0):
        raise ValueError(f"lr_max and lambda_max must be positive, got {lr_max!r}, {lambda_max!r}")
    if n_train < 1:
        raise ValueError(f"n_train must be >= 1, got {n_train!r}")
    ok = table[table["status"] == "ok"]
    if ok.empty:
        raise ValueError("table holds no finished configuration")
    lrs = sorted((float(lr) for lr in ok["lr"].unique()), reverse=True)
    batch_sizes = sorted(int(b) for b in ok["batch_size"].unique())
    iterations = int(ok["iterations"].max())

    stability = []
    for lr in lrs:
        rows = ok[np.isclose(ok["lr"], lr)]
        first, last = rows["diverged_at_min"].dropna(), rows["diverged_at_max"].dropna()
        stability.append(
            LrStability(
                lr=lr,
                above_threshold=lr > lr_max,
                factor=abs(1 - lr * lambda_max),
                n_runs=int(rows["n_seeds"].sum()),
                n_diverged=int(rows["n_diverged"].sum()),
                diverged_from=int(first.min()) if len(first) else None,
                diverged_to=int(last.max()) if len(last) else None,
            )
        )
    noise = [n for n in (_noise(ok, lr, batch_sizes) for lr in lrs) if n is not None]

    single = None
    stable = [lr for lr in lrs if lr < lr_max]
    if curvature is not None and batch_sizes[0] == 1 and stable:
        mean, top = (float(c) for c in curvature)
        lr = max(stable)
        single = SingleSample(
            lr=lr,
            curvature_mean=mean,
            curvature_max=top,
            factor_typical=1 - lr * mean,
            factor_largest=1 - lr * top,
        )

    best = best_lr(table)
    picks = tuple(
        BestPick(
            batch_size=int(row.batch_size),
            lr=float(row.best_lr),
            study_lr=_float(row.study_best_lr),
        )
        for row in best.itertuples()
    )
    return BatchSizeFacts(
        lambda_max=float(lambda_max),
        lr_max=float(lr_max),
        iterations=iterations,
        n_train=int(n_train),
        stability=tuple(stability),
        noise=tuple(noise),
        single_sample=single,
        data_seen=tuple(
            DataSeen(batch_size=b, samples=iterations * b, epochs=iterations * b / n_train)
            for b in batch_sizes
        ),
        best=picks,
        n_study_claims=sum(p.study_lr is not None for p in picks),
        n_agree=int(best["agrees"].sum()),
        study=bool(study),
    )


@dataclass(frozen=True)
class RunTime:
    """Mean wall time of a run of one batch size over the learning rates, in seconds:
    evaluated after every iteration, and evaluated every few iterations (None if none was)."""

    batch_size: int
    seconds_fidelity: float
    seconds_thinned: float | None


@dataclass(frozen=True)
class CostFacts:
    """The wall time of the grid's runs against the study's.

    Attributes
    ----------
    iterations : int or None
        Iterations of a timed run; None when no run was evaluated after every iteration.
    times : tuple of RunTime
        One per batch size with a run evaluated after every iteration (empty if none).
    study_seconds : float
        The study's time per 1,000-iteration run.
    study : bool
        The report is on the study's dataset (otherwise the study's time is on MNIST).
    """

    iterations: int | None
    times: tuple[RunTime, ...]
    study_seconds: float
    study: bool


def cost_facts(table: pd.DataFrame, *, study: bool = True) -> CostFacts:
    """The facts of the cost paragraph (machine-dependent numbers).

    Parameters
    ----------
    table : DataFrame
        ``tables.grid_table(...)``; its iterations, seconds_fidelity and seconds_thinned.
    study : bool
        The report is on the study's dataset (MNIST).
    """
    check_frame(
        table,
        "table",
        ["batch_size", "iterations", "status", "seconds_fidelity", "seconds_thinned"],
    )
    ok = table[table["status"] == "ok"]
    timed = ok[np.isfinite(ok["seconds_fidelity"].astype(float))]
    if timed.empty:
        return CostFacts(None, (), STUDY_SECONDS_PER_RUN, bool(study))
    by_b = timed.groupby("batch_size")[["seconds_fidelity", "seconds_thinned"]].mean()
    times = tuple(
        RunTime(int(b), float(row["seconds_fidelity"]), _float(row["seconds_thinned"]))
        for b, row in by_b.iterrows()
    )
    return CostFacts(int(timed["iterations"].max()), times, STUDY_SECONDS_PER_RUN, bool(study))


# --- Task 5: the training-set size ------------------------------------------------------


@dataclass(frozen=True)
class SubsetRow:
    """One training-set size: mean final accuracies on S' and on the test set, and their gap
    (the per-seed difference, averaged), as fractions."""

    n_prime: int
    train_acc: float | None
    test_acc: float | None
    gap: float


@dataclass(frozen=True)
class SubsetFacts:
    """Every number of the Task 5 discussion of the training-set size.

    Attributes
    ----------
    iterations : int or None
        Iterations of each run; None when no run finished.
    rows : tuple of SubsetRow
        One per finished N', smallest first (empty when none finished).
    n_weights : int
        The model's weights, n_features x n_classes.
    n_targets : int or None
        The target values the smallest S' fits: its N' x n_classes.
    """

    iterations: int | None
    rows: tuple[SubsetRow, ...]
    n_weights: int
    n_targets: int | None


def subset_facts(table: pd.DataFrame, *, n_features: int, n_classes: int) -> SubsetFacts:
    """The facts of the Task 5 discussion.

    Parameters
    ----------
    table : DataFrame
        ``tables.subset_table(...)``.
    n_features, n_classes : int
        The model's input and output sizes (its weight count is their product).
    """
    check_frame(
        table, "table", ["n_prime", "gap_mean", "final_test_acc_mean", "final_train_acc_mean"]
    )
    ok = table[(table["status"] == "ok") & np.isfinite(table["gap_mean"].astype(float))]
    n_weights = int(n_features) * int(n_classes)
    if ok.empty:
        return SubsetFacts(iterations=None, rows=(), n_weights=n_weights, n_targets=None)
    ok = ok.sort_values("n_prime")
    rows = tuple(
        SubsetRow(
            n_prime=int(r.n_prime),
            train_acc=_float(r.final_train_acc_mean),
            test_acc=_float(r.final_test_acc_mean),
            gap=float(r.gap_mean),
        )
        for r in ok.itertuples()
    )
    return SubsetFacts(
        iterations=int(ok["iterations"].max()),
        rows=rows,
        n_weights=n_weights,
        n_targets=rows[0].n_prime * int(n_classes),
    )


# --- the stability map ------------------------------------------------------------------


@dataclass(frozen=True)
class BoundaryFacts:
    """The observed divergence boundary of one batch size, against the bounds.

    Attributes
    ----------
    batch_size : int
    largest_stable_lr, first_diverging_lr : float or None
        ``tables.divergence_boundary``: None when divergence starts at the sweep's smallest
        lr, or when no seed diverged.
    n_diverged_there, n_seeds_there, diverged_at_there : int or None
        Seeds that diverged at first_diverging_lr, of how many, and the earliest iteration.
    bounds_inside : tuple of str
        The names (``BOUND_NAMES``) of the bounds in (largest_stable_lr, first_diverging_lr].
    stable_over_lr_max : float or None
        largest_stable_lr / (2 / lambda_max).
    stable_over_per_sample_lr, diverging_over_per_sample_lr : float or None
        The two ends of the boundary divided by 2 / max ||x||^2.
    stable_loss : float or None
        Mean final training loss of the seeds at largest_stable_lr.
    """

    batch_size: int
    largest_stable_lr: float | None
    first_diverging_lr: float | None
    n_diverged_there: int | None
    n_seeds_there: int | None
    diverged_at_there: int | None
    bounds_inside: tuple[str, ...]
    stable_over_lr_max: float | None
    stable_over_per_sample_lr: float | None
    diverging_over_per_sample_lr: float | None
    stable_loss: float | None


@dataclass(frozen=True)
class StudyLrOutcome:
    """One study lr at one batch size of the sweep: whether the sweep has that cell, its seeds,
    how many diverged, and the mean final test accuracy of the others (None if none)."""

    batch_size: int
    in_sweep: bool
    n_seeds: int | None
    n_diverged: int | None
    test_acc: float | None


@dataclass(frozen=True)
class StudyLr:
    """One of the study's learning rates on the map: its ratio to 2/lambda_max and to
    2/mean ||x||^2, and its outcome at each batch size of the sweep."""

    lr: float
    over_lr_max: float
    over_mean_sample_lr: float
    outcomes: tuple[StudyLrOutcome, ...]


@dataclass(frozen=True)
class StabilityFacts:
    """Every number of the stability section's discussion.

    Attributes
    ----------
    bounds : tables.Bounds
        ``tables.predicted_bounds(X)``.
    iterations : int
        Iterations of each run of the sweep.
    initial_loss : float
        The training loss at W = 0.
    boundaries : tuple of BoundaryFacts
        One per batch size with a finished cell, smallest first.
    study_lrs : tuple of StudyLr
        The study's learning rates, in the order given.
    """

    bounds: Bounds
    iterations: int
    initial_loss: float
    boundaries: tuple[BoundaryFacts, ...]
    study_lrs: tuple[StudyLr, ...]


def _boundary(table: pd.DataFrame, bounds: Bounds, batch_size: int, row: pd.Series):
    stable, diverging = _float(row["largest_stable_lr"]), _float(row["first_diverging_lr"])
    loss = None
    if stable is not None:
        cell = table[(table["batch_size"] == batch_size) & np.isclose(table["lr"], stable, atol=0)]
        loss = _float(cell.iloc[0].get("final_train_loss_mean", math.nan))
    both = stable is not None and diverging is not None
    return BoundaryFacts(
        batch_size=int(batch_size),
        largest_stable_lr=stable,
        first_diverging_lr=diverging,
        n_diverged_there=_int(row["n_diverged_there"]),
        n_seeds_there=_int(row["n_seeds_there"]),
        diverged_at_there=_int(row["diverged_at_there"]),
        bounds_inside=tuple(
            name for name in BOUND_NAMES if both and stable < getattr(bounds, name) <= diverging
        ),
        stable_over_lr_max=None if stable is None else stable / bounds.lr_max,
        stable_over_per_sample_lr=None if stable is None else stable / bounds.per_sample_lr,
        diverging_over_per_sample_lr=(
            None if diverging is None else diverging / bounds.per_sample_lr
        ),
        stable_loss=loss,
    )


def stability_facts(
    table: pd.DataFrame,
    bounds: Bounds,
    *,
    iterations: int,
    study_lrs: Sequence[float] = STUDY_LRS,
) -> StabilityFacts:
    """The facts of the stability section, from the sweep and the bounds.

    Parameters
    ----------
    table : DataFrame
        ``tables.accuracy_table(seeds)``; its boundary is ``tables.divergence_boundary(table)``.
    bounds : tables.Bounds
        ``tables.predicted_bounds(X)``.
    iterations : int
        Iterations of each run of the sweep (divergence is observed within them).
    study_lrs : sequence of float
        The study's learning rates, placed on the map.
    """
    boundary = divergence_boundary(table)
    positions = study_positions(table, bounds, lrs=study_lrs)
    lrs = []
    for lr, cells in positions.groupby("lr", sort=False):
        outcomes = tuple(
            StudyLrOutcome(
                batch_size=int(cell["batch_size"]),
                in_sweep=bool(cell["in_sweep"]),
                n_seeds=_int(cell["n_seeds"]),
                n_diverged=_int(cell["n_diverged"]),
                test_acc=_float(cell["final_test_acc_mean"]),
            )
            for cell in cells.to_dict("records")
        )
        first = cells.iloc[0]
        lrs.append(
            StudyLr(
                lr=float(lr),
                over_lr_max=float(first["lr_over_lr_max"]),
                over_mean_sample_lr=float(first["lr_over_mean_sample_lr"]),
                outcomes=outcomes,
            )
        )
    return StabilityFacts(
        bounds=bounds,
        iterations=int(iterations),
        initial_loss=INITIAL_LOSS,
        boundaries=tuple(_boundary(table, bounds, b, row) for b, row in boundary.iterrows()),
        study_lrs=tuple(lrs),
    )


@dataclass(frozen=True)
class SweepCostFacts:
    """The measured wall time of the sweep, from its log line (``tables.sweep_run``).

    Attributes
    ----------
    cells, runs : int
        Cells of the sweep and training runs (cells x seeds).
    logged : bool
        A single logged run computed the whole sweep; the fields below are None otherwise.
    wall_seconds, wall_minutes : float or None
        Its wall time.
    executor : str or None
        "local" or "dask".
    jobs, threads_per_job, cores : int or None
        Parallel jobs, BLAS threads per job, cores available.
    finished : datetime or None
        When it finished (UTC).
    """

    cells: int
    runs: int
    logged: bool
    wall_seconds: float | None = None
    wall_minutes: float | None = None
    executor: str | None = None
    jobs: int | None = None
    threads_per_job: int | None = None
    cores: int | None = None
    finished: datetime | None = None


def sweep_cost_facts(run: pd.Series | None, *, cells: int, runs: int) -> SweepCostFacts:
    """The facts of the sweep's cost sentence, from ``tables.sweep_run(...)`` (or None)."""
    if run is None:
        return SweepCostFacts(cells=int(cells), runs=int(runs), logged=False)
    seconds = float(run["wall_seconds"])
    return SweepCostFacts(
        cells=int(cells),
        runs=int(runs),
        logged=True,
        wall_seconds=seconds,
        wall_minutes=seconds / 60,
        executor=str(run["executor"]),
        jobs=int(run["jobs"]),
        threads_per_job=int(run["threads_per_job"]),
        cores=int(run["cores"]),
        finished=pd.Timestamp(run["finished"]).to_pydatetime(),
    )


# The scaling-law section: computed by linmnist.report.scaling.scaling_facts.
@dataclass(frozen=True)
class TargetFacts:
    """The numbers of one target (an excess over the optimum's training loss)."""

    excess: float
    loss: float
    s_min: float
    e_min: float
    b_crit: float
    b_crit_mean: float
    b_crit_sd: float | None
    b_crit_low: float
    b_crit_high: float
    n_seeds: int
    gd_steps: float
    gd_lr: float
    b_noise: float
    b_simple: float
    eps_max: float
    b_floor: float
    halving_until: int | None
    best_lr_small: float
    best_lr_large: float
    eps_opt_small: float
    eps_opt_large: float
    noise_ratio: float | None
    simple_ratio: float | None
    eps_max_ratio: float | None
    floor_ratio: float
    lr_large_ratio: float
    start_lr_low: float
    start_lr_high: float


@dataclass(frozen=True)
class ScalingFacts:
    """The numbers the section's discussion quotes (template ``scaling.md.j2``)."""

    dataset: str
    batch_sizes: list[int]
    n_seeds: int
    lambda_max: float
    lr_max: float
    loss_star: float
    tr_sigma_star: float
    b_noise_start: float
    b_simple_start: float
    eps_max_start: float
    eps_max_start_ratio: float
    eps_opt_start_small: float
    targets: list[TargetFacts]
    linear_until: int | None
    floor_rows: int
    floor_unresolved: int
    floor_verdicts: dict[str, dict[str, int]]
    floor_fails: dict[str, list[dict]]
    runs: int
    steps: int
    job_seconds: float
    wall_seconds: float | None
    jobs: int | None
    eps_max_capped: bool
    noise_fails: bool
    doubling_gain: float
    floor_factor: float
