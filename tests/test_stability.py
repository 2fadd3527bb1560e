"""The stability map: bounds from the data, accuracy and boundary tables, text and figure."""

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from linmnist.experiments.results import append_run_log
from linmnist.report.stability import (
    STUDY_LRS,
    Bounds,
    accuracy_table,
    cost_text,
    discussion,
    divergence_boundary,
    format_accuracy,
    format_boundary,
    predicted_bounds,
    stability_map,
    study_positions,
    sweep_run,
)

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
    """What load_task gives for the sweep: one row per cell and seed (one row per failed cell)."""
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


def test_accuracy_is_summarized_over_the_seeds_that_did_not_diverge():
    """Mean, sd, min and max leave out diverged seeds (whose last accuracy is meaningless);
    a cell where every seed diverged has no accuracy; a failed cell has no seeds."""
    table = accuracy_table(seeds_frame(failed=[(10, 0.1)])).set_index(["batch_size", "lr"])
    row = table.loc[(1, 0.0316)]
    assert (row["n_seeds"], row["n_diverged"], row["diverged_at_min"]) == (3, 1, 41)
    assert row["final_test_acc_mean"] == pytest.approx(0.63)
    assert row["final_test_acc_sd"] == pytest.approx(np.std([0.60, 0.66], ddof=1))
    assert (row["final_test_acc_min"], row["final_test_acc_max"]) == (0.60, 0.66)
    assert row["final_train_loss_mean"] == pytest.approx(0.37)
    assert math.isnan(table.loc[(1, 0.1), "final_test_acc_mean"])
    assert table.loc[(1, 0.1), "diverged_at_max"] == 42
    failed = table.loc[(10, 0.1)]
    assert failed["status"] == "failed" and failed["n_seeds"] == 0
    assert list(table.index) == sorted(SWEEP)


def test_the_boundary_is_the_first_lr_where_a_seed_diverges():
    """Per batch size: the largest lr below the first divergence, the first diverging lr with
    its seeds, and the lr from which every seed diverges; no divergence, divergence from the
    start, and a non-monotone batch size (1000: one seed diverges at 0.01, none at 0.0316)."""
    boundary = divergence_boundary(accuracy_table(seeds_frame()))
    assert list(boundary.index) == [1, 10, 100, 1000]
    one = boundary.loc[1]
    assert (one["largest_stable_lr"], one["first_diverging_lr"]) == (0.01, 0.0316)
    assert (one["diverged_there"], one["diverged_at_there"], one["all_diverge_lr"]) == (
        "1/3",
        41,
        0.1,
    )
    ten = boundary.loc[10]
    assert ten["largest_stable_lr"] == 0.1 and math.isnan(ten["first_diverging_lr"])
    assert pd.isna(ten["diverged_there"]) and math.isnan(ten["all_diverge_lr"])
    hundred = boundary.loc[100]
    assert math.isnan(hundred["largest_stable_lr"]) and hundred["first_diverging_lr"] == 0.001
    assert hundred["all_diverge_lr"] == 0.001
    thousand = boundary.loc[1000]
    assert (thousand["largest_stable_lr"], thousand["first_diverging_lr"]) == (0.001, 0.01)
    assert thousand["all_diverge_lr"] == 0.1
    assert (boundary["lr_low"] == 0.001).all() and (boundary["lr_high"] == 0.1).all()


def test_failed_cells_do_not_move_the_boundary():
    """A failed cell is neither stable nor diverged: it is left out."""
    boundary = divergence_boundary(accuracy_table(seeds_frame(failed=[(1, 0.0316)])))
    assert (boundary.loc[1, "largest_stable_lr"], boundary.loc[1, "first_diverging_lr"]) == (
        0.01,
        0.1,
    )


def test_bounds_are_computed_from_the_data_and_ordered(small_data):
    """lambda_max is the top eigenvalue of X X^T / N, the curvatures are the squared norms, and
    2/max||x||^2 <= 2/mean||x||^2 <= 2/lambda_max (the trace bounds the top eigenvalue)."""
    (X, _), _ = small_data
    bounds = predicted_bounds(X)
    X64 = X.astype(np.float64)
    assert bounds.lambda_max == pytest.approx(np.linalg.eigvalsh(X64 @ X64.T / X.shape[1])[-1])
    norms = (X64**2).sum(axis=0)
    assert bounds.curvature_mean == pytest.approx(norms.mean())
    assert bounds.curvature_max == pytest.approx(norms.max())
    assert bounds.per_sample_lr == pytest.approx(2 / norms.max())
    assert bounds.per_sample_lr <= bounds.mean_sample_lr <= bounds.lr_max
    assert bounds.n_samples == X.shape[1]
    with pytest.raises(ValueError, match="X must be a 2-D"):
        predicted_bounds(X[:, 0])


