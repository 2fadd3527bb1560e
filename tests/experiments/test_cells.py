"""One grid cell's computation: a run per seed, fidelity seeds evaluated at every iteration."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linmnist.engine.noise_floor import largest_stable_lr
from linmnist.engine.sgd import draw_subset, train
from linmnist.engine.spectrum import excess_over_gd, spectrum
from linmnist.experiments import cells
from linmnist.experiments.cells import train_seeds
from linmnist.experiments.grids import eval_period
from linmnist.experiments.results import plain


def test_fidelity_seeds_are_evaluated_every_iteration_the_others_thinned(small_data):
    """Seed 0 gets one history row per iteration, the others every eval_every and the last."""
    (X, Y), (Xt, Yt) = small_data
    runs = train_seeds(
        X,
        Y,
        X_test=Xt,
        Y_test=Yt,
        lr=0.01,
        batch_size=10,
        iterations=25,
        seeds=[0, 3],
        fidelity_seeds=[0],
        eval_every=10,
    )
    assert [r.seed for r in runs] == [0, 3]
    assert [r.eval_every for r in runs] == [1, 10]
    assert runs[0].history["iteration"].tolist() == list(range(25))
    assert runs[1].history["iteration"].tolist() == [0, 10, 20, 24]
    assert runs[1].history["test_acc"].notna().all()
    assert eval_period(3, fidelity_seeds=[0], eval_every=10) == 10


def test_seeds_equal_independent_runs(small_data):
    """Each seed's run is exactly linmnist.engine.sgd.train with that seed."""
    (X, Y), _ = small_data
    runs = train_seeds(X, Y, lr=0.01, batch_size=5, iterations=12, seeds=[2, 5], fidelity_seeds=[])
    alone = train(X, Y, lr=0.01, batch_size=5, iterations=12, seed=5)
    pd.testing.assert_frame_equal(runs[1].history, alone.history)
    np.testing.assert_array_equal(runs[1].W, alone.W)
    assert not np.array_equal(runs[0].W, runs[1].W)


def test_each_seed_trains_on_its_own_subset(small_data):
    """With n_prime, seed s trains (and is measured) on draw_subset(N, n_prime, seed=s)."""
    (X, Y), (Xt, Yt) = small_data
    runs = train_seeds(
        X, Y, X_test=Xt, Y_test=Yt, n_prime=50, lr=0.01, batch_size=20, iterations=8, seeds=[0, 1]
    )
    for run in runs:
        subset = draw_subset(X.shape[1], 50, seed=run.seed)
        alone = train(
            X[:, subset],
            Y[:, subset],
            X_test=Xt,
            Y_test=Yt,
            lr=0.01,
            batch_size=20,
            iterations=8,
            seed=run.seed,
            eval_every=run.eval_every,
        )
        pd.testing.assert_frame_equal(run.history, alone.history)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": []}, "seeds must be a non-empty sequence of distinct integers"),
        ({"seeds": [1, 1]}, "seeds must be a non-empty sequence of distinct integers"),
        ({"seeds": [1], "fidelity_seeds": [0]}, r"fidelity_seeds must be a subset of seeds \[1\]"),
        ({"seeds": range(10**6)}, "seeds must hold at most 1,000 seeds, got 1,000,000"),
    ],
)
def test_wrong_seeds_are_refused(small_data, kwargs, message):
    """Seeds must be distinct, at most ``MAX_SEEDS``, and the fidelity seeds among them."""
    (X, Y), _ = small_data
    with pytest.raises(ValueError, match=message):
        train_seeds(X, Y, lr=0.01, batch_size=5, iterations=2, **kwargs)


