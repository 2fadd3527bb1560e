"""Summary tables and discussion text: computed from result files, numbers never typed in."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from linmnist.engine.sgd import TrainResult
from linmnist.experiments import results
from linmnist.report import summary

LRS = (0.1, 0.01, 0.001)
BATCH_SIZES = (1, 10, 100, 1000)
SEEDS = (0, 1, 2)


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


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """A runs directory with a fake 3 x 4 grid, a failed cell and a 3-size subset task."""
    root = tmp_path_factory.mktemp("runs")
    (root / "grid").mkdir()
    (root / "subset").mkdir()
    for lr in LRS:
        for b in BATCH_SIZES:
            if (lr, b) == (0.01, 1000):
                continue
            runs = [fake_run(lr=lr, batch_size=b, seed=s) for s in SEEDS]
            params = {"lr": lr, "batch_size": b, "iterations": 50, "seeds": list(SEEDS)}
            results.save_cell(
                root / "grid", f"lr{lr:g}_bs{b}", task="grid", params=params, runs=runs
            )
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
    for n in (100, 1000, 10000):
        runs = [fake_run(lr=0.001, batch_size=100, seed=s, n_prime=n) for s in SEEDS]
        params = {"n_prime": n, "lr": 0.001, "batch_size": 100, "iterations": 50}
        results.save_cell(root / "subset", f"n{n}", task="subset", params=params, runs=runs)
    return root


@pytest.fixture(scope="module")
def table(runs_dir):
    return summary.grid_table(results.load_task(runs_dir, "grid"))


def numbers(text):
    return set(re.findall(r"\d+\.\d+", text))


def test_grid_table_has_one_row_per_configuration_sorted(table):
    assert len(table) == len(LRS) * len(BATCH_SIZES)
    assert table["lr"].tolist()[:4] == [0.1] * 4
    assert table["batch_size"].tolist()[:4] == list(BATCH_SIZES)


def test_grid_table_means_over_seeds_that_did_not_diverge(table):
    row = table[(table["lr"] == 0.001) & (table["batch_size"] == 1)].iloc[0]
    expected = [0.80 + 0.02 * 1 + 0.001 * s for s in SEEDS]
    assert row["final_train_acc_mean"] == pytest.approx(np.mean(expected))
    assert row["final_train_acc_sd"] == pytest.approx(np.std(expected, ddof=1))
    assert row["n_seeds"] == 3 and row["n_diverged"] == 0


def test_grid_table_reports_divergence_not_its_metrics(table):
    rows = table[table["lr"] == 0.1]
    assert (rows["n_diverged"] == 3).all()
    assert rows["final_train_loss_mean"].isna().all()
    assert rows["diverged_at_min"].tolist() == [3] * 4
    assert rows["diverged_at_max"].tolist() == [5] * 4


def test_grid_table_separates_fidelity_and_thinned_seconds(table):
    row = table[(table["lr"] == 0.001) & (table["batch_size"] == 1000)].iloc[0]
    assert row["seconds_fidelity"] == pytest.approx(7.0)
    assert row["seconds_thinned"] == pytest.approx(2.0)


def test_format_grid_table_status_texts(table):
    shown = summary.format_grid_table(table)
    assert shown.loc[("0.1", "10"), "status"] == "diverged at iteration 3-5 (3 of 3 seeds)"
    assert shown.loc[("0.01", "1000"), "status"] == "failed: MemoryError: boom"
    assert shown.loc[("0.001", "100"), "status"] == "ok"
    row = shown.loc[("0.001", "1")]
    assert row["final train accuracy (%)"] == "82.10 ± 0.10"
    assert row["study: test accuracy at iteration 800"] == "80.3 %"
    assert row["final training loss"].startswith("0.2790 ± ")


def test_best_lr_is_picked_on_training_loss_and_skips_diverged(table):
    best = summary.best_lr(table).set_index("batch_size")
    assert best.loc[10, "best_lr"] == 0.01
    assert best.loc[1000, "best_lr"] == 0.001, "the failed cell is not a candidate"
    assert best.loc[1, "study_best_lr"] == 0.001
    assert not best.loc[1, "agrees"] and best.loc[10, "agrees"]
    shown = summary.format_best_lr(summary.best_lr(table))
    assert shown["same as the study"].tolist() == ["no", "yes", "yes", "no"]


def test_best_lr_ignores_test_accuracy(table):
    flipped = table.copy()
    flipped["final_test_acc_mean"] = -flipped["final_train_acc_mean"]
    assert (
        summary.best_lr(flipped)["best_lr"].tolist() == summary.best_lr(table)["best_lr"].tolist()
    )


def test_task2_table_reads_the_dense_seed_at_the_study_iterations(runs_dir):
    history = results.load_history(runs_dir, "grid")
    cell = history[(history["lr"] == 0.001) & (history["batch_size"] == 100)]
    comparison = summary.task2_table(cell)
    assert comparison["iteration"].tolist() == [0, 49]
    assert comparison["study_iteration"].tolist() == [0, 999]
    assert comparison["ours_train_acc"].iloc[0] == pytest.approx(0.82)
    shown = summary.format_task2_table(comparison)
    assert shown.index.tolist() == ["0", "49 / 999"]
    assert shown["test accuracy, study"].tolist() == ["36.90 %", "82.14 %"]


def test_subset_table_gap_shrinks_with_n_prime(runs_dir):
    table = summary.subset_table(results.load_task(runs_dir, "subset"))
    gaps = table.set_index("n_prime")["gap_mean"]
    assert gaps.tolist() == pytest.approx([0.1, 0.05, 0.1 / 3])
    shown = summary.format_subset_table(table)
    assert shown["study at iteration 400: train / test"].tolist()[0] == "93.0 % / 66.8 %"
    assert shown["train - test gap (points)"].tolist()[2] == "3.33 ± 0.00"


def test_batch_size_discussion_numbers_come_from_the_table(table):
    text = summary.batch_size_discussion(
        table, lr_max=0.0525, lambda_max=38.09, n_train=60000, curvature=(87.8, 295.1)
    )
    assert "every one of its 12 runs diverged, at iteration 3-5" in text
    assert "2/\\lambda_{\\max} = 0.0525" in text
    row = table[(table["lr"] == 0.001) & (table["batch_size"] == 1)].iloc[0]
    assert f"{100 * row['final_test_acc_mean']:.2f}" in text
    assert "batch size 1000 sees 50,000 samples (0.833 epochs)" in text
    assert "0.12 for a typical image and -1.95 for the largest one" in text
    assert "we agree on 2 of 4 batch sizes" in text
    assert " s at batch size" not in text, "timings are in cost_discussion"
    shifted = table.assign(final_test_acc_mean=table["final_test_acc_mean"] + 0.001)
    other = summary.batch_size_discussion(shifted, lr_max=0.0525, lambda_max=38.09, n_train=60000)
    assert numbers(other) != numbers(text), "the text follows the results"


def test_cost_discussion_compares_fidelity_and_thinned_runs(table):
    text = summary.cost_discussion(table)
    assert "A run of 50 iterations evaluated after every iteration" in text
    assert "took 6.0 s at batch size 1, 6.0 s at batch size 10" in text
    assert "every few iterations took 1.0 s at batch size 1," in text
    untimed = table.assign(seconds_fidelity=np.nan)
    assert summary.cost_discussion(untimed).startswith("No run was timed")


def test_batch_size_discussion_rejects_bad_threshold(table):
    with pytest.raises(ValueError, match="lr_max and lambda_max"):
        summary.batch_size_discussion(table, lr_max=0.0, lambda_max=38.0, n_train=10)


def test_subset_discussion_states_the_gap(runs_dir):
    table = summary.subset_table(results.load_task(runs_dir, "subset"))
    text = summary.subset_discussion(table, n_features=784, n_classes=10)
    assert "The model has 7,840 weights" in text
    assert "The train-test gap shrinks from" in text
    assert "+3.33 points at N' = 10000" in text


def test_sample_curvature():
    X = np.array([[1.0, 0.0], [2.0, 3.0]])
    assert summary.sample_curvature(X) == (7.0, 9.0)
    with pytest.raises(ValueError, match="X must be"):
        summary.sample_curvature(np.zeros(3))


def test_formatting_helpers():
    assert summary.pct(0.8534) == "85.34 %"
    assert summary.pct(float("nan")) == summary.DASH
    assert summary.mean_sd(0.5, float("nan")) == "0.5000"
    assert summary.mean_sd(0.5, 0.01, percent=True) == "50.00 ± 1.00"


def test_shapes_table_before_and_after_flattening():
    shapes = summary.shapes_table(
        {"x_train": np.zeros((6, 28, 28), np.uint8), "X": np.zeros((784, 6), np.float32)}
    )
    assert shapes["shape"].tolist() == ["6 x 28 x 28", "784 x 6"]
    assert shapes["dtype"].tolist() == ["uint8", "float32"]


def test_one_hot_check_flags_a_wrong_column():
    y = np.array([2, 1, 0])
    Y = np.eye(10)[:, y]
    check = summary.one_hot_check({"train": y}, {"train": Y}, 0)
    assert check.loc[0, "label"] == 2 and check.loc[0, "argmax"] == 2
    assert check.loc[0, "one-hot column"] == "0 0 1 0 0 0 0 0 0 0"
    assert check.loc[0, "consistent"]
    Y[3, 0] = 1
    assert not summary.one_hot_check({"train": y}, {"train": Y}, 0).loc[0, "consistent"]
    with pytest.raises(ValueError, match="index must be in"):
        summary.one_hot_check({"train": y}, {"train": Y}, 3)


def test_study_figures_are_left_out_for_another_dataset(table, runs_dir):
    """Without the study (Fashion-MNIST), no table or text carries the study's MNIST figures."""
    grid = summary.format_grid_table(table, study=False)
    assert not [c for c in grid.columns if "study" in c]
    best = summary.format_best_lr(summary.best_lr(table), study=False)
    assert not [c for c in best.columns if "study" in c]
    history = results.load_history(runs_dir, "grid")
    cell = history[(history["lr"] == 0.001) & (history["batch_size"] == 100)]
    task2 = summary.format_task2_table(summary.task2_table(cell), study=False)
    assert task2.index.tolist() == ["0", "49"]
    assert task2.columns.tolist() == ["training loss", "train accuracy", "test accuracy"]
    subset = summary.format_subset_table(
        summary.subset_table(results.load_task(runs_dir, "subset"))
    )
    assert "study at iteration 400: train / test" in subset.columns
    text = summary.batch_size_discussion(
        table, lr_max=0.05, lambda_max=40.0, n_train=60000, study=False
    )
    assert "The study" not in text and "claimed" not in text
    assert "The study, which picked" in summary.batch_size_discussion(
        table, lr_max=0.05, lambda_max=40.0, n_train=60000
    )
    assert "(on MNIST, of the same size)" in summary.cost_discussion(table, study=False)


