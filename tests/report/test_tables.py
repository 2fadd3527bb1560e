"""Tables: aggregated from result files and sweep frames, numbers never typed in.

The builders here (``write_runs``, ``seeds_frame``, ``SWEEP``, ``BOUNDS``) are shared by
``test_figures``.
"""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from experiments.cell_files import save_cell

from linmnist.engine.sgd import TrainResult
from linmnist.experiments import results
from linmnist.experiments.results import SEED_FIELDS, append_run_log
from linmnist.report import outcomes, study, tables
from linmnist.report.tables import Bounds
from linmnist.report.uncertainty import ci95

LRS = (0.1, 0.01, 0.001)
BATCH_SIZES = (1, 10, 100, 1000)
SEEDS = (0, 1, 2)
N_PRIMES = (100, 1000, 10000)


def fake_run(*, lr, batch_size, seed, iterations=50, n_prime=None):
    """A run whose final metrics encode its configuration (lr 0.1 diverges at 3 + seed)."""
    eval_every = 1 if seed == 0 else 10
    its = np.unique(np.r_[np.arange(eval_every - 1, iterations, eval_every), iterations - 1])
    diverged = 3 + seed if lr > 0.05 else None
    if diverged is not None:
        its = np.r_[its[its < diverged], diverged]
    noise = 0.001 * seed / batch_size
    quality = np.log10(lr) + 4 if n_prime is None else np.log10(n_prime) - 1
    final_acc = 0.80 + 0.02 * quality + noise
    history = pd.DataFrame(
        {
            "iteration": its,
            "train_loss": 0.3 - 0.02 * quality - noise + 0.0 * its,
            "train_acc": np.full(its.size, final_acc),
            "test_acc": np.full(its.size, final_acc - (0.1 / quality if n_prime else 0.01)),
        }
    )
    if diverged is not None:
        history.loc[history.index[-1], ["train_loss", "train_acc", "test_acc"]] = [np.inf, 0.1, 0.1]
    return TrainResult(
        W=np.zeros((10, 4)),
        b=None,
        history=history,
        diverged_at=diverged,
        seconds=1.0 + batch_size / 1000 + (5 if eval_every == 1 else 0),
        lr=lr,
        batch_size=batch_size,
        iterations=iterations,
        seed=seed,
        eval_every=eval_every,
    )


def write_runs(root: Path) -> Path:
    """A runs directory with a fake 3 x 4 grid (50 iterations, seeds 0-2, cell lr 0.01 x
    batch size 1000 failed, lr 0.1 diverging at iteration 3 + seed) and a 3-size subset task."""
    (root / "grid").mkdir()
    (root / "subset").mkdir()
    for lr in LRS:
        for b in BATCH_SIZES:
            if (lr, b) == (0.01, 1000):
                continue
            runs = [fake_run(lr=lr, batch_size=b, seed=s) for s in SEEDS]
            params = {"lr": lr, "batch_size": b, "iterations": 50, "seeds": list(SEEDS)}
            save_cell(root / "grid", f"lr{lr:g}_bs{b}", task="grid", params=params, runs=runs)
    failed = {
        "task": "grid",
        "cell": "lr0.01_bs1000",
        "status": "failed",
        "error": "MemoryError: boom",
        "params": {"lr": 0.01, "batch_size": 1000, "iterations": 50},
        "fingerprint": None,
        "seeds": [],
    }
    (root / "grid" / "lr0.01_bs1000.json").write_text(json.dumps(failed))
    for n in N_PRIMES:
        runs = [fake_run(lr=0.001, batch_size=100, seed=s, n_prime=n) for s in SEEDS]
        params = {"n_prime": n, "lr": 0.001, "batch_size": 100, "iterations": 50}
        save_cell(root / "subset", f"n{n}", task="subset", params=params, runs=runs)
    return root


# (batch size, lr) -> final test accuracy per seed; None marks a seed that diverged.
SWEEP = {
    (1, 0.001): [0.80, 0.81, 0.79],
    (1, 0.01): [0.70, 0.74, 0.72],
    (1, 0.0316): [0.60, None, 0.66],
    (1, 0.1): [None, None, None],
    (10, 0.001): [0.82, 0.82, 0.83],
    (10, 0.01): [0.85, 0.85, 0.84],
    (10, 0.0316): [0.85, 0.86, 0.85],
    (10, 0.1): [0.84, 0.85, 0.85],
    (100, 0.001): [None, None, None],
    (100, 0.01): [None, None, None],
    (100, 0.0316): [None, None, None],
    (100, 0.1): [None, None, None],
    (1000, 0.001): [0.82, 0.82, 0.82],
    (1000, 0.01): [0.85, None, 0.85],
    (1000, 0.0316): [0.86, 0.86, 0.86],
    (1000, 0.1): [None, None, None],
}
BOUNDS = Bounds(
    lambda_max=40.0,
    lr_max=0.05,
    curvature_mean=100.0,
    curvature_max=400.0,
    mean_sample_lr=0.02,
    per_sample_lr=0.005,
    n_samples=1000,
)