@pytest.mark.slow  # about a second: make test, not make test-fast
def test_cell_job_records_its_wall_time_and_its_runs_time(small_data, monkeypatch, tmp_path):
    """overhead_seconds = job_seconds - run_seconds, the evaluator is shared by cells, and
    each seed's final excess over gradient descent is that of its run's weights."""
    (X, Y), (Xt, Yt) = small_data
    monkeypatch.setattr(cells, "prepared", lambda dataset: (X, Y, Xt, Yt))
    cells.shared_evaluator.cache_clear()
    cells.warmed_up.cache_clear()
    cells.data_spectrum.cache_clear()
    params = {
        "task": "grid", "cell": "lr0.01_bs10", "dataset": "toy", "lr": 0.01, "batch_size": 10,
        "iterations": 20, "seeds": [0, 1], "fidelity_seeds": [0], "eval_every": 5,
    }  # fmt: skip
    try:
        record = cells.cell_job(params, tmp_path, "lr0.01_bs10")
        again = cells.cell_job({**params, "lr": 0.02}, tmp_path, "lr0.02_bs10")
        assert cells.shared_evaluator.cache_info().hits >= 1
    finally:
        cells.shared_evaluator.cache_clear()
        cells.warmed_up.cache_clear()
    spec = spectrum(X, Y)
    for r, lr in ((record, 0.01), (again, 0.02)):
        runs = train_seeds(X, Y, lr=lr, batch_size=10, iterations=20, seeds=[0, 1])
        excess = [excess_over_gd(spec, run.W, lr, 20) for run in runs]
        np.testing.assert_allclose([s["final_excess"] for s in r["seeds"]], excess, rtol=1e-6)
        assert r["run_seconds"] == pytest.approx(sum(s["seconds"] for s in r["seeds"]))
        assert r["overhead_seconds"] == pytest.approx(r["job_seconds"] - r["run_seconds"])
        assert 0 < r["run_seconds"] <= r["job_seconds"]
    assert (tmp_path / "lr0.01_bs10.history.csv").is_file()


@pytest.mark.slow  # a fresh interpreter importing the package: seconds
def test_a_cell_process_imports_no_framework():
    """torch, keras and dask stay out of a grid cell's process (seconds of imports each)."""
    code = (
        "import sys\n"
        "from linmnist.experiments import cells, jobs, local_executor\n"
        "from tests.conftest import mnist_like\n"
        "(X, Y), (Xt, Yt) = mnist_like(300, 100)\n"
        "cells.train_seeds(X, Y, X_test=Xt, Y_test=Yt, lr=0.01, batch_size=1, iterations=5,\n"
        "                  seeds=[0, 1])\n"
        "cells.train_seeds(X, Y, lr=0.01, batch_size=50, iterations=5, seeds=[0])\n"
        "print(sorted(m for m in ('torch', 'keras', 'dask', 'distributed') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_an_edge_cell_trains_at_its_multiple_of_the_predicted_edge(small_data, monkeypatch):
    """lr = edge_factor x noise_floor.largest_stable_lr of the training set for its batch."""
    (X, Y), _ = small_data
    monkeypatch.setattr(cells, "prepared", lambda dataset: (X, Y, None, None))
    cells.moments.cache_clear()
    try:
        spec, model = cells.moments("toy-edge")
        lr = cells.cell_lr({"dataset": "toy-edge", "edge_factor": 0.5, "batch_size": 4})
    finally:
        cells.moments.cache_clear()
    assert lr == pytest.approx(0.5 * largest_stable_lr(model, batch_size=4))
    assert lr < spec.lr_max
    assert cells.cell_lr({"lr": 0.03, "batch_size": 4}) == 0.03


@pytest.mark.slow  # about a second: make test, not make test-fast
@pytest.mark.parametrize("lr", [0.01, 3.0])  # a run that converges, runs that diverge
def test_a_sourced_cell_writes_what_training_it_would(small_data, monkeypatch, tmp_path, lr):
    """The sweep's cell read from the grid's (``products.source_cell``) has the history and the
    seed rows that training it gives, but for its seeds' seconds (NaN: no run of its own)."""
    (X, Y), (Xt, Yt) = small_data
    monkeypatch.setattr(cells, "prepared", lambda dataset: (X, Y, Xt, Yt))
    for cached in (cells.shared_evaluator, cells.warmed_up, cells.data_spectrum):
        cached.cache_clear()
    common = {"dataset": "toy", "lr": lr, "batch_size": 10, "iterations": 40}
    grid = {**common, "task": "grid", "cell": "c", "seeds": [0, 1, 2], "fidelity_seeds": [0],
            "eval_every": 5}  # fmt: skip
    sweep = {**common, "task": "stability", "cell": "c", "seeds": [2, 0], "fidelity_seeds": [],
             "eval_every": 10}  # fmt: skip
    for task in ("grid", "stability", "direct"):
        (tmp_path / task / "staging").mkdir(parents=True)
    try:
        source = cells.cell_job(grid, tmp_path / "grid", "c")
        (tmp_path / "grid" / "c.json").write_text(json.dumps(plain(source)))
        trained = cells.cell_job(sweep, tmp_path / "direct", "c")
        read = cells.sourced_cell_job(
            {**sweep, "source": {"task": "grid", "cell": "c"}}, tmp_path / "stability" / "staging",
            "c",
        )  # fmt: skip
    finally:
        for cached in (cells.shared_evaluator, cells.warmed_up, cells.data_spectrum):
            cached.cache_clear()
    # The same weights; a loss is the quadratic form of a chunk of them, so its rounding
    # (1e-13 relative) depends on the chunk.
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "stability" / "staging" / "c.history.csv"),
        pd.read_csv(tmp_path / "direct" / "c.history.csv"),
        check_exact=False, rtol=1e-12,
    )  # fmt: skip
    assert (lr > 1) == any(s["diverged_at"] is not None for s in read["seeds"])
    expected = pd.DataFrame(plain(trained["seeds"])).astype(float).assign(seconds=np.nan)
    pd.testing.assert_frame_equal(pd.DataFrame(plain(read["seeds"])).astype(float), expected,
                                  rtol=1e-12)  # fmt: skip
    assert read["source"] == "grid/c" and read["run_seconds"] == 0


