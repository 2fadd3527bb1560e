"""Facts: every number a discussion quotes, computed from the tables (no sentence among them)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from linmnist.experiments import results
from linmnist.report import facts, tables

from .test_tables import BOUNDS, SWEEP, seeds_frame, write_runs

LR_MAX, LAMBDA_MAX, CURVATURE = 0.0525, 38.09, (87.8, 295.1)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return write_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def grid(runs_dir):
    return tables.grid_table(results.load_task(runs_dir, "grid"))


@pytest.fixture(scope="module")
def subset(runs_dir):
    return tables.subset_table(results.load_task(runs_dir, "subset"))


@pytest.fixture(scope="module")
def batch(grid):
    return facts.batch_size_facts(
        grid, lr_max=LR_MAX, lambda_max=LAMBDA_MAX, n_train=60000, curvature=CURVATURE
    )


def cell(table, lr, batch_size):
    return table[(table["lr"] == lr) & (table["batch_size"] == batch_size)].iloc[0]


def values(obj):
    """Every leaf value of a facts object (dataclasses and tuples unpacked)."""
    if dataclasses.is_dataclass(obj):
        for field in dataclasses.fields(obj):
            yield from values(getattr(obj, field.name))
    elif isinstance(obj, tuple):
        for item in obj:
            yield from values(item)
    else:
        yield obj


def test_batch_size_stability_counts_runs_and_divergence_per_lr(batch):
    """Per lr, largest first: above or below 2/lambda_max, |1 - lr lambda_max|, its runs (the
    failed cell has none) and the iterations at which they diverged."""
    first, second, third = batch.stability
    assert (first.lr, first.above_threshold, first.n_runs, first.n_diverged) == (0.1, True, 12, 12)
    assert first.factor == pytest.approx(abs(1 - 0.1 * LAMBDA_MAX))
    assert (first.diverged_from, first.diverged_to) == (3, 5)
    assert (second.lr, second.above_threshold, second.n_runs, second.n_diverged) == (
        0.01,
        False,
        9,
        0,
    )
    assert second.diverged_from is None and third.lr == 0.001
    assert (batch.lambda_max, batch.lr_max, batch.iterations) == (LAMBDA_MAX, LR_MAX, 50)


def test_batch_size_noise_compares_the_smallest_and_largest_stable_batch(batch, grid):
    """At each lr where two batch sizes did not diverge: the accuracies, their spread over
    seeds and its ratio, the losses, taken from the table (lr 0.01 x 1000 failed: 100 instead)."""
    assert [(n.lr, n.small_batch, n.large_batch) for n in batch.noise] == [
        (0.01, 1, 100),
        (0.001, 1, 1000),
    ]
    noise = batch.noise[1]
    small, large = cell(grid, 0.001, 1), cell(grid, 0.001, 1000)
    assert noise.small_acc == small["final_test_acc_mean"]
    assert noise.small_acc_sd == small["final_test_acc_sd"]
    assert noise.large_loss == large["final_train_loss_mean"]
    assert noise.spread_ratio == pytest.approx(
        small["final_test_acc_sd"] / large["final_test_acc_sd"]
    )
    flat = grid.assign(final_test_acc_sd=0.0)
    facts_flat = facts.batch_size_facts(flat, lr_max=LR_MAX, lambda_max=LAMBDA_MAX, n_train=60000)
    assert all(n.spread_ratio is None for n in facts_flat.noise), "no ratio to a zero spread"


def test_batch_size_single_sample_step_at_the_largest_stable_lr(batch, grid):
    """With batch size 1 and the per-sample curvature: 1 - lr ||x||^2 at the largest lr below
    the threshold, for a typical and the largest image; absent without curvature, without
    batch size 1 or without a stable lr."""
    one = batch.single_sample
    assert (one.lr, one.curvature_mean, one.curvature_max) == (0.01, 87.8, 295.1)
    assert one.factor_typical == pytest.approx(0.122)
    assert one.factor_largest == pytest.approx(-1.951)
    kwargs = {"lambda_max": LAMBDA_MAX, "n_train": 60000}
    assert facts.batch_size_facts(grid, lr_max=LR_MAX, **kwargs).single_sample is None
    no_one = grid[grid["batch_size"] != 1]
    assert (
        facts.batch_size_facts(no_one, lr_max=LR_MAX, curvature=CURVATURE, **kwargs).single_sample
        is None
    )
    low = facts.batch_size_facts(grid, lr_max=0.0005, curvature=CURVATURE, **kwargs)
    assert low.single_sample is None


def test_batch_size_data_seen_and_best_lr(batch):
    """Samples seen = iterations x batch size, in epochs of n_train; the best lr per batch size
    beside the study's claim, and on how many the two agree."""
    seen = {d.batch_size: (d.samples, d.epochs) for d in batch.data_seen}
    assert seen[1000] == (50000, pytest.approx(50000 / 60000))
    assert list(seen) == [1, 10, 100, 1000]
    assert [(p.batch_size, p.lr, p.study_lr) for p in batch.best] == [
        (1, 0.01, 0.001),
        (10, 0.01, 0.01),
        (100, 0.01, 0.01),
        (1000, 0.001, 0.01),
    ]
    assert (batch.n_study_claims, batch.n_agree, batch.study) == (4, 2, True)


