"""A scaling experiment made end to end on small synthetic data, for the experiment and report
tests: its products made by the runner's ``make_product`` in a temporary build."""

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linmnist.engine.sgd import train
from linmnist.engine.spectrum import spectrum
from linmnist.experiments import cells as cells_module
from linmnist.experiments import scaling
from linmnist.experiments.cells import final_excesses
from linmnist.experiments.grids import Cell
from linmnist.experiments.jobs import make_product
from linmnist.experiments.paths import results_dir

CONFIG = """
[grid]
lr = [0.01]
batch_size = [1]
iterations = 10
seeds = [0]
fidelity_seeds = []
eval_every = 10

[scaling]
batch_size = [1, 4, 16, 64]
targets = [0.2, 0.1]
seeds = [0, 1]
lr_top = 0.99
lr_per_octave = 2
lr_octaves = 5
max_steps = 3000
trajectory_points = 6
"""
# The configurations of the noise-floor table, trained below for their measured excess.
FLOOR_CELLS = [("grid", lr, b) for lr, b in itertools.product((0.002, 0.02), (1, 10))]
ITERATIONS = 200
SEEDS = (0, 1, 2)
_counter = itertools.count()


def scaling_build(tmp: Path, synthetic):
    """(Scaling read back, the floor configurations' per-seed rows, X) of a build in ``tmp``."""
    (X, Y), _ = synthetic(1500, d=100, seed=2)
    dataset = f"synthetic-{next(_counter)}"  # scaling caches one spectrum per dataset name
    config = tmp / "grids.toml"
    config.write_text(CONFIG)
    cells = [
        Cell(task, f"lr{lr:g}_bs{b}", {"lr": lr, "batch_size": b, "iterations": ITERATIONS})
        for task, lr, b in FLOOR_CELLS
    ]
    products = scaling.scaling_products(tmp, dataset, config=config, grids={"grid": cells})
    with pytest.MonkeyPatch.context() as patch:
        for module in (scaling, cells_module):
            patch.setattr(module, "prepared", lambda name: (X, Y, None, None))
        for product in products:
            outcome = make_product(product, {})
            assert outcome.status == "ok", outcome.error
    rows, spec = [], spectrum(X, Y)
    for cell in cells:
        for seed in SEEDS:
            run = train(X, Y, **cell.params, seed=seed, eval_every=ITERATIONS)
            rows.append(
                {
                    "task": cell.task,
                    "cell": cell.name,
                    "status": "ok",
                    "final_train_loss": float(run.history["train_loss"].iloc[-1]),
                    "final_excess": final_excesses(spec, [run])[0],
                    "diverged_at": pd.NA if run.diverged_at is None else run.diverged_at,
                }
            )
    seeds = pd.DataFrame(rows).astype({"diverged_at": "Int64"})
    directory = results_dir(tmp) / scaling.GROUP
    return scaling.load_scaling(directory, [1, 4, 16, 64]), seeds, np.asarray(X)