@pytest.mark.slow  # about a second: make test, not make test-fast
def test_cells_trained_side_by_side_are_the_cells_trained_alone(small_data, monkeypatch, tmp_path):
    """A lockstep product's cells, read by the sourced job, are those cell_job trains (to
    float32 rounding), with the seconds of their own runs."""
    (X, Y), (Xt, Yt) = small_data
    monkeypatch.setattr(cells, "prepared", lambda dataset: (X, Y, Xt, Yt))
    for cached in (cells.shared_evaluator, cells.warmed_up, cells.data_spectrum):
        cached.cache_clear()
    common = {"dataset": "toy", "task": "stability", "batch_size": 10, "iterations": 40,
              "seeds": [0, 1], "fidelity_seeds": [], "eval_every": 10}  # fmt: skip
    for folder in ("lockstep", "stability/staging", "direct"):
        (tmp_path / folder).mkdir(parents=True)
    try:
        steps = cells.lockstep_job({**common, "cell": "stability_bs10", "lrs": [0.01, 3.0],
                                    "cells": ["a", "b"]}, tmp_path / "lockstep", "s")  # fmt: skip
        (tmp_path / "lockstep" / "s.json").write_text(json.dumps(plain(steps)))
        for lr in (0.01, 3.0):
            trained = cells.cell_job({**common, "cell": "c", "lr": lr}, tmp_path / "direct", "c")
            read = cells.sourced_cell_job(
                {**common, "cell": "c", "lr": lr, "source": {"task": "lockstep", "cell": "s"}},
                tmp_path / "stability" / "staging", "c",
            )  # fmt: skip
            pd.testing.assert_frame_equal(
                pd.read_csv(tmp_path / "stability" / "staging" / "c.history.csv"),
                pd.read_csv(tmp_path / "direct" / "c.history.csv"), rtol=1e-5,
            )  # fmt: skip
            mine = pd.DataFrame(plain(read["seeds"])).astype(float)
            alone = pd.DataFrame(plain(trained["seeds"])).astype(float)
            pd.testing.assert_frame_equal(mine.drop(columns="seconds"),
                                          alone.drop(columns="seconds"), rtol=1e-4)  # fmt: skip
            assert (mine["seconds"] > 0).all() and read["source"] == "lockstep/s"
            assert read["run_seconds"] == pytest.approx(mine["seconds"].sum())
    finally:
        for cached in (cells.shared_evaluator, cells.warmed_up, cells.data_spectrum):
            cached.cache_clear()
    assert len(steps["seeds"]) == 4 and {s["lr"] for s in steps["seeds"]} == {0.01, 3.0}