def test_batch_size_facts_follow_the_table(grid, batch):
    """Another table gives other numbers: nothing is typed in."""
    shifted = grid.assign(final_test_acc_mean=grid["final_test_acc_mean"] + 0.001)
    other = facts.batch_size_facts(
        shifted, lr_max=LR_MAX, lambda_max=LAMBDA_MAX, n_train=60000, curvature=CURVATURE
    )
    assert [n.small_acc for n in other.noise] == pytest.approx(
        [n.small_acc + 0.001 for n in batch.noise]
    )


def test_batch_size_facts_reject_a_bad_threshold(grid):
    """A non-positive threshold or training-set size is refused by name."""
    with pytest.raises(ValueError, match="lr_max and lambda_max"):
        facts.batch_size_facts(grid, lr_max=0.0, lambda_max=38.0, n_train=10)
    with pytest.raises(ValueError, match="n_train must be >= 1"):
        facts.batch_size_facts(grid, lr_max=0.05, lambda_max=38.0, n_train=0)


def test_cost_facts_separate_fidelity_and_thinned_times(grid):
    """Mean seconds per batch size over the learning rates, evaluated after every iteration and
    thinned; nothing when no run was timed at the study's fidelity."""
    cost = facts.cost_facts(grid)
    assert cost.iterations == 50 and cost.study_seconds == 350.0 and cost.study
    times = {t.batch_size: (t.seconds_fidelity, t.seconds_thinned) for t in cost.times}
    assert times[1] == (pytest.approx(6.001), pytest.approx(1.001))
    assert times[1000] == (pytest.approx(7.0), pytest.approx(2.0))
    untimed = facts.cost_facts(grid.assign(seconds_fidelity=np.nan))
    assert untimed.times == () and untimed.iterations is None
    unthinned = facts.cost_facts(grid.assign(seconds_thinned=np.nan), study=False)
    assert all(t.seconds_thinned is None for t in unthinned.times) and not unthinned.study


def test_subset_facts_give_the_gap_per_training_set_size(subset):
    """Accuracies and gap per N' (smallest first), weights and the targets of the smallest S';
    no rows when no run finished."""
    sub = facts.subset_facts(subset, n_features=784, n_classes=10)
    assert [r.n_prime for r in sub.rows] == [100, 1000, 10000]
    assert [r.gap for r in sub.rows] == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert sub.rows[0].train_acc == subset["final_train_acc_mean"].iloc[0]
    assert (sub.iterations, sub.n_weights, sub.n_targets) == (50, 7840, 1000)
    empty = facts.subset_facts(subset.assign(gap_mean=np.nan), n_features=784, n_classes=10)
    assert empty.rows == () and empty.n_targets is None


def test_stability_facts_give_each_boundary_against_the_bounds():
    """Per batch size: the boundary, the bounds inside it, its ends as multiples of the bounds;
    no divergence (10), divergence from the smallest lr (100)."""
    stab = facts.stability_facts(tables.accuracy_table(seeds_frame()), BOUNDS, iterations=1000)
    assert stab.bounds == BOUNDS and stab.iterations == 1000 and stab.initial_loss == 0.5
    one, ten, hundred, thousand = stab.boundaries
    assert (one.largest_stable_lr, one.first_diverging_lr) == (0.01, 0.0316)
    assert (one.n_diverged_there, one.n_seeds_there, one.diverged_at_there) == (1, 3, 41)
    assert one.bounds_inside == ("mean_sample_lr",)
    assert one.stable_over_per_sample_lr == pytest.approx(2.0)
    assert one.diverging_over_per_sample_lr == pytest.approx(6.32)
    assert one.stable_loss == pytest.approx(0.28)
    assert ten.first_diverging_lr is None and ten.stable_over_lr_max == pytest.approx(2.0)
    assert ten.bounds_inside == ()
    assert hundred.largest_stable_lr is None and hundred.first_diverging_lr == 0.001
    assert thousand.bounds_inside == ("per_sample_lr",)