def seeds_frame(sweep=SWEEP, failed=()) -> pd.DataFrame:
    """What load_task gives for the sweep: one row per cell and seed (one row per failed cell);
    a diverged seed diverges at iteration 40 + seed, a converged one ends at loss 1 - acc."""
    rows = []
    for (batch_size, lr), accs in sweep.items():
        head = {"cell": f"lr{lr:g}_bs{batch_size}", "lr": lr, "batch_size": batch_size}
        if (batch_size, lr) in failed:
            rows.append(head | {"status": "failed", "error": "boom", "seed": math.nan})
            continue
        for seed, acc in enumerate(accs):
            rows.append(
                head
                | {
                    "status": "ok",
                    "error": None,
                    "seed": seed,
                    "diverged_at": 40 + seed if acc is None else pd.NA,
                    "final_test_acc": 0.1 if acc is None else acc,
                    "final_train_loss": 9.0 if acc is None else 1 - acc,
                }
            )
    frame = pd.DataFrame(rows)
    return frame.astype({"diverged_at": "Int64"})


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return write_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def table(runs_dir):
    return tables.grid_table(results.load_task(runs_dir, "grid"))


@pytest.fixture(scope="module")
def subset(runs_dir):
    return tables.subset_table(results.load_task(runs_dir, "subset"))


@pytest.fixture(scope="module")
def task2(runs_dir):
    history = results.load_history(runs_dir, "grid")
    return history[(history["lr"] == 0.001) & (history["batch_size"] == 100)]


# --- the dataset ------------------------------------------------------------------------


def test_dataset_names_and_labels():
    """Display names, the study's dataset, labels as titles show them; unknown ones refused."""
    assert study.dataset_name("fashion-mnist") == "Fashion-MNIST"
    assert study.is_study_dataset("mnist") and not study.is_study_dataset("fashion-mnist")
    assert study.label_text("mnist", 2) == "2"
    assert study.label_text("fashion-mnist", 9) == "9: Ankle boot"
    with pytest.raises(ValueError, match="dataset must be one of"):
        study.dataset_name("cifar")
    with pytest.raises(ValueError, match="label must be in"):
        study.label_text("fashion-mnist", 10)


def test_known_labels_compares_expected_and_found():
    """Each known label beside the one found; no rows when nothing is known; a split absent
    from the labels is refused."""
    labels = {"train": np.array([0, 2, 1]), "test": np.array([1, 1])}
    table = tables.known_labels(labels, [("train", 1, 2), ("test", 0, 7)])
    assert table["ok"].tolist() == [True, False]
    assert table["found"].tolist() == [2, 1]
    assert tables.known_labels(labels, ()).empty
    with pytest.raises(ValueError, match="split"):
        tables.known_labels(labels, [("valid", 0, 1)])


def test_shapes_table_before_and_after_flattening():
    """Shape and dtype of each array, in the order given."""
    shapes = tables.shapes_table(
        {"x_train": np.zeros((6, 28, 28), np.uint8), "X": np.zeros((784, 6), np.float32)}
    )
    assert shapes["shape"].tolist() == ["6 x 28 x 28", "784 x 6"]
    assert shapes["dtype"].tolist() == ["uint8", "float32"]


def test_one_hot_check_flags_a_wrong_column():
    """The label, its one-hot column and argmax; a column with a second 1 is inconsistent;
    an index out of range is refused."""
    y = np.array([2, 1, 0])
    Y = np.eye(10)[:, y]
    check = tables.one_hot_check({"train": y}, {"train": Y}, 0)
    assert check.loc[0, "label"] == 2 and check.loc[0, "argmax"] == 2
    assert check.loc[0, "one-hot column"] == "0 0 1 0 0 0 0 0 0 0"
    assert check.loc[0, "consistent"]
    Y[3, 0] = 1
    assert not tables.one_hot_check({"train": y}, {"train": Y}, 0).loc[0, "consistent"]
    with pytest.raises(ValueError, match="index must be in"):
        tables.one_hot_check({"train": y}, {"train": Y}, 3)


def test_sample_curvature_is_the_mean_and_max_squared_column_norm():
    """||x||^2 per column: (1 + 4 + 0 + 9) / 2 = 7 and max 9; a 1-D array is refused."""
    X = np.array([[1.0, 0.0], [2.0, 3.0]])
    assert tables.sample_curvature(X) == (7.0, 9.0)
    with pytest.raises(ValueError, match="X must be"):
        tables.sample_curvature(np.zeros(3))


def test_formatting_helpers():
    """pct and mean_ci: percentages of fractions, a dash when missing, CI omitted when NaN."""
    assert tables.pct(0.8534) == "85.34 %"
    assert tables.pct(float("nan")) == tables.DASH
    assert tables.pct(None) == tables.DASH
    assert tables.mean_ci(0.5, float("nan")) == "0.5000"
    assert tables.mean_ci(0.5, 0.01, percent=True) == "50.00 ± 1.00"
    assert tables.span([3, 5, 4]) == "3-5" and tables.span([3, 3]) == "3"


# --- Task 3 and 5 grids -----------------------------------------------------------------


def test_grid_table_has_one_row_per_configuration_sorted(table):
    """One row per (lr, batch size), lr descending then batch size ascending."""
    assert len(table) == len(LRS) * len(BATCH_SIZES)
    assert table["lr"].tolist()[:4] == [0.1] * 4
    assert table["batch_size"].tolist()[:4] == list(BATCH_SIZES)


