"""Task 5 over a fine grid of sizes: one product per N', least squares, SGD and prediction."""

import numpy as np
import pytest

from linmnist.engine.analysis import least_squares
from linmnist.engine.sgd import train
from linmnist.engine.validation import UsageError
from linmnist.experiments import cells, sizes
from linmnist.experiments.grids import load_grids
from linmnist.experiments.jobs import make_product
from linmnist.report.pipeline import pipeline


def test_the_pipeline_holds_one_product_per_size_at_task_5s_budget():
    products = [p for p in pipeline("mnist", "small") if p.group == "sizes"]
    # The largest first: the longest job.
    assert [p.name for p in products] == ["sizes/n3000", "sizes/n784", "sizes/n100"]
    subset = load_grids(profile="small")["subset"][0].params
    assert all(p.params["lr"] == subset["lr"] for p in products)
    assert products[0].params["iterations"] == subset["iterations"]


def test_a_wrong_section_is_refused(tmp_path):
    config = tmp_path / "grids.toml"
    config.write_text(
        "[subset]\nn_prime = [10]\nlr = 0.01\nbatch_size = 5\niterations = 5\nseeds = [0]\n"
        "fidelity_seeds = []\neval_every = 5\n\n[sizes]\nn_prime = [10, 10]\nseeds = [0]\n"
    )
    grids = load_grids(config)
    with pytest.raises(UsageError, match="sizes.n_prime must be a non-empty list of distinct"):
        sizes.sizes_products(tmp_path, "mnist", grids, config=config)


@pytest.mark.slow
def test_a_size_product_fits_trains_and_predicts_each_subset(tmp_path, synthetic, monkeypatch):
    (X, Y), (Xt, Yt) = synthetic(400, 200, d=30, seed=4)
    monkeypatch.setattr(cells, "prepared", lambda name: (X, Y, Xt, Yt))
    monkeypatch.setattr(sizes, "prepared", lambda name: (X, Y, Xt, Yt))
    for cached in (cells.moments, cells.shared_evaluator, sizes._held_out):
        cached.cache_clear()
    params = {"dataset": "toy-sizes", "seeds": [0, 1], "lr": 0.05, "batch_size": 10,
              "iterations": 200}  # fmt: skip
    try:
        for n in (20, 400):  # below the 30 inputs, and the whole set
            product = sizes.Product(
                name=f"sizes/n{n}", directory=tmp_path / "results" / "sizes", stem=f"n{n}",
                job="linmnist.experiments.sizes:size_job", params={**params, "n_prime": n},
                outputs=(f"n{n}{sizes.SUFFIX}",),
            )  # fmt: skip
            assert make_product(product, {}).status == "ok"
    finally:
        for cached in (cells.moments, cells.shared_evaluator, sizes._held_out):
            cached.cache_clear()
    frame = sizes.load_sizes(tmp_path, [20, 400])
    assert list(frame.columns) == sizes.SIZE_COLUMNS and len(frame) == 4
    small = frame[frame["n_prime"] == 20]
    assert (small["ls_train_loss"] < 1e-9).all(), "20 images of 30 inputs are interpolated"
    assert (small["sgd_train_loss"] > small["ls_train_loss"]).all()
    whole = frame[frame["n_prime"] == 400]
    assert whole["ls_test_loss"].nunique() == 1, "the whole set's fit does not depend on the seed"
    assert whole["ls_test_loss"].iloc[0] == pytest.approx(least_squares(X, Y, Xt, Yt).test_loss)
    W = train(X, Y, lr=0.05, batch_size=10, iterations=200, seed=1).W.astype(np.float64)
    sgd_test_loss = 0.5 * np.mean(np.sum((W @ Xt - Yt) ** 2, axis=0))
    assert whole["sgd_test_loss"].iloc[1] == pytest.approx(sgd_test_loss, rel=1e-12)
    np.testing.assert_allclose(frame["predicted_train_loss"], frame["sgd_train_loss"], rtol=0.15)
    np.testing.assert_allclose(frame["predicted_test_loss"], frame["sgd_test_loss"], rtol=0.15)
