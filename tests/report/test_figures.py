"""Figures: the expected axes, lines, labels and titles, on synthetic histories."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from linmnist.report import figures
from linmnist.report.study import STUDY_LRS
from linmnist.report.tables import accuracy_table

from .test_tables import BOUNDS, seeds_frame

matplotlib.use("Agg")

LRS = (0.1, 0.01, 0.001)
BATCH_SIZES = (1, 10, 100, 1000)


def fake_history(*, seed, iterations=100, eval_every=1, rate=0.02, diverged_at=None):
    """A loss decaying from 0.5 and accuracies rising, recorded every ``eval_every``."""
    its = np.arange(eval_every - 1, iterations, eval_every)
    if eval_every > 1:
        its = np.unique(np.r_[0, its])
    rng = np.random.default_rng(seed)
    loss = 0.2 + 0.3 * np.exp(-rate * its) + 0.005 * rng.standard_normal(its.size)
    acc = 0.85 - 0.5 * np.exp(-rate * its) + 0.002 * rng.standard_normal(its.size)
    frame = pd.DataFrame(
        {
            "iteration": its,
            "train_loss": loss,
            "train_acc": acc,
            "test_acc": acc + 0.005,
            "seed": seed,
        }
    )
    if diverged_at is not None:
        frame = frame[frame["iteration"] <= diverged_at].copy()
        frame.loc[frame.index[-1], "train_loss"] = np.inf
    return frame


def fake_grid(n_seeds=3):
    histories, seeds = [], []
    for lr in LRS:
        for batch_size in BATCH_SIZES:
            for seed in range(n_seeds):
                diverged = 5 + seed if lr == 0.1 else None
                h = fake_history(seed=seed, eval_every=1 if seed == 0 else 10, diverged_at=diverged)
                h["lr"], h["batch_size"] = lr, batch_size
                histories.append(h)
                seeds.append(
                    {"lr": lr, "batch_size": batch_size, "seed": seed, "diverged_at": diverged}
                )
    return pd.concat(histories, ignore_index=True), pd.DataFrame(seeds)


def fake_table():
    rows = []
    for lr in LRS:
        for batch_size in BATCH_SIZES:
            diverged = 3 if lr == 0.1 else 0
            rows.append(
                {
                    "lr": lr,
                    "batch_size": batch_size,
                    "n_seeds": 3,
                    "n_diverged": diverged,
                    "final_train_loss_mean": np.nan if diverged else 0.2 + lr,
                    "final_test_acc_mean": np.nan if diverged else 0.85 - lr,
                }
            )
    return pd.DataFrame(rows)


def line_labels(ax):
    return [line.get_label() for line in ax.get_lines()]


def all_text(fig):
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    return texts + [fig._suptitle.get_text() if fig._suptitle else ""]


def test_seed_band_uses_iterations_most_seeds_recorded():
    history = pd.concat(
        [
            fake_history(seed=0),
            fake_history(seed=1, eval_every=10),
            fake_history(seed=2, eval_every=10),
        ]
    )
    band = figures.seed_band(history, "train_acc")
    assert band["iteration"].tolist() == [0, *range(9, 100, 10)]
    assert (band["n"] == 3).all()
    assert (band["low"] <= band["mean"]).all() and (band["mean"] <= band["high"]).all()


def test_seed_band_drops_non_finite_values_of_diverged_seeds():
    history = pd.concat([fake_history(seed=0, diverged_at=20), fake_history(seed=1)])
    band = figures.seed_band(history, "train_loss")
    assert np.isfinite(band["mean"]).all()
    assert band.set_index("iteration").loc[20, "n"] == 1


def test_seed_band_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric must be one of"):
        figures.seed_band(fake_history(seed=0), "loss")


def test_digit_image_title_and_shape():
    fig = figures.digit_image(np.arange(784) % 256, title="Training sample 696 (label 2)")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_title() == "Training sample 696 (label 2)"
    assert ax.images[0].get_array().shape == (28, 28)


def test_digit_image_rejects_non_square():
    with pytest.raises(ValueError, match="not square"):
        figures.digit_image(np.zeros(783), title="x")


def test_training_curves_has_loss_and_accuracy_panels_with_references():
    history = pd.concat([fake_history(seed=0), fake_history(seed=1, eval_every=10)])
    reference = SimpleNamespace(loss=0.1955, train_acc=0.8519, test_acc=0.8534)
    study = pd.DataFrame(
        {
            "iteration": [0, 999],
            "train_loss": [0.4953, 0.2462],
            "train_acc": [0.365, 0.8129],
            "test_acc": [0.369, 0.8214],
        }
    )
    fig = figures.training_curves(
        history, title="Task 2: lr 0.001, batch size 100", reference=reference, study=study
    )
    ax_loss, ax_acc = fig.axes
    assert fig._suptitle.get_text() == "Task 2: lr 0.001, batch size 100"
    assert ax_loss.get_ylabel() == "training loss" and ax_acc.get_ylabel() == "accuracy (%)"
    assert ax_loss.get_xlabel() == ax_acc.get_xlabel() == "iteration"
    assert "closed-form optimum (0.1955)" in line_labels(ax_loss)
    assert "closed-form optimum, test (85.34 %)" in line_labels(ax_acc)
    assert "train, mean of 2 seeds" in line_labels(ax_acc)
    assert "test, seed 0 (every iteration)" in line_labels(ax_acc)
    assert "study (one unseeded run)" in line_labels(ax_loss)
    train_line = ax_acc.get_lines()[line_labels(ax_acc).index("train, mean of 2 seeds")]
    assert train_line.get_ydata().max() > 1, "accuracies are drawn in percent"


def test_training_curves_marks_divergence():
    fig = figures.training_curves(
        fake_history(seed=0, diverged_at=7), title="lr 0.1", diverged_at=[7]
    )
    assert any("diverged at iteration 7" in t for t in all_text(fig))


def test_grid_curves_small_multiples_titles_and_divergence():
    histories, seeds = fake_grid()
    fig = figures.grid_curves(histories, seeds, metric="train_loss")
    assert len(fig.axes) == len(LRS) * len(BATCH_SIZES)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "lr = 0.1, B = 1"
    assert titles[-1] == "lr = 0.001, B = 1000"
    assert "B: batch size" in fig._suptitle.get_text()
    assert not any("N'" in t for t in titles), "grid panels are not subset runs"
    diverged = [t for t in all_text(fig) if "diverged" in t]
    assert len(diverged) == len(BATCH_SIZES)
    assert "diverged at iteration 5-7\n(3 of 3 seeds)" in diverged
    low, high = fig.axes[-1].get_ylim()
    assert high < 1, "the loss axis is not stretched by diverging runs"


def test_grid_curves_limits_hold_every_converged_curve():
    """Each panel's limits come from its own data: a noisy curve is not clipped."""
    histories, seeds = fake_grid(n_seeds=2)
    noisy = (histories["lr"] == 0.01) & (histories["batch_size"] == 1)
    histories.loc[noisy & (histories["iteration"] == 3), "train_loss"] = 0.9
    fig = figures.grid_curves(histories, seeds, metric="train_loss")
    for ax in fig.axes:
        low, high = ax.get_ylim()
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), dtype=float)
            if y.size > 1:
                assert (
                    low <= np.nanmin(y)
                    and np.nanmax(y) <= high
                    or "diverged" in str([t.get_text() for t in ax.texts])
                )
    noisy_ax = fig.axes[[ax.get_title() for ax in fig.axes].index("lr = 0.01, B = 1")]
    assert noisy_ax.get_ylim()[1] > 0.9