def test_grid_table_means_over_seeds_that_did_not_diverge(table):
    """Mean and the 95 % CI half-width (t(2) s / sqrt(3)) over the seeds."""
    row = table[(table["lr"] == 0.001) & (table["batch_size"] == 1)].iloc[0]
    expected = [0.80 + 0.02 * 1 + 0.001 * s for s in SEEDS]
    assert row["final_train_acc_mean"] == pytest.approx(np.mean(expected))
    assert row["final_train_acc_ci"] == pytest.approx(4.303 * np.std(expected, ddof=1) / 3**0.5)
    assert row["n_seeds"] == 3 and row["n_diverged"] == 0


def test_grid_table_reports_divergence_not_its_metrics(table):
    """Where every seed diverged: the counts and iterations of divergence, no metrics."""
    rows = table[table["lr"] == 0.1]
    assert (rows["n_diverged"] == 3).all()
    assert rows["final_train_loss_mean"].isna().all()
    assert rows["diverged_at_min"].tolist() == [3] * 4
    assert rows["diverged_at_max"].tolist() == [5] * 4


def test_grid_table_separates_fidelity_and_thinned_seconds(table):
    """Seconds of the seed evaluated after every iteration apart from the thinned seeds."""
    row = table[(table["lr"] == 0.001) & (table["batch_size"] == 1000)].iloc[0]
    assert row["seconds_fidelity"] == pytest.approx(7.0)
    assert row["seconds_thinned"] == pytest.approx(2.0)


def test_format_grid_table_status_texts(table):
    """Status "ok", "diverged at iteration a-b (k of n seeds)" or "failed: error"; mean ± 95 % CI
    in %; no study figure and no wall time (the study's are at iteration 800, not the last:
    ``study_at_800``; the times are in ``cost_table``)."""
    shown = tables.format_grid_table(table)
    assert shown.loc[("0.1", "10"), "status"] == "diverged at iteration 3-5 (3 of 3 seeds)"
    assert shown.loc[("0.01", "1000"), "status"] == "failed: MemoryError: boom"
    assert shown.loc[("0.001", "100"), "status"] == "ok"
    row = shown.loc[("0.001", "1")]
    assert row["final train accuracy (%)"] == "82.10 ± 0.25"  # sd 0.10, t(2) 4.303, 3 seeds
    assert not [c for c in shown.columns if "study" in c or "seconds" in c]
    assert row["final training loss"].startswith("0.2790 ± ")


def test_best_lr_is_picked_on_training_loss_and_skips_diverged(table):
    """The lowest final training loss among cells where no seed diverged (a failed cell is no
    candidate), beside the study's claim."""
    best = tables.best_lr(table).set_index("batch_size")
    assert best.loc[10, "best_lr"] == 0.01
    assert best.loc[1000, "best_lr"] == 0.001, "the failed cell is not a candidate"
    assert best.loc[1, "study_best_lr"] == 0.001
    assert not best.loc[1, "agrees"] and best.loc[10, "agrees"]
    shown = tables.format_best_lr(tables.best_lr(table))
    assert shown["same as the study"].tolist() == ["no", "yes", "yes", "no"]


def test_best_lr_ignores_test_accuracy(table):
    """Turning the test accuracy upside down does not change the picks."""
    flipped = table.copy()
    flipped["final_test_acc_mean"] = -flipped["final_train_acc_mean"]
    assert tables.best_lr(flipped)["best_lr"].tolist() == tables.best_lr(table)["best_lr"].tolist()


def test_best_lr_names_one_definition_and_shows_the_test_pick_apart(table):
    """best_lr is picked on the training loss; the lr of the highest final test accuracy is a
    separate column; a cell with an unstable seed is no candidate."""
    flipped = table.copy()
    flipped["final_test_acc_mean"] = flipped["final_train_loss_mean"]
    best = tables.best_lr(flipped).set_index("batch_size")
    assert best.loc[10, "best_lr"] == 0.01 and best.loc[10, "lr_by_test_acc"] == 0.001
    shown = tables.format_best_lr(tables.best_lr(table))
    assert "best lr (training loss)" in shown.columns
    assert "lr of the highest final test accuracy (not used to select)" in shown.columns
    unstable = table.assign(n_unstable=np.where(table["lr"] == 0.01, 1, 0))
    assert (tables.best_lr(unstable)["best_lr"] == 0.001).all()


def test_cost_table_leaves_out_diverged_runs(table, runs_dir):
    """Diverged runs stop early: they are counted, not averaged; fidelity and thinned apart."""
    cost = tables.cost_table(results.load_task(runs_dir, "grid")).set_index("batch_size")
    assert cost.loc[1, "n_excluded"] == 3, "the three lr 0.1 seeds"
    assert cost.loc[1, "fidelity_mean"] == pytest.approx(6.001)
    assert (cost.loc[1, "n_fidelity"], cost.loc[1, "n_thinned"]) == (2, 4)
    assert cost.loc[1000, "n_thinned"] == 2, "the failed cell has no runs"
    shown = tables.format_cost_table(cost.reset_index())
    assert shown.loc["1", "diverged runs left out"] == "3"
    assert shown.loc["1", "seconds per run, thinned evaluation"] == "1.00 ± 0.00"


