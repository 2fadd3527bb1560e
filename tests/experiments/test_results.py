"""Result files: records and histories as a cell's job writes them (``cell_files.save_cell``),
what the loaders give back, atomic writes."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from linmnist.experiments.cells import train_seeds
from linmnist.experiments.results import (
    RUN_LOG,
    RUN_LOG_FIELDS,
    SEED_FIELDS,
    append_run_log,
    atomic_write_text,
    load_cell,
    load_history,
    load_task,
    read_run_log,
    summarize,
    write_record,
)

from .cell_files import save_cell


@pytest.fixture(scope="module")
def runs(small_data):
    """Two seeds of a converging run and two of a diverging one, with a test set."""
    (X, Y), (Xt, Yt) = small_data
    common = {"X_test": Xt, "Y_test": Yt, "batch_size": 10, "iterations": 30, "eval_every": 7}
    return {
        "lr0.01_bs10": train_seeds(X, Y, lr=0.01, seeds=[0, 1], **common),
        "lr5_bs10": train_seeds(X, Y, lr=5.0, seeds=[0, 1], **common),
    }


def save_all(directory, runs):
    for name, cell_runs in runs.items():
        params = {"lr": cell_runs[0].lr, "batch_size": 10, "iterations": 30, "seeds": [0, 1]}
        save_cell(directory, name, task="grid", params=params, runs=cell_runs)


def test_save_cell_writes_history_and_strict_json(tmp_path, runs):
    """The CSV holds every seed's history with a seed column; the JSON is strict (no NaN/inf)
    and its per-seed finals are the last history rows."""
    cell_runs = runs["lr0.01_bs10"]
    path = save_cell(tmp_path, "lr0.01_bs10", task="grid", params={"lr": 0.01}, runs=cell_runs)
    record = json.loads(path.read_text(), parse_constant=pytest.fail)
    assert record["status"] == "ok" and record["error"] is None and record["fingerprint"] is None
    assert [s["seed"] for s in record["seeds"]] == [0, 1]
    assert set(record["seeds"][0]) == set(SEED_FIELDS)
    history = pd.read_csv(tmp_path / "lr0.01_bs10.history.csv")
    assert list(history.columns) == ["seed", "iteration", "train_loss", "train_acc", "test_acc"]
    for run, seed in zip(cell_runs, record["seeds"], strict=True):
        mine = history[history["seed"] == run.seed].reset_index(drop=True)
        np.testing.assert_allclose(mine["train_loss"], run.history["train_loss"], rtol=1e-15)
        assert seed["final_iteration"] == run.history["iteration"].iloc[-1]
        assert seed["final_test_acc"] == run.history["test_acc"].iloc[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lr0.01_bs10.history.csv",
        "lr0.01_bs10.json",
    ]


def test_diverged_runs_are_recorded_with_their_iteration(tmp_path, runs):
    """A diverged seed keeps diverged_at and its finite last values; nothing non-finite leaks."""
    summary = summarize(runs["lr5_bs10"])
    assert summary["diverged_at"].notna().all()
    save_all(tmp_path, runs)
    cell = load_cell(tmp_path / "lr5_bs10.json")
    assert cell.seeds["diverged_at"].tolist() == summary["diverged_at"].tolist()
    assert (cell.seeds["final_iteration"] < cell.seeds["diverged_at"]).all()


def test_load_task_has_one_row_per_cell_and_seed_and_shows_failures(tmp_path, runs):
    """load_task: a row per (cell, seed) with the scalar parameters; a failed cell is one row
    with its error; the cells filter and temporary files are respected."""
    (tmp_path / "grid").mkdir()
    save_all(tmp_path / "grid", runs)
    failed = {"task": "grid", "cell": "lr1_bs1", "status": "failed", "error": "Boom: no"}
    write_record(tmp_path / "grid" / "lr1_bs1.json", failed | {"params": {"lr": 1.0}, "seeds": []})
    (tmp_path / "grid" / ".lr9_bs9.json.123.tmp").write_text("{")
    table = load_task(tmp_path, "grid")
    assert table.groupby("cell").size().to_dict() == {"lr0.01_bs10": 2, "lr1_bs1": 1, "lr5_bs10": 2}
    row = table[table["cell"] == "lr1_bs1"].iloc[0]
    assert row["status"] == "failed" and row["error"] == "Boom: no" and pd.isna(row["seed"])
    assert {"lr", "batch_size", "iterations"} <= set(table.columns)
    assert "seeds" not in table.columns
    only = load_task(tmp_path, "grid", cells=["lr5_bs10", "absent"])
    assert set(only["cell"]) == {"lr5_bs10"}
    history = load_history(tmp_path, "grid")
    assert set(history["cell"]) == {"lr0.01_bs10", "lr5_bs10"}
    assert list(history.columns[:6]) == [
        "cell",
        "lr",
        "batch_size",
        "iterations",
        "eval_every",
        "seed",
    ]
    assert set(history["eval_every"]) == {1, 7}
    assert load_task(tmp_path, "subset").empty


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    """A write that fails before the rename leaves the previous content and no temporary file."""
    target = tmp_path / "cell.json"
    atomic_write_text(target, "old")

    def fail(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cell.json"]


def log_entry(**changes):
    """A run-log entry: a complete run of 4 stability cells."""
    entry = {
        "finished": "2026-01-01T00:00:00+00:00",
        "tasks": "stability",
        "profile": None,
        "dataset": "mnist",
        "executor": "local",
        "scheduler": None,
        "jobs": 2,
        "threads_per_job": 1,
        "cores": 2,
        "cells": 4,
        "ok": 4,
        "failed": 0,
        "skipped": 0,
        "wall_seconds": 12.5,
    }
    return entry | changes


def test_the_run_log_keeps_every_run_in_order(tmp_path):
    """Each appended run is a line of runs.jsonl, read back oldest first with its fields; a
    directory without a log gives an empty frame with the same columns."""
    assert read_run_log(tmp_path).empty
    assert list(read_run_log(tmp_path).columns) == list(RUN_LOG_FIELDS)
    append_run_log(tmp_path, log_entry())
    append_run_log(tmp_path, log_entry(finished="2026-01-02T00:00:00+00:00", ok=0, skipped=4))
    log = read_run_log(tmp_path)
    assert log["skipped"].tolist() == [0, 4] and log["wall_seconds"].tolist() == [12.5, 12.5]
    assert log["finished"].iloc[1] == pd.Timestamp("2026-01-02", tz="UTC")
    assert log["profile"].isna().all()
    assert len((tmp_path / RUN_LOG).read_text().splitlines()) == 2


def test_the_run_log_refuses_an_incomplete_entry(tmp_path):
    """An entry without every field is refused, naming the missing ones; nothing is written."""
    entry = log_entry()
    del entry["wall_seconds"]
    with pytest.raises(ValueError, match=r"lacks the run-log fields \['wall_seconds'\]"):
        append_run_log(tmp_path, entry)
    assert not (tmp_path / RUN_LOG).exists()


def test_cells_read_together_equal_each_cell_read_alone(tmp_path, runs):
    """load_task and load_history read consecutive cells of one signature as one frame: the
    result equals the concatenation of each cell's own, dtypes included, when the cells mix
    a failed cell, diverged seeds and a parameter that is None in one cell only."""
    directory = tmp_path / "grid"
    directory.mkdir()
    for k, (name, cell_runs) in enumerate(sorted(runs.items()) * 2):
        params = {"lr": cell_runs[0].lr, "batch_size": 10, "n_prime": None if k == 3 else 100.0}
        save_cell(directory, f"{k}_{name}", task="grid", params=params, runs=cell_runs)
    failed = {"task": "grid", "cell": "2_failed", "status": "failed", "error": "Boom: no"}
    write_record(directory / "2_failed.json", failed | {"params": {"lr": 1.0}, "seeds": []})
    names = sorted(p.name.removesuffix(".json") for p in directory.glob("*.json"))
    assert len(names) == 5
    alone = pd.concat([load_task(tmp_path, "grid", cells=[c]) for c in names], ignore_index=True)
    pd.testing.assert_frame_equal(load_task(tmp_path, "grid"), alone, check_exact=True)
    together = load_history(tmp_path, "grid")
    alone = [load_history(tmp_path, "grid", cells=[c]) for c in names]
    alone = pd.concat(alone, ignore_index=True)[list(together.columns)]
    pd.testing.assert_frame_equal(together, alone, check_exact=True)
    assert together["n_prime"].dtype == object  # float64 had the cells been read as one