def test_grid_curves_accuracy_in_percent():
    histories, seeds = fake_grid(n_seeds=2)
    fig = figures.grid_curves(histories, seeds, metric="test_acc")
    low, high = fig.axes[-1].get_ylim()
    assert 1 < low < high <= 100.0
    assert "Test accuracy" in fig._suptitle.get_text()


def test_grid_curves_of_a_grid_whose_cells_all_failed():
    """No history at all: every panel says the configuration failed."""
    _, seeds = fake_grid(n_seeds=1)
    failed = seeds.assign(status="failed", seed=np.nan, diverged_at=np.nan)
    fig = figures.grid_curves(pd.DataFrame(), failed, metric="train_loss")
    assert all_text(fig).count("failed") == len(LRS) * len(BATCH_SIZES)


def test_every_figure_fits_the_page_with_readable_text():
    """At most PRINT_WIDTH inches wide, text of at least 8 pt (the printed size)."""
    histories, seeds = fake_grid(n_seeds=2)
    made = [
        figures.grid_curves(histories, seeds, metric="train_loss"),
        figures.accuracy_heatmap(fake_table()),
        figures.stability_plot(fake_table(), lr_max=0.0525),
        figures.training_curves(fake_history(seed=0), title="t"),
    ]
    for fig in made:
        assert fig.get_size_inches()[0] <= figures.PRINT_WIDTH
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text()]
        assert min(sizes) >= 8, sizes


