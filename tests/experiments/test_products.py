"""Which cell's runs include another's (``source_cell``), and the products that read them."""

from pathlib import Path

from linmnist.experiments.grids import Cell
from linmnist.experiments.products import (
    CELL_JOB,
    LOCKSTEP_JOB,
    SOURCED_JOB,
    experiment_products,
    source_cell,
)

GRID = {
    "lr": 0.01, "batch_size": 100, "iterations": 1000, "seeds": list(range(20)),
    "fidelity_seeds": [0], "eval_every": 50,
}  # fmt: skip
SWEEP = {**GRID, "seeds": [0, 1, 2, 3, 4, 5], "fidelity_seeds": [], "eval_every": 100}


def test_a_sweep_cell_reads_the_grid_cell_that_ran_its_seeds():
    """Same lr, batch size and iterations, its seeds among the source's, evaluated there at
    a divisor of its own period (a fidelity seed's period 1 divides every period)."""
    grid = Cell("grid", "lr0.01_bs100", GRID)
    assert source_cell(Cell("stability", "lr0.01_bs100", SWEEP), [grid]) == grid


def test_no_source_when_a_run_or_an_evaluation_is_missing_from_it():
    """Another lr, batch size or length, a seed it lacks, a period it does not divide,
    accuracies it lacks, a subset task, the cell's own task: no source."""
    grid = Cell("grid", "lr0.01_bs100", GRID)
    for change in (
        {"lr": 0.02}, {"batch_size": 10}, {"iterations": 500}, {"seeds": [0, 20]},
        {"eval_every": 75}, {"fidelity_seeds": [1], "eval_every": 100, "seeds": [1]},
    ):  # fmt: skip
        assert source_cell(Cell("stability", "x", {**SWEEP, **change}), [grid]) is None, change
    # A task scoring accuracies at every evaluation cannot read one scoring them at the end.
    sweep = Cell("stability", "lr0.01_bs100", SWEEP)
    assert source_cell(Cell("grid", "lr0.01_bs100", {**GRID, "seeds": [1]}), [sweep]) is None
    assert source_cell(Cell("grid", "y", {**GRID, "seeds": [1]}), [grid]) is None
    subset = Cell("subset", "n100", {**GRID, "n_prime": 100})
    assert source_cell(Cell("stability", "x", SWEEP), [subset]) is None


def test_the_products_of_sourced_cells_name_their_source_upstream(tmp_path: Path):
    """The sweep's cell at the grid's rate is made by the sourced job, after the grid cell."""
    grids = {
        "grid": [Cell("grid", "lr0.01_bs100", GRID)],
        "stability": [
            Cell("stability", "lr0.01_bs100", SWEEP),
            Cell("stability", "lr0.02_bs100", {**SWEEP, "lr": 0.02}),
        ],
    }
    products = {p.name: p for p in experiment_products(grids, tmp_path, "mnist")}
    sourced = products["stability/lr0.01_bs100"]
    assert sourced.job == SOURCED_JOB and sourced.upstream == ("grid/lr0.01_bs100",)
    assert sourced.params["source"] == {"task": "grid", "cell": "lr0.01_bs100"}
    trained = products["stability/lr0.02_bs100"]
    assert trained.job == CELL_JOB and trained.upstream == () and "source" not in trained.params


def test_a_lockstep_task_trains_its_rates_side_by_side_per_batch_size(tmp_path: Path):
    """The sweep's cells without a source, two or more at one batch size, are read from one
    lockstep product per batch size, listed before them; a lone rate trains on its own."""
    sweep = [Cell("stability", f"lr{lr:g}_bs{b}", {**SWEEP, "lr": lr, "batch_size": b})
             for b in (100, 1000) for lr in (0.01, 0.02, 0.03)]  # fmt: skip
    sweep.append(Cell("stability", "lr0.01_bs10", {**SWEEP, "batch_size": 10}))
    grids = {"grid": [Cell("grid", "lr0.01_bs100", GRID)], "stability": sweep}
    products = experiment_products(grids, tmp_path, "mnist")
    names = [p.name for p in products]
    by_name = dict(zip(names, products, strict=True))
    steps = by_name["lockstep/stability_bs100"]
    assert steps.job == LOCKSTEP_JOB and steps.params["lrs"] == [0.02, 0.03]
    assert steps.params["cells"] == ["lr0.02_bs100", "lr0.03_bs100"]
    assert by_name["lockstep/stability_bs1000"].params["lrs"] == [0.01, 0.02, 0.03]
    assert by_name["stability/lr0.01_bs100"].upstream == ("grid/lr0.01_bs100",)
    assert by_name["stability/lr0.03_bs1000"].upstream == ("lockstep/stability_bs1000",)
    assert by_name["stability/lr0.01_bs10"].job == CELL_JOB
    assert "lockstep/stability_bs10" not in by_name
    assert names.index("lockstep/stability_bs100") < names.index("stability/lr0.02_bs100")
    assert steps.directory == tmp_path / "results" / "lockstep"
