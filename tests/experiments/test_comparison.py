"""The framework comparison as a product: its runs, its files, and reading them back."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from linmnist.engine.analysis import least_squares
from linmnist.engine.frameworks import quadratic_lr
from linmnist.engine.sgd import sample_batches, train
from linmnist.experiments import comparison as cmp
from linmnist.experiments.comparison import (
    FRAMEWORKS_PARAMETERS,
    RECORD_FIELDS,
    RUN_COLUMNS,
    RUNS,
    compare_frameworks,
    comparison_job,
    comparison_params,
    comparison_product,
    load_comparison,
)
from linmnist.experiments.jobs import make_product
from linmnist.experiments.paths import results_dir
from linmnist.experiments.results import read_record, write_record

SMALL = dict(
    lr=0.002, batch_size=50, iterations=30, seed=0, eval_every=5, study_lr=0.01,
    study_batch_size=100, study_iterations=20, study_eval_every=5,
)  # fmt: skip


@pytest.fixture(scope="module")
def data(small_data):
    """1,000 training and 300 test samples of ``small_data``, 30 % of their labels redrawn
    (so that the accuracies stay below 100 %)."""
    (X, Y), (Xt, Yt) = small_data
    X, Y, Xt, Yt = X[:, :1000], Y[:, :1000].copy(), Xt[:, :300], Yt[:, :300].copy()
    rng = np.random.default_rng(2)
    for M in (Y, Yt):
        flip = rng.random(M.shape[1]) < 0.3
        M[:, flip] = np.eye(10, dtype=np.float32)[rng.integers(0, 10, flip.sum())].T
    return X, Y, Xt, Yt


@pytest.fixture(scope="module")
def comparison(data):
    return compare_frameworks(*data, **SMALL, dataset="mnist")


def test_parameters_per_profile():
    assert comparison_params(None, "mnist") == {"dataset": "mnist", **FRAMEWORKS_PARAMETERS}
    assert FRAMEWORKS_PARAMETERS == {
        "lr": 0.001, "batch_size": 100, "iterations": 1000, "seed": 0, "eval_every": 10,
        "study_lr": 0.01, "study_batch_size": 1000, "study_iterations": 1000,
        "study_eval_every": 50,
    }  # fmt: skip
    small = comparison_params("small", "fashion-mnist")
    assert small["dataset"] == "fashion-mnist"
    assert (small["iterations"], small["eval_every"]) == (100, 10)
    assert (small["study_iterations"], small["study_eval_every"]) == (100, 10)
    assert small["lr"] == 0.001 and small["study_batch_size"] == 1000
    assert comparison_params("no-such-profile", "mnist") == comparison_params(None, "mnist")


def test_compare_frameworks_takes_exactly_the_parameters(data):
    with pytest.raises(TypeError, match="takes the settings lr, batch_size.*got lr, batch_s"):
        compare_frameworks(*data, **{k: v for k, v in SMALL.items() if k != "seed"})
    with pytest.raises(TypeError, match="got .*study_eval_every, momentum"):
        compare_frameworks(*data, **SMALL, momentum=0.9)


def test_product(tmp_path):
    product = comparison_product(tmp_path, "mnist", "small")
    assert (product.name, product.stem, product.group) == ("frameworks", "frameworks", "frameworks")
    assert product.directory == results_dir(tmp_path) / "frameworks"
    assert product.record == product.directory / "frameworks.json"
    assert product.job == "linmnist.experiments.comparison:comparison_job"
    assert product.outputs == ("frameworks.history.csv", "frameworks.runs.csv")
    assert product.params == comparison_params("small", "mnist")
    assert product.upstream == ()


@pytest.mark.slow
def test_every_run_is_there_with_its_configuration(comparison):
    runs = comparison.runs
    assert list(runs.index) == [spec.run for spec in RUNS]
    assert list(runs.columns) == RUN_COLUMNS[1:]
    assert runs["label"].is_unique
    assert runs.loc["numpy64", "precision"] == "float64"
    assert runs.loc["keras", "framework"] == "keras"
    assert runs.loc["torch64", "reference"] == "numpy64" and runs.loc["numpy", "reference"] is None
    study_torch, study_numpy = runs.loc["study_torch"], runs.loc["study_numpy"]
    assert (study_torch["loss"], study_torch["lr"], study_torch["bias"]) == ("mse", 0.01, True)
    assert (study_numpy["loss"], study_numpy["bias"]) == ("quadratic", True)
    assert study_numpy["lr"] == pytest.approx(quadratic_lr(0.01))
    assert not runs.loc["torch", "bias"] and runs.loc["torch", "batch_size"] == 50
    assert study_torch["batch_size"] == 100 and study_torch["iterations"] == 20
    for run in runs.index[runs["setting"] == "task2"]:
        assert comparison.history(run)["iteration"].tolist() == [0, 5, 10, 15, 20, 25, 29]
    assert comparison.history("study_numpy")["iteration"].tolist() == [0, 5, 10, 15, 19]
    assert list(comparison.histories["run"].unique()) == list(runs.index)
    assert (comparison.n_train, comparison.n_test) == (1000, 300)
    assert set(comparison.versions) == {"numpy", "torch", "keras"}
    assert comparison.params == {"dataset": "mnist", **SMALL} and comparison.ok


@pytest.mark.slow
def test_numpy_and_pytorch_agree_to_float32_rounding_on_identical_batches(comparison, data):
    runs = comparison.runs
    assert 0 < runs.loc["torch", "final_train_acc"] < 0.95  # the label noise bites
    for run, tol in [("torch", 1e-5), ("keras", 1e-5), ("study_torch", 1e-5), ("torch64", 1e-10)]:
        assert runs.loc[run, "max_abs_dW"] <= tol, run
        assert runs.loc[run, "max_loss_rel"] <= 100 * tol, run
        assert runs.loc[run, "evaluations"] == len(comparison.history(run))
        assert runs.loc[run, "differing"] <= 1, run
        assert runs.loc[run, "test_samples"] <= 1 and runs.loc[run, "train_samples"] <= 1
        reference = comparison.history(runs.loc[run, "reference"])
        np.testing.assert_allclose(
            comparison.history(run)["train_loss"], reference["train_loss"], rtol=100 * tol
        )
    assert (runs.loc[["numpy", "numpy64", "study_numpy"], "max_abs_dW"] == 0).all()
    # The numpy run is the engine's run on the batches drawn with the seed.
    X, Y, Xt, Yt = data
    batches = sample_batches(X.shape[1], batch_size=50, iterations=30, seed=0)
    alone = train(X, Y, lr=0.002, batch_size=50, iterations=30, batches=batches, eval_every=5,
                  X_test=Xt, Y_test=Yt)  # fmt: skip
    pd.testing.assert_frame_equal(comparison.history("numpy"), alone.history)
    assert runs.loc["numpy", "step_seconds"] > 0 and runs.loc["torch", "run_seconds"] > 0


@pytest.mark.slow
def test_final_metrics_and_optima(comparison, data):
    for run, row in comparison.runs.iterrows():
        last = comparison.history(run).iloc[-1]
        assert row["final_iteration"] == last["iteration"]
        assert row["final_train_acc"] == last["train_acc"]
        assert row["final_test_acc"] == last["test_acc"]
        assert pd.isna(row["diverged_at"])
    for optimum, bias in ((comparison.optimum, False), (comparison.optimum_bias, True)):
        exact = least_squares(*data, bias=bias)
        assert (optimum.loss, optimum.train_acc, optimum.test_acc) == (
            exact.loss, exact.train_acc, exact.test_acc
        )  # fmt: skip
    assert comparison.optimum_bias.loss < comparison.optimum.loss


@pytest.mark.slow
def test_the_job_writes_files_that_round_trip_through_load_comparison(
    tmp_path, monkeypatch, comparison, data
):
    calls = []

    def fake_compare(*arrays, **kwargs):
        calls.append((arrays, kwargs))
        return comparison

    data64 = tuple(a.astype(np.float64) for a in data)
    monkeypatch.setattr(cmp, "load_data", lambda dataset: (data, data64))
    monkeypatch.setattr(cmp, "compare_frameworks", fake_compare)
    product = comparison_product(tmp_path, "mnist", "small")
    product = dataclasses.replace(product, params={"dataset": "mnist", **SMALL})
    outcome = make_product(product, {})
    assert (outcome.status, outcome.error) == ("ok", None)
    (arrays, kwargs), = calls  # fmt: skip
    assert arrays == data and kwargs["data64"] is data64
    assert kwargs == {**SMALL, "data64": data64, "dataset": "mnist"}
    assert sorted(p.name for p in product.directory.iterdir()) == [
        "frameworks.history.csv", "frameworks.json", "frameworks.runs.csv"
    ]  # fmt: skip
    record = read_record(product.record)
    assert set(RECORD_FIELDS) <= set(record)
    assert record["runs"] == [spec.run for spec in RUNS] and record["n_test"] == 300
    assert record["optimum_bias"]["loss"] == comparison.optimum_bias.loss

    loaded = load_comparison(product.directory)
    pd.testing.assert_frame_equal(loaded.runs, comparison.runs)
    pd.testing.assert_frame_equal(loaded.histories, comparison.histories)
    assert (loaded.optimum, loaded.optimum_bias) == (comparison.optimum, comparison.optimum_bias)
    assert loaded.params == {"dataset": "mnist", **SMALL} and loaded.dataset == "mnist"
    assert (loaded.n_train, loaded.n_test, loaded.versions) == (1000, 300, comparison.versions)
    assert (loaded.status, loaded.error, loaded.directory) == ("ok", None, product.directory)
    assert loaded.wall_seconds >= 0
    pd.testing.assert_frame_equal(loaded.history("torch"), comparison.history("torch"))
    pd.testing.assert_frame_equal(loaded.select("study"), comparison.select("study"))


def test_a_failed_or_missing_comparison(tmp_path):
    with pytest.raises(FileNotFoundError, match="frameworks.json is missing"):
        load_comparison(tmp_path)
    write_record(
        tmp_path / "frameworks.json",
        {"product": "frameworks", "status": "failed", "error": "boom", "params": {"lr": 1}},
    )
    failed = load_comparison(tmp_path)
    assert (failed.status, failed.error, failed.ok) == ("failed", "boom", False)
    assert failed.runs.empty and failed.histories.empty and failed.optimum is None
    assert list(failed.runs.columns) == RUN_COLUMNS[1:]
    with pytest.raises(KeyError, match="run must be one of"):
        failed.history("torch")


def test_the_job_refuses_another_stem(tmp_path):
    with pytest.raises(ValueError, match="stem must be 'frameworks'"):
        comparison_job(comparison_params(None, "mnist"), tmp_path, "other")


@pytest.mark.integration
@pytest.mark.slow
def test_the_job_on_mnist(tmp_path):
    params = comparison_params("small", "mnist") | {"iterations": 20, "study_iterations": 5}
    fields = comparison_job(params, tmp_path, "frameworks")
    assert fields["n_train"] == 60000 and fields["n_test"] == 10000
    write_record(tmp_path / "frameworks.json", {"status": "ok", "params": params, **fields})
    loaded = load_comparison(tmp_path)
    runs = loaded.runs
    assert runs.loc["torch", "max_abs_dW"] <= 1e-5 and runs.loc["torch64", "max_abs_dW"] <= 1e-10
    assert runs.loc["keras", "max_abs_dW"] <= 1e-5 and runs.loc["study_torch", "max_abs_dW"] <= 1e-5
    assert 0.5 < runs.loc["numpy", "final_test_acc"] < 0.9
    assert loaded.optimum.loss == pytest.approx(0.1955, abs=1e-3)