def test_stability_facts_place_the_study_lrs():
    """Each study lr as multiples of 2/lambda_max and 2/mean||x||^2, and per batch size its
    seeds, divergences and accuracy; a cell absent from the sweep is marked so."""
    table = tables.accuracy_table(seeds_frame({k: v for k, v in SWEEP.items() if k[1] != 0.001}))
    stab = facts.stability_facts(table, BOUNDS, iterations=1000)
    assert [s.lr for s in stab.study_lrs] == [0.1, 0.01, 0.001]
    top = stab.study_lrs[0]
    assert (top.over_lr_max, top.over_mean_sample_lr) == (pytest.approx(2.0), pytest.approx(5.0))
    outcomes = {o.batch_size: o for o in top.outcomes}
    assert (outcomes[1].n_diverged, outcomes[1].n_seeds, outcomes[1].test_acc) == (3, 3, None)
    assert outcomes[10].test_acc == pytest.approx(0.8467, abs=1e-4)
    absent = stab.study_lrs[2].outcomes[0]
    assert not absent.in_sweep and absent.n_seeds is None


def test_stability_facts_keep_the_loss_of_a_stable_lr_above_w0():
    """A stable lr whose runs end above the loss of W = 0 keeps that loss; a boundary holding no
    bound has none inside."""
    lossy = seeds_frame({(1, 0.001): [0.2, 0.3], (1, 0.002): [None, None]})
    lossy.loc[lossy["lr"] == 0.001, "final_train_loss"] = [2.0, 3.0]
    stab = facts.stability_facts(tables.accuracy_table(lossy), BOUNDS, iterations=500)
    (row,) = stab.boundaries
    assert row.stable_loss == pytest.approx(2.5) and row.stable_loss > stab.initial_loss
    assert row.bounds_inside == ()


def test_sweep_cost_facts_from_the_log_line():
    """Wall time in seconds and minutes, executor, jobs, threads, cores and when; only the
    counts when no single run computed the sweep."""
    run = pd.Series(
        {
            "executor": "local",
            "jobs": 2,
            "threads_per_job": 1,
            "cores": 2,
            "wall_seconds": 612.0,
            "finished": pd.Timestamp("2026-01-02 03:04", tz="UTC"),
        }
    )
    cost = facts.sweep_cost_facts(run, cells=84, runs=252)
    assert (cost.cells, cost.runs, cost.logged) == (84, 252, True)
    assert (cost.wall_seconds, cost.wall_minutes) == (612.0, pytest.approx(10.2))
    assert (cost.executor, cost.jobs, cost.threads_per_job, cost.cores) == ("local", 2, 1, 2)
    assert cost.finished.strftime("%Y-%m-%d %H:%M") == "2026-01-02 03:04"
    none = facts.sweep_cost_facts(None, cells=84, runs=252)
    assert not none.logged and none.wall_seconds is None


def test_scope_and_data_facts_name_the_dataset():
    """The dataset's name, whether it is the study's, its sizes and labels; unknown refused."""
    assert facts.scope_facts("fashion-mnist") == facts.ScopeFacts(
        "fashion-mnist", "Fashion-MNIST", False
    )
    assert facts.scope_facts("mnist").study
    data = facts.data_facts("fashion-mnist", n_train=60000, n_test=10000, image_shape=(28, 28))
    assert (data.n_train, data.n_test, data.rows, data.cols, data.n_pixels) == (
        60000,
        10000,
        28,
        28,
        784,
    )
    assert data.labels[7] == "7: Sneaker" and len(data.labels) == 10
    with pytest.raises(ValueError, match="dataset must be one of"):
        facts.scope_facts("cifar")


def test_facts_are_frozen_numbers_not_sentences(batch, grid, subset):
    """Every facts object is frozen, and its strings are identifiers or names (at most three
    words), never a sentence."""
    objects = [
        batch,
        facts.cost_facts(grid),
        facts.subset_facts(subset, n_features=784, n_classes=10),
        facts.stability_facts(tables.accuracy_table(seeds_frame()), BOUNDS, iterations=10),
        facts.sweep_cost_facts(None, cells=1, runs=1),
        facts.scope_facts("mnist"),
        facts.data_facts("fashion-mnist", n_train=1, n_test=1, image_shape=(28, 28)),
    ]
    for obj in objects:
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.__setattr__(dataclasses.fields(obj)[0].name, None)
        strings = [v for v in values(obj) if isinstance(v, str)]
        assert all(len(s.split()) <= 3 for s in strings), strings