def test_study_at_800_reads_iteration_800_only():
    """The seed evaluated after every iteration and the mean over seeds at iteration 800;
    runs that stop before it give no row."""
    histories = pd.DataFrame(
        {
            "lr": 0.001,
            "batch_size": 1,
            "seed": [0, 0, 1],
            "iteration": [800, 999, 800],
            "train_loss": 0.3,
            "train_acc": 0.8,
            "test_acc": [0.80, 0.90, 0.82],
        }
    )
    seeds = pd.DataFrame({"lr": 0.001, "batch_size": 1, "seed": [0, 1], "eval_every": [1, 10]})
    row = tables.study_at_800(histories, seeds).iloc[0]
    assert row["seed_acc"] == 0.80 and row["mean_acc"] == pytest.approx(0.81)
    assert row["n_seeds"] == 2 and row["study"] == "80.3 %"
    shown = tables.format_study_at_800(tables.study_at_800(histories, seeds))
    assert shown.loc[("0.001", "1"), "ours, seed evaluated every iteration (%)"] == "80.00"
    early = histories.assign(iteration=histories["iteration"] - 700)
    assert tables.study_at_800(early, seeds).empty


def test_examples_to_reach_counts_iteration_plus_one_batches():
    """The target is the highest final mean loss; examples = (iteration + 1) x B."""
    its = np.arange(10)
    rows = [
        pd.DataFrame({"iteration": its, "train_loss": 1.0 - rate * its, "seed": 0}).assign(
            lr=0.01, batch_size=b
        )
        for b, rate in ((1, 0.05), (10, 0.1))
    ]
    histories = pd.concat(rows, ignore_index=True)
    seeds = pd.DataFrame({"lr": 0.01, "batch_size": [1, 10], "seed": 0, "diverged_at": np.nan})
    reach = tables.examples_to_reach(histories, seeds, lr=0.01).set_index("batch_size")
    assert reach.loc[1, "loss"] == pytest.approx(0.55)
    assert (reach.loc[1, "iteration"], reach.loc[1, "examples"]) == (9, 10)
    assert (reach.loc[10, "iteration"], reach.loc[10, "examples"]) == (5, 60)


def test_task2_table_compares_only_at_the_study_iterations(task2):
    """Our 50-iteration runs reach only the study's iteration 0 (recorded by the dense seed):
    no other iteration of ours stands in for the study's 200, 800 or 999."""
    comparison = tables.task2_table(task2)
    assert comparison["iteration"].tolist() == [0]
    assert comparison["n_seeds"].tolist() == [1]
    assert comparison["train_loss_mean"].iloc[0] == pytest.approx(0.28)
    shown = tables.format_task2_table(comparison)
    assert shown.index.tolist() == [0]
    assert shown["test accuracy (%), study"].tolist() == ["36.9"], "the study's own digits"
    assert shown["training loss, study"].tolist() == ["0.4953"]


def test_history_at_gives_mean_and_ci95_over_the_seeds_that_recorded_it():
    """Mean and 95 % CI half-width over seeds per group, at the iterations asked for only."""
    history = pd.DataFrame(
        {
            "n_prime": [100, 100, 100, 100, 1000],
            "seed": [0, 1, 2, 0, 0],
            "iteration": [5, 5, 5, 6, 5],
            "train_loss": [0.1, 0.2, 0.3, 9.0, 0.5],
            "train_acc": [0.5] * 5,
            "test_acc": [0.4] * 5,
        }
    )
    at = tables.history_at(history, [5, 400], by=["n_prime"]).set_index("n_prime")
    assert at["iteration"].tolist() == [5, 5], "iteration 400 was recorded by no seed"
    assert at["n_seeds"].tolist() == [3, 1]
    assert at.loc[100, "train_loss_mean"] == pytest.approx(0.2)
    assert at.loc[100, "train_loss_ci"] == pytest.approx(ci95([0.1, 0.2, 0.3]))
    assert math.isnan(at.loc[1000, "train_loss_ci"]), "one seed has no interval"


def test_subset_study_table_is_at_the_study_iteration_or_empty():
    """The study's N' figures stand beside ours at iteration 400, never at another iteration."""
    history = pd.DataFrame(
        {
            "n_prime": [100, 100, 500],
            "seed": [0, 1, 0],
            "iteration": [400, 400, 400],
            "train_loss": [0.2, 0.2, 0.3],
            "train_acc": [0.9, 0.92, 0.8],
            "test_acc": [0.6, 0.62, 0.7],
        }
    )
    comparison = tables.subset_study_table(history)
    assert comparison["study_test_acc"].tolist() == [0.668, 0.778]
    shown = tables.format_subset_study_table(comparison)
    assert shown.loc[100, "test accuracy (%), study"] == "66.8"
    assert shown.loc[100, "test accuracy (%), ours"].startswith("61.00 ± ")
    assert tables.subset_study_table(history.assign(iteration=399)).empty


def test_subset_optimum_averages_the_seeds_fits_per_n_prime():
    """One row per N', with the seeds' count, mean and 95 % CI of each metric."""
    fits = pd.DataFrame(
        {"n_prime": [4, 4, 30, 30], "seed": [0, 1, 0, 1], "train_loss": [0.0, 0.0, 0.2, 0.4],
         "train_acc": [1.0, 1.0, 0.8, 0.6], "test_acc": [0.5, 0.7, 0.75, 0.75]}
    )  # fmt: skip
    table = tables.subset_optimum(fits).set_index("n_prime")
    assert table.loc[4, "n_seeds"] == 2 and table.loc[4, "train_loss_mean"] == 0.0
    assert table.loc[30, "train_loss_mean"] == pytest.approx(0.3)
    assert table.loc[30, "train_loss_ci"] == pytest.approx(ci95(pd.Series([0.2, 0.4])))
    assert table.loc[30, "test_acc_ci"] == 0.0
    with pytest.raises(ValueError, match="test_acc"):
        tables.subset_optimum(fits.drop(columns="test_acc"))