def test_dataset_names_labels_and_scope():
    assert summary.dataset_name("fashion-mnist") == "Fashion-MNIST"
    assert summary.is_study_dataset("mnist") and not summary.is_study_dataset("fashion-mnist")
    assert summary.report_title("fashion-mnist").startswith("linmnist — a linear Fashion-MNIST")
    assert summary.label_text("mnist", 2) == "2"
    assert summary.label_text("fashion-mnist", 9) == "9: Ankle boot"
    assert "not shown here" in summary.report_scope("fashion-mnist")
    assert "stand beside ours" in summary.report_scope("mnist")
    text = summary.data_description(
        "fashion-mnist", n_train=60000, n_test=10000, image_shape=(28, 28)
    )
    assert text.startswith("Fashion-MNIST: 60,000 training and 10,000 test images of 28 × 28")
    assert "7: Sneaker" in text and "784 \\times N" in text
    with pytest.raises(ValueError, match="dataset must be one of"):
        summary.dataset_name("cifar")
    with pytest.raises(ValueError, match="label must be in"):
        summary.label_text("fashion-mnist", 10)


def test_known_labels_compares_expected_and_found():
    labels = {"train": np.array([0, 2, 1]), "test": np.array([1, 1])}
    table = summary.known_labels(labels, [("train", 1, 2), ("test", 0, 7)])
    assert table["ok"].tolist() == [True, False]
    assert table["found"].tolist() == [2, 1]
    assert summary.known_labels(labels, ()).empty
    with pytest.raises(ValueError, match="split"):
        summary.known_labels(labels, [("valid", 0, 1)])