@pytest.mark.integration
def test_bounds_on_mnist_reproduce_the_measured_facts(mnist):
    """SPEC: lambda_max 38.09 (2/lambda_max 0.0525), ||x||^2 mean 87.8 and max 295.1."""
    (X, _), _ = mnist
    bounds = predicted_bounds(X)
    assert round(bounds.lambda_max, 2) == 38.09 and round(bounds.lr_max, 4) == 0.0525
    assert round(bounds.curvature_mean, 1) == 87.8 and round(bounds.curvature_max, 1) == 295.1
    assert round(bounds.per_sample_lr, 4) == 0.0068


def test_study_positions_give_ratios_and_the_sweep_outcome():
    """Each study lr divided by each bound, and per batch size its outcome in the sweep."""
    table = accuracy_table(seeds_frame({k: v for k, v in SWEEP.items() if k[1] != 0.001}))
    positions = study_positions(table, BOUNDS)
    assert list(positions.index) == list(STUDY_LRS)
    assert positions.loc[0.1, "x 2/lambda_max"] == pytest.approx(2.0)
    assert positions.loc[0.01, "x 2/mean||x||^2"] == pytest.approx(0.5)
    assert positions.loc[0.01, "x 2/max||x||^2"] == pytest.approx(2.0)
    assert positions.loc[0.1, "batch size 1"] == "diverged (3/3 seeds)"
    assert positions.loc[0.1, "batch size 10"] == "84.67 %"
    assert positions.loc[0.01, "batch size 1000"] == "85.00 % (1/3 diverged)"
    assert positions.loc[0.001, "batch size 1"] == "not in the sweep"


def test_sweep_run_is_the_latest_run_that_computed_the_whole_sweep(tmp_path):
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
    assert sweep_run(tmp_path, cells=16) is None
    runs = [
        {"ok": 16, "skipped": 0, "wall_seconds": 300.0},
        {"ok": 16, "skipped": 0, "wall_seconds": 310.0},
        {"ok": 0, "skipped": 16, "wall_seconds": 1.0},
        {"tasks": "grid,stability", "ok": 16, "skipped": 0, "wall_seconds": 5.0},
        {"cells": 4, "ok": 4, "skipped": 0, "wall_seconds": 7.0},
    ]
    for day, change in enumerate(runs, start=2):
        append_run_log(tmp_path, entry | {"finished": f"2026-01-0{day}T00:00:00+00:00"} | change)
    run = sweep_run(tmp_path, cells=16)
    assert run["wall_seconds"] == 310.0 and run["jobs"] == 2
    assert sweep_run(tmp_path, cells=4)["wall_seconds"] == 7.0
    with pytest.raises(ValueError, match="cells must be an integer >= 1, got 0"):
        sweep_run(tmp_path, cells=0)


def test_the_discussion_quotes_the_bounds_the_boundary_and_the_study_lrs():
    """Every number of the text comes from the bounds and the sweep: each boundary interval,
    the bounds it contains, a stable lr whose runs end above the loss of W = 0, and the
    study's learning rates as multiples of the bounds with their outcomes."""
    table = accuracy_table(seeds_frame())
    text = discussion(table, BOUNDS, iterations=1000)
    assert "= 0.0500" in text and "= 40.00" in text and "mean 100.0" in text
    assert "maximum 400.0" in text and "= 0.0050" in text and "= 0.0200" in text
    assert "Observed within 1000 iterations" in text
    assert (
        "- batch size 1: stable up to lr = 0.01; 1/3 seeds diverge at lr = 0.0316 (from "
        "iteration 41). The boundary lies in (0.01, 0.0316], which contains "
        "$2/\\mathrm{mean} \\lVert x \\rVert^2$ = 0.0200; it is 2.0-6.3 × " in text
    )
    assert "(0.0316, 0.1], which contains $2/\\lambda_{\\max}$ = 0.0500" not in text
    assert "- batch size 10: no run diverged, up to lr = 0.1 (2.00 × " in text
    assert "- batch size 100: 3/3 seeds diverge already at the sweep's smallest lr, 0.001." in text
    assert "(0.001, 0.01], which contains $2/\\max \\lVert x \\rVert^2$ = 0.0050" in text
    assert "lr = 0.1 is 2.00 × $2/\\lambda_{\\max}$ and 5.00 × " in text
    assert "batch size 10: 84.67 %" in text
    lossy = seeds_frame({(1, 0.001): [0.2, 0.3], (1, 0.002): [None, None]})
    lossy.loc[lossy["lr"] == 0.001, "final_train_loss"] = [2.0, 3.0]
    text = discussion(accuracy_table(lossy), BOUNDS, iterations=500)
    assert "(0.001, 0.002], which contains none of the three" in text
    assert "At lr = 0.001 the runs do not blow up but end at a training loss of 2.50" in text
    assert "lr = 0.01 is 0.20 × $2/\\lambda_{\\max}$" in text  # not in this sweep
    assert "batch size 1: not in the sweep" in text