def test_subset_table_gap_shrinks_with_n_prime(subset):
    """The train - test gap per N', per seed then averaged; shown in points with the study's."""
    gaps = subset.set_index("n_prime")["gap_mean"]
    assert gaps.tolist() == pytest.approx([0.1, 0.05, 0.1 / 3])
    shown = tables.format_subset_table(subset)
    assert not [c for c in shown.columns if "study" in c], "the study's iteration 400 is apart"
    assert shown["train - test gap (points)"].tolist()[2] == "3.33 ± 0", "a CI of 0 is exact"


def test_study_figures_are_left_out_for_another_dataset(table, subset, task2):
    """Without the study (Fashion-MNIST), no table carries the study's MNIST figures."""
    best = tables.format_best_lr(tables.best_lr(table), study=False)
    assert not [c for c in best.columns if "study" in c]
    shown = tables.format_task2_table(tables.task2_table(task2), study=False)
    assert shown.index.tolist() == [0]
    assert shown.columns.tolist() == [
        "seeds",
        "training loss",
        "train accuracy (%)",
        "test accuracy (%)",
    ]


# --- the stability sweep ----------------------------------------------------------------


def test_accuracy_is_summarized_over_the_stable_seeds():
    """Mean and 95 % CI leave out diverged and unstable seeds (a seed ending at loss 2.0 is
    counted, not averaged); a cell where every seed diverged has no accuracy; a failed cell
    has no seeds."""
    seeds = seeds_frame(failed=[(10, 0.1)])
    seeds.loc[(seeds["cell"] == "lr0.001_bs1") & (seeds["seed"] == 2), "final_train_loss"] = 2.0
    table = tables.accuracy_table(seeds).set_index(["batch_size", "lr"])
    row = table.loc[(1, 0.0316)]
    assert (row["n_seeds"], row["n_diverged"], row["diverged_at_min"]) == (3, 1, 41)
    assert row["final_test_acc_mean"] == pytest.approx(0.63)
    assert row["final_test_acc_ci"] == pytest.approx(12.706 * np.std([0.60, 0.66], ddof=1) / 2**0.5)
    assert row["final_train_loss_mean"] == pytest.approx(0.37)
    assert row["state"] == "diverged (some seeds)"
    unstable = table.loc[(1, 0.001)]
    assert (unstable["n_unstable"], unstable["n_diverged"]) == (1, 0)
    assert unstable["final_test_acc_mean"] == pytest.approx(0.805), "the unstable seed is out"
    assert unstable["state"] == "unstable (some seeds)"
    assert math.isnan(table.loc[(1, 0.1), "final_test_acc_mean"])
    assert table.loc[(1, 0.1), "diverged_at_max"] == 42
    assert table.loc[(10, 0.001), "state"] == "stable"
    failed = table.loc[(10, 0.1)]
    assert failed["status"] == "failed" and failed["n_seeds"] == 0
    assert list(table.index) == sorted(SWEEP)