def test_one_colour_per_batch_size_in_every_figure():
    assert len(set(figures.BATCH_COLORS.values())) == len(figures.BATCH_COLORS)
    fig = figures.stability_plot(fake_table(), lr_max=0.0525)
    drawn = {
        line.get_label(): line.get_color()
        for line in fig.axes[0].get_lines()
        if line.get_label().startswith("batch size")
    }
    assert drawn == {f"batch size {b}": figures.batch_color(b) for b in BATCH_SIZES}
    assert figures.batch_color(37) == figures.batch_color(37) != figures.batch_color(1)
    assert figures.batch_style(10)["marker"] != figures.batch_style(100)["marker"]


def test_grid_curves_rejects_missing_columns():
    histories, seeds = fake_grid(n_seeds=1)
    with pytest.raises(ValueError, match="diverged_at"):
        figures.grid_curves(histories, seeds.drop(columns="diverged_at"), metric="train_loss")


def test_accuracy_heatmap_labels_cells_and_diverged():
    fig = figures.accuracy_heatmap(fake_table())
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("diverged") == len(BATCH_SIZES)
    assert "84.00 %" in texts
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.1", "0.01", "0.001"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "100", "1000"]
    assert ax.get_xlabel() == "batch size" and ax.get_ylabel() == "learning rate"
    assert ax.get_title() == "Final test accuracy, mean over seeds"


def test_stability_plot_marks_threshold_and_diverged_lrs():
    fig = figures.stability_plot(fake_table(), lr_max=0.0525)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert any(np.allclose(line.get_xdata(), 0.0525) for line in ax.get_lines())
    assert any("2/\\lambda_{\\max}$ = 0.0525" in t.get_text() for t in ax.texts)
    crosses = [
        line for line in ax.get_lines() if line.get_marker() == "x" and len(line.get_xdata())
    ]
    assert sum(len(line.get_xdata()) for line in crosses) == len(BATCH_SIZES)
    assert "diverged (every seed)" in line_labels(ax)


def test_stability_plot_rejects_bad_threshold():
    with pytest.raises(ValueError, match="lr_max"):
        figures.stability_plot(fake_table(), lr_max=float("nan"))


def test_subset_curves_name_n_prime_and_show_gap():
    parts = []
    for n_prime in (100, 1000):
        h = pd.concat([fake_history(seed=s, eval_every=5) for s in range(2)])
        h["n_prime"] = n_prime
        parts.append(h)
    fig = figures.subset_curves(
        pd.concat(parts), title="Training-set size N' (batch size 100, lr 0.001)"
    )
    ax_loss, ax_acc, ax_gap, _ = fig.axes
    assert ax_gap.get_title() == "Train - test accuracy gap"
    assert line_labels(ax_loss) == ["N' = 100", "N' = 1000"]
    assert [line.get_color() for line in ax_loss.get_lines()] == [
        figures.size_color(100),
        figures.size_color(1000),
    ]
    assert "batch size 100" in fig._suptitle.get_text()
    gap = ax_gap.get_lines()[0].get_ydata()
    assert np.allclose(gap, -0.5), "gap is train minus test in percentage points"


def vertical_lines(ax) -> set[float]:
    """x positions of the vertical lines (axvline) of ``ax``."""
    return {
        line.get_xdata()[0]
        for line in ax.get_lines()
        if len(line.get_xdata()) == 2 and len(set(line.get_xdata())) == 1
    }


def test_the_stability_map_draws_each_batch_size_the_bounds_and_the_study_lrs():
    """Two panels on a log lr axis: a line per batch size over its stable cells, the three
    bounds as vertical lines in both panels, a triangle per study lr."""
    table = accuracy_table(seeds_frame())
    fig = figures.stability_map(table, BOUNDS, study_lrs=STUDY_LRS)
    assert isinstance(fig, Figure)
    top, bottom = fig.axes
    assert bottom.get_xscale() == "log"
    labels = line_labels(top)
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


def test_the_stability_map_refuses_a_non_frame():
    """A table that is not a DataFrame is refused by name."""
    with pytest.raises(ValueError, match="table must be a pandas DataFrame, got list"):
        figures.stability_map([1, 2], BOUNDS, study_lrs=STUDY_LRS)