def vertical_lines(ax) -> set[float]:
    """x positions of the vertical lines (axvline) of ``ax``."""
    return {
        line.get_xdata()[0]
        for line in ax.get_lines()
        if len(line.get_xdata()) == 2 and len(set(line.get_xdata())) == 1
    }


def test_the_map_draws_each_batch_size_the_bounds_and_the_study_lrs():
    """Two panels on a log lr axis: a line per batch size over its stable cells, the three
    bounds as vertical lines in both panels, a triangle per study lr."""
    table = accuracy_table(seeds_frame())
    fig = stability_map(table, BOUNDS)
    assert isinstance(fig, Figure)
    top, bottom = fig.axes
    assert bottom.get_xscale() == "log"
    labels = [line.get_label() for line in top.get_lines()]
    for batch_size in (1, 10, 1000):
        assert f"batch size {batch_size}" in labels
    assert "batch size 100" in labels  # every seed diverged: an empty line, still labelled
    one = next(line for line in top.get_lines() if line.get_label() == "batch size 1")
    assert list(one.get_xdata()) == [0.001, 0.01, 0.0316]
    for ax in (top, bottom):
        assert vertical_lines(ax) == {0.05, 0.02, 0.005}
    triangles = [line for line in top.get_lines() if line.get_marker() == "v"]
    assert sorted(t.get_xdata()[0] for t in triangles if len(t.get_xdata())) == sorted(STUDY_LRS)
    assert bottom.get_yticklabels()[0].get_text() == "B = 1"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: accuracy_table(pd.DataFrame({"lr": [0.1]})), r"seeds lacks the columns"),
        (lambda: accuracy_table(seeds_frame().iloc[:0]), "seeds holds no cell of the sweep"),
        (lambda: divergence_boundary(pd.DataFrame({"lr": [0.1]})), r"table lacks the columns"),
        (lambda: stability_map([1, 2], BOUNDS), "table must be a pandas DataFrame, got list"),
    ],
)
def test_wrong_inputs_are_refused_by_name(call, message):
    """A frame without the needed columns, an empty sweep or a non-frame is refused."""
    with pytest.raises(ValueError, match=message):
        call()


def test_display_tables_say_what_diverged():
    """The accuracy pivot shows mean ± sd in % and the diverged seeds; the boundary table
    shows the first diverging lr as multiples of the two bounds, dashes where undefined."""
    table = accuracy_table(seeds_frame(failed=[(10, 0.1)]))
    shown = format_accuracy(table)
    assert list(shown.columns) == [f"batch size {b}" for b in (1, 10, 100, 1000)]
    assert shown.loc[0.001, "batch size 10"] == "82.33 ± 0.58"
    assert shown.loc[0.0316, "batch size 1"] == "63.00 ± 4.24 (1/3 diverged)"
    assert shown.loc[0.1, "batch size 1"] == "diverged (3/3)"
    assert shown.loc[0.1, "batch size 10"] == "failed"
    boundary = format_boundary(divergence_boundary(table), BOUNDS)
    assert boundary.loc[1].to_dict() == {
        "largest stable lr": "0.01",
        "first diverging lr": "0.0316",
        "seeds diverged there": "1/3",
        "first divergence at iteration": 41,
        "every seed diverges from lr": "0.1",
        "first diverging / (2/lambda_max)": "0.63",
        "first diverging / (2/max||x||^2)": "6.3",
    }
    assert boundary.loc[10, "first diverging lr"] == "–"
    assert boundary.loc[10, "seeds diverged there"] == "–"


def test_cost_text_quotes_the_logged_run():
    """The measured wall time, executor and jobs come from the run's log line."""
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
    text = cost_text(run, cells=84, runs=252)
    assert text.startswith("The sweep's 84 cells (252 training runs) took 10.2 minutes")
    assert "(612 s) with the local executor, 2 job(s) of 1 BLAS thread(s)" in text
    assert "2 cores available (run finished 2026-01-02 03:04 UTC)" in text
    assert "No single logged run computed all 84 cells" in cost_text(None, cells=84, runs=252)