def history_frame(losses: dict) -> pd.DataFrame:
    """load_history rows: (cell, seed) -> the training loss at iterations 0, 10, 20, ..."""
    rows = [
        {"cell": cell, "seed": seed, "iteration": 10 * i, "train_loss": loss}
        for (cell, seed), values in losses.items()
        for i, loss in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_the_instability_rule_classifies_each_seed():
    """Diverged beats everything; a final loss above 0.5 (the loss at W = 0) is unstable and
    one of exactly 0.5 is not; a loss growing at the end (last > 2 x its minimum and above the
    middle value) is unstable, a late spike that is not rising is not, nor a short history;
    without histories the growth test is not made; a failed cell has no outcome."""
    seeds = pd.DataFrame(
        {
            "cell": ["a", "a", "a", "a", "a", "a", "b"],
            "status": ["ok"] * 6 + ["failed"],
            "seed": [0, 1, 2, 3, 4, 5, math.nan],
            "diverged_at": pd.array([7, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA], "Int64"),
            "final_train_loss": [9.0, 0.51, 0.5, 0.45, 0.41, 0.45, math.nan],
        }
    )
    histories = history_frame(
        {
            ("a", 0): [0.4, 2.0, 9.0],
            ("a", 1): [0.4, 0.3, 0.51],
            ("a", 2): [0.4, 0.3, 0.5],
            ("a", 3): [0.4, 0.2, 0.21, 0.3, 0.45],  # rising to 2.25 x its minimum
            ("a", 4): [0.4, 0.2, 0.5, 0.45, 0.41],  # above 2 x its minimum but falling
            ("a", 5): [0.2, 0.45],  # too short to tell
        }
    )
    got = outcomes.classify(seeds, histories)["outcome"].tolist()
    expected = ["diverged", "unstable", "stable", "unstable", "stable", "stable"]
    assert got[:6] == expected and pd.isna(got[6])
    assert outcomes.classify(seeds)["outcome"].tolist()[3] == "stable"
    assert outcomes.growing([0.4, 0.2, 0.21, 0.3, 0.45])
    assert not outcomes.growing([0.4, 0.2, 0.21, 0.3, 0.4]), "exactly 2 x is not growing"
    with pytest.raises(ValueError, match="seeds lacks the columns"):
        outcomes.classify(seeds.drop(columns="final_train_loss"))
    # Unbounded: diverged or growing, whatever the final loss; a failed cell is not.
    assert outcomes.unbounded(seeds, histories).tolist() == [
        True, False, False, True, False, False, False
    ]  # fmt: skip


def test_cell_states_and_status_texts():
    """A cell is diverged (some/every seed) if a seed diverged, else unstable (some/every
    seed) if one was, else stable; the grid's status says which, with the counts."""
    assert outcomes.cell_state(3, 0, 0) == "stable"
    assert outcomes.cell_state(3, 0, 1) == "unstable (some seeds)"
    assert outcomes.cell_state(3, 0, 3) == "unstable (every seed)"
    assert outcomes.cell_state(3, 1, 2) == "diverged (some seeds)"
    assert outcomes.cell_state(3, 3, 0) == "diverged (every seed)"
    assert outcomes.cell_state(0, 0, 0) is None
    row = {"status": "ok", "n_seeds": 5, "n_diverged": 1, "n_unstable": 2}
    row |= {"diverged_at_min": 3, "diverged_at_max": 3, "error": None}
    text = tables._status_text(SimpleNamespace(**row))
    assert text == (
        "diverged at iteration 3 (1 of 5 seeds); "
        "unstable (loss above its start or growing) in 2 of 5 seeds"
    )
    row |= {"n_diverged": 0, "n_unstable": 0}
    assert tables._status_text(SimpleNamespace(**row)) == "ok"


def test_seed_outcomes_use_the_outcome_column_when_given():
    """A seed the growth test called unstable (an ``outcome`` column) is counted so, though
    its final loss is below 0.5."""
    rows = seeds_frame({(10, 0.01): [0.85, 0.85, 0.84]})
    counts, runs, stable = tables.seed_outcomes(rows)
    assert (counts["n_unstable"], len(stable)) == (0, 3)
    rows = rows.assign(outcome=["stable", "unstable", "stable"])
    counts, runs, stable = tables.seed_outcomes(rows)
    assert (counts["n_seeds"], counts["n_unstable"], len(stable)) == (3, 1, 2)


def test_the_boundary_is_the_first_lr_where_a_seed_is_not_stable():
    """Per batch size: the largest lr below the first seed not stable, that lr with its seeds,
    and the lr from which every seed diverges; no instability, instability from the start,
    a non-monotone batch size (1000: one seed diverges at 0.01, none at 0.0316), and an
    unstable seed (batch size 10, lr 0.1, loss 0.6) that moves the boundary."""
    seeds = seeds_frame()
    seeds.loc[(seeds["cell"] == "lr0.1_bs10") & (seeds["seed"] == 1), "final_train_loss"] = 0.6
    boundary = tables.instability_boundary(tables.accuracy_table(seeds))
    assert list(boundary.index) == [1, 10, 100, 1000]
    one = boundary.loc[1]
    assert (one["largest_stable_lr"], one["first_unstable_lr"]) == (0.01, 0.0316)
    assert (one["n_diverged_there"], one["n_unstable_there"], one["n_seeds_there"]) == (1, 0, 3)
    assert one["all_diverge_lr"] == 0.1
    ten = boundary.loc[10]
    assert (ten["largest_stable_lr"], ten["first_unstable_lr"]) == (0.0316, 0.1)
    assert (ten["n_diverged_there"], ten["n_unstable_there"]) == (0, 1)
    assert pd.isna(ten["all_diverge_lr"])
    stable = tables.instability_boundary(tables.accuracy_table(seeds_frame())).loc[10]
    assert stable["largest_stable_lr"] == 0.1 and pd.isna(stable["first_unstable_lr"])
    assert pd.isna(stable["n_seeds_there"])
    hundred = boundary.loc[100]
    assert pd.isna(hundred["largest_stable_lr"]) and hundred["first_unstable_lr"] == 0.001
    assert hundred["all_diverge_lr"] == 0.001
    thousand = boundary.loc[1000]
    assert (thousand["largest_stable_lr"], thousand["first_unstable_lr"]) == (0.001, 0.01)
    assert thousand["all_diverge_lr"] == 0.1
    assert (boundary["lr_low"] == 0.001).all() and (boundary["lr_high"] == 0.1).all()


def test_failed_cells_do_not_move_the_boundary():
    """A failed cell is neither stable nor unstable: it is left out."""
    table = tables.accuracy_table(seeds_frame(failed=[(1, 0.0316)]))
    boundary = tables.instability_boundary(table)
    assert (boundary.loc[1, "largest_stable_lr"], boundary.loc[1, "first_unstable_lr"]) == (
        0.01,
        0.1,
    )


def test_bounds_are_computed_from_the_data_and_ordered(small_data):
    """lambda_max is the top eigenvalue of X X^T / N, the curvatures are the squared norms, and
    2/max||x||^2 <= 2/mean||x||^2 <= 2/lambda_max (the trace bounds the top eigenvalue)."""
    (X, Y), _ = small_data
    bounds = tables.predicted_bounds(X, Y)
    X64 = X.astype(np.float64)
    assert bounds.lambda_max == pytest.approx(np.linalg.eigvalsh(X64 @ X64.T / X.shape[1])[-1])
    norms = (X64**2).sum(axis=0)
    assert bounds.curvature_mean == pytest.approx(norms.mean())
    assert bounds.curvature_max == pytest.approx(norms.max())
    assert bounds.per_sample_lr == pytest.approx(2 / norms.max())
    assert bounds.per_sample_lr <= bounds.mean_sample_lr <= bounds.lr_max
    assert bounds.n_samples == X.shape[1]
    with pytest.raises(ValueError, match="X must be a 2-D"):
        tables.predicted_bounds(X[:, 0], Y)


@pytest.mark.integration
def test_bounds_on_mnist_reproduce_the_measured_facts(mnist):
    """docs/study.md: lambda_max 38.09 (2/lambda_max 0.0525), ||x||^2 mean 87.8 and max 295.1."""
    (X, Y), _ = mnist
    bounds = tables.predicted_bounds(X, Y)
    assert round(bounds.lambda_max, 2) == 38.09 and round(bounds.lr_max, 4) == 0.0525
    assert round(bounds.curvature_mean, 1) == 87.8 and round(bounds.curvature_max, 1) == 295.1
    assert round(bounds.per_sample_lr, 4) == 0.0068


def test_study_positions_give_ratios_and_the_sweep_outcome():
    """Each study lr divided by each bound and, per batch size, its seeds and mean accuracy in
    the sweep, as numbers; the display table says "diverged (k/n)", "85.00 %; diverged (1/3)"
    or "not in the sweep"."""
    table = tables.accuracy_table(seeds_frame({k: v for k, v in SWEEP.items() if k[1] != 0.001}))
    positions = tables.study_positions(table, BOUNDS)
    assert positions["lr"].unique().tolist() == list(study.STUDY_LRS)
    assert len(positions) == len(study.STUDY_LRS) * 4
    cells = positions.set_index(["lr", "batch_size"])
    assert cells.loc[(0.1, 1), "lr_over_lr_max"] == pytest.approx(2.0)
    assert cells.loc[(0.01, 1), "lr_over_mean_sample_lr"] == pytest.approx(0.5)
    assert cells.loc[(0.01, 1), "lr_over_per_sample_lr"] == pytest.approx(2.0)
    assert (cells.loc[(0.1, 1), "n_diverged"], cells.loc[(0.1, 1), "n_seeds"]) == (3, 3)
    assert cells.loc[(0.1, 10), "final_test_acc_mean"] == pytest.approx(0.8467, abs=1e-4)
    assert not cells.loc[(0.001, 1), "in_sweep"] and pd.isna(cells.loc[(0.001, 1), "n_seeds"])
    shown = tables.format_study_positions(positions)
    assert list(shown.index) == list(study.STUDY_LRS)
    assert shown.loc[0.1, "lr as a multiple of 2/λmax"] == "2.00"
    assert shown.loc[0.01, "lr as a multiple of 2/max‖x‖²"] == "2.00"
    assert shown.loc[0.1, "batch size 1"] == "diverged (3/3)"
    assert shown.loc[0.1, "batch size 10"] == "84.67 %"
    assert shown.loc[0.01, "batch size 1000"] == "85.00 %; diverged (1/3)"
    assert shown.loc[0.001, "batch size 1"] == "not in the sweep"


def test_logged_run_is_the_latest_run_that_computed_the_whole_sweep(tmp_path):
    """A resumed run (some cells skipped), a run of other tasks and a run with fewer cells do
    not count; None when no run computed the whole sweep."""
    entry = {
        "tasks": "stability",
        "profile": None,
        "dataset": "mnist",
        "executor": "local",
        "scheduler": None,
        "jobs": 2,
        "threads_per_job": 1,
        "cores": 2,
        "cells": 16,
        "failed": 0,
    }
    append_run_log(
        tmp_path,
        entry
        | {"finished": "2026-01-01T00:00:00+00:00", "ok": 9, "skipped": 7, "wall_seconds": 30.0},
    )
    assert tables.logged_run(tmp_path, task="stability", cells=16) is None
    runs = [
        {"ok": 16, "skipped": 0, "wall_seconds": 300.0},
        {"ok": 16, "skipped": 0, "wall_seconds": 310.0},
        {"ok": 0, "skipped": 16, "wall_seconds": 1.0},
        {"tasks": "grid,stability", "ok": 16, "skipped": 0, "wall_seconds": 5.0},
        {"cells": 4, "ok": 4, "skipped": 0, "wall_seconds": 7.0},
    ]
    for day, change in enumerate(runs, start=2):
        append_run_log(tmp_path, entry | {"finished": f"2026-01-0{day}T00:00:00+00:00"} | change)
    run = tables.logged_run(tmp_path, task="stability", cells=16)
    assert run["wall_seconds"] == 310.0 and run["jobs"] == 2
    assert tables.logged_run(tmp_path, task="stability", cells=4)["wall_seconds"] == 7.0
    with pytest.raises(ValueError, match="cells must be an integer >= 1, got 0"):
        tables.logged_run(tmp_path, task="stability", cells=0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tables.accuracy_table(pd.DataFrame({"lr": [0.1]})), r"seeds lacks the columns"),
        (lambda: tables.accuracy_table(seeds_frame().iloc[:0]), "seeds holds no cell of the sweep"),
        (
            lambda: tables.instability_boundary(pd.DataFrame({"lr": [0.1]})),
            r"table lacks the columns",
        ),
        (lambda: tables.grid_table([1, 2]), "seeds must be a pandas DataFrame, got list"),
    ],
)
def test_wrong_inputs_are_refused_by_name(call, message):
    """A frame without the needed columns, an empty sweep or a non-frame is refused."""
    with pytest.raises(ValueError, match=message):
        call()


