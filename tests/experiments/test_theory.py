"""The predictions as products: one per task, made from the data alone, read back."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linmnist.engine.analysis import least_squares
from linmnist.engine.noise_floor import floor_model, largest_stable_lr
from linmnist.engine.sgd import draw_subset
from linmnist.engine.spectrum import spectrum
from linmnist.experiments import cells, theory
from linmnist.experiments.grids import Cell
from linmnist.experiments.jobs import make_product
from linmnist.report.pipeline import pipeline


def test_the_pipeline_holds_one_prediction_per_task_before_the_notebooks():
    products = pipeline("mnist", "small")
    names = [p.name for p in products]
    assert [n for n in names if n.startswith("theory/")] == [
        "theory/grid",
        "theory/stability",
        "theory/subset",
    ]
    stability = products[names.index("theory/stability")]
    assert stability.outputs == ("stability.curves.csv", "edges.csv")
    subset = products[names.index("theory/subset")]
    assert subset.outputs == ("subset.curves.csv", "optimum.csv")
    summary = products[names.index("notebooks/00_summary")]
    assert {"theory/grid", "theory/stability"} <= set(summary.upstream)
    assert theory.theory_products(Path("unused"), "mnist", {}) == []


@pytest.mark.slow
def test_the_products_predict_every_iteration_of_every_cell(tmp_path, synthetic):
    (X, Y), (Xt, Yt) = synthetic(600, 200, d=40, seed=3)
    grids = {
        "grid": [Cell("grid", f"lr{lr:g}_bs{b}", {"lr": lr, "batch_size": b, "iterations": 30})
                 for lr in (0.01, 0.05) for b in (1, 10)],
        "stability": [Cell("stability", f"lr{lr:g}_bs{b}",
                           {"lr": lr, "batch_size": b, "iterations": 20})
                      for lr in (0.01, 100.0) for b in (1, 100)],
        "subset": [Cell("subset", "n50", {"lr": 0.01, "batch_size": 5, "iterations": 10,
                                          "n_prime": 50, "seeds": [0, 1]})],
    }  # fmt: skip
    dataset = "synthetic-theory"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(theory, "prepared", lambda name: (X, Y, Xt, Yt))
        patch.setattr(cells, "prepared", lambda name: (X, Y, Xt, Yt))
        cells.moments.cache_clear()
        try:
            for product in theory.theory_products(tmp_path, dataset, grids):
                outcome = make_product(product, {})
                assert outcome.status == "ok", outcome.error
        finally:
            cells.moments.cache_clear()
    result = theory.load_theory(tmp_path, theory.TASKS)
    assert result.error is None
    sizes = result.curves.groupby("cell").size()
    assert sizes["lr0.01_bs10"] == 30 and sizes["lr100_bs100"] == 20 and sizes["n50"] == 10
    assert np.isinf(result.curves.loc[result.curves["cell"] == "lr100_bs100", "train_loss"]).any()
    finite = result.curves[result.curves["cell"] == "lr0.01_bs1"]
    assert finite["train_loss"].iloc[-1] < finite["train_loss"].iloc[0] < 0.5
    assert finite["test_loss"].notna().all()
    model = floor_model(spectrum(X, Y), X, Y)
    # Every batch size of the grid (1, 10) and of the sweep (1, 100).
    expected = pd.Series({b: largest_stable_lr(model, batch_size=b) for b in (1, 10, 100)})
    edges = result.edges.set_index("batch_size")["lr_edge"]
    np.testing.assert_allclose(edges.sort_index(), expected.sort_index(), rtol=1e-5)
    # The least-squares fit of each seed's subset S', as least_squares computes it.
    optimum = result.optimum.set_index("seed")
    assert optimum.index.tolist() == [0, 1] and (optimum["n_prime"] == 50).all()
    for seed in (0, 1):
        subset = draw_subset(X.shape[1], 50, seed=seed)
        fit = least_squares(X[:, subset], Y[:, subset], Xt, Yt)
        got = optimum.loc[seed, ["train_loss", "train_acc", "test_acc"]].tolist()
        np.testing.assert_allclose(got, [fit.loss, fit.train_acc, fit.test_acc], rtol=1e-6)