def test_display_tables_say_what_diverged_or_was_unstable():
    """The accuracy pivot shows mean ± 95 % CI in % and the seeds that diverged or were
    unstable; the boundary table shows the interval as multiples of the three bounds, "≤"
    and ">" where an end is missing, dashes where undefined."""
    seeds = seeds_frame(failed=[(10, 0.1)])
    seeds.loc[(seeds["cell"] == "lr0.01_bs1") & (seeds["seed"] == 0), "final_train_loss"] = 0.7
    table = tables.accuracy_table(seeds)
    shown = tables.format_accuracy(table)
    assert list(shown.columns) == [f"batch size {b}" for b in (1, 10, 100, 1000)]
    assert shown.loc[0.001, "batch size 10"] == "82.33 ± 1.43"  # sd 0.58, 3 seeds: 95 % CI
    assert (
        shown.loc[0.0316, "batch size 1"] == "63.00 ± 38.12; diverged (1/3)"
    )  # sd 4.24 of 2 seeds: t(1) 12.706
    assert shown.loc[0.01, "batch size 1"] == "73.00 ± 12.71; unstable (1/3)"
    assert shown.loc[0.1, "batch size 1"] == "diverged (3/3)"
    assert shown.loc[0.1, "batch size 10"] == "failed"
    boundary = tables.format_boundary(tables.instability_boundary(table), BOUNDS)
    assert boundary.loc[1].to_dict() == {
        "largest stable lr": "0.001",
        "smallest lr not stable": "0.01",
        "seeds there": "1 of 3 unstable",
        "every seed diverges from lr": "0.1",
        "boundary as a multiple of 2/λmax": "0.02–0.20",
        "boundary as a multiple of 2/mean‖x‖²": "0.05–0.50",
        "boundary as a multiple of 2/max‖x‖²": "0.20–2.00",
    }
    assert boundary.loc[10, "smallest lr not stable"] == "–"
    assert boundary.loc[10, "seeds there"] == "–"
    assert boundary.loc[10, "boundary as a multiple of 2/λmax"] == "> 0.63"
    assert boundary.loc[100, "boundary as a multiple of 2/λmax"] == "≤ 0.02"
    assert boundary.loc[1000, "seeds there"] == "1 of 3 diverged"


def failed_grid() -> pd.DataFrame:
    """``load_task`` of a grid whose every cell failed: one row per cell, no seed metrics."""
    rows = [
        {"task": "grid", "cell": f"lr{lr:g}_bs{b}", "status": "failed", "error": "boom"}
        | {"lr": lr, "batch_size": b, "iterations": 100, "dataset": "mnist"}
        | dict.fromkeys(SEED_FIELDS, np.nan)
        for lr in (0.1, 0.001)
        for b in (10, 100)
    ]
    return pd.DataFrame(rows)


def test_a_grid_whose_cells_all_failed_still_gives_its_tables():
    """Every table of Tasks 3 and 5 is made, and says what failed, with dashes, no NaN."""
    table = tables.grid_table(failed_grid())
    shown = tables.format_grid_table(table)
    assert set(shown["status"]) == {"failed: boom"}
    assert set(shown["final test accuracy (%)"]) == {tables.DASH}
    html = tables.styled(shown).to_html()
    assert "nan" not in html.lower() and "<NA>" not in html
    assert tables.best_lr(table).empty
    subset = tables.subset_table(failed_grid().assign(n_prime=100, task="subset"))
    assert set(tables.format_subset_table(subset)["status"]) == {"failed: boom"}


def test_styled_tables_for_readers():
    """Index as a column (no index-name row), headers in words, formats per column, a dash
    for NaN and <NA>, mean ± sd on one line, numbers kept as numbers."""
    frame = pd.DataFrame(
        {
            "max_abs_dW": [5.587935e-09, 0.0],
            "diverged_at": pd.array([pd.NA, 7], dtype="Int64"),
            "shown": ["0.3999 ± 0.0626", "ok"],
        },
        index=pd.Index(["numpy", "torch"], name="run"),
    )
    styler = tables.styled(
        frame, {"max_abs_dW": tables.scientific}, headers={"max_abs_dW": "largest |dW|"}
    )
    html = styler.to_html()
    assert styler.data["max_abs_dW"].dtype == float
    assert "5.6 × 10⁻⁹" in html and ">0<" in html
    assert "largest |dW|" in html and "max_abs_dW" not in html
    assert "nan" not in html.lower() and "&lt;NA&gt;" not in html and tables.DASH in html
    assert "0.3999\u00a0±\u00a00.0626" in html
    assert html.count("<tr>") == 3


def test_mean_ci_shows_the_first_digit_of_a_small_ci_and_zero_as_zero():
    assert tables.mean_ci(0.24621, 0.00002) == "0.24621 ± 0.00002"
    assert tables.mean_ci(0.5, 0.0, percent=True) == "50.00 ± 0"
    assert tables.mean_ci(0.3999, 0.0626) == "0.3999 ± 0.0626"
    assert tables.scientific(-3.2e12) == "-3.2 × 10¹²"
