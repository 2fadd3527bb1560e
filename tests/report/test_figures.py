"""Figures: the expected axes, lines, labels and titles, on synthetic histories."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from linmnist.experiments.sizes import SIZE_COLUMNS
from linmnist.report import figures
from linmnist.report.study import STUDY_LRS
from linmnist.report.tables import accuracy_table

from .test_tables import BOUNDS, seeds_frame

matplotlib.use("Agg")

LRS = (0.1, 0.01, 0.001)
BATCH_SIZES = (1, 10, 100, 1000)
# 2 x 2 panels, a diverging lr among them: enough for the tests of one behaviour of
# grid_curves (its layout over 12 panels takes most of a second each time)
FEW = {"lrs": (0.1, 0.01), "batch_sizes": (1, 10)}


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


def fake_grid(n_seeds=3, lrs=LRS, batch_sizes=BATCH_SIZES):
    histories, seeds = [], []
    for lr in lrs:
        for batch_size in batch_sizes:
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


@pytest.fixture(scope="module")
def task2_curves():
    """The training curves of two seeds with the closed-form optimum and the study's run,
    drawn once for the tests that only read them."""
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
    return figures.training_curves(
        history, title="Task 2: lr 0.001, batch size 100", reference=reference, study=study
    )


def test_training_curves_has_loss_and_accuracy_panels_with_references(task2_curves):
    fig = task2_curves
    ax_loss, ax_acc = fig.axes
    assert fig._suptitle.get_text() == "Task 2: lr 0.001, batch size 100"
    assert ax_loss.get_ylabel() == "training loss" and ax_acc.get_ylabel() == "accuracy (%)"
    assert ax_loss.get_xlabel() == ax_acc.get_xlabel() == "iteration (0: after the first update)"
    assert "closed-form optimum (0.1955)" in line_labels(ax_loss)
    assert "closed-form optimum, test (85.34 %)" in line_labels(ax_acc)
    assert "train, mean of 2 seeds" in line_labels(ax_acc)
    assert "test, seed 0 (every iteration)" in line_labels(ax_acc)
    assert "study (one unseeded run)" in line_labels(ax_loss)
    train_line = ax_acc.get_lines()[line_labels(ax_acc).index("train, mean of 2 seeds")]
    assert train_line.get_ydata().max() > 1, "accuracies are drawn in percent"


def test_training_curves_key_is_below_the_panels(task2_curves):
    """One key for both panels, in the figure below the axes: no legend inside a panel."""
    fig = task2_curves
    fig.canvas.draw()
    assert all(ax.get_legend() is None for ax in fig.axes)
    (key,) = fig.legends
    key_box = key.get_window_extent()
    for ax in fig.axes:
        assert key_box.y1 <= ax.get_tightbbox().y0 + 1, "the key overlaps a panel"
    low, high = fig.axes[1].get_ylim()
    assert 0 <= low and high <= 100, "accuracy axis within 0-100 %"


def test_training_curves_marks_divergence():
    fig = figures.training_curves(
        fake_history(seed=0, diverged_at=7), title="lr 0.1", diverged_at=[7]
    )
    assert any("diverged at" in t and "iteration 7" in t for t in all_text(fig))


@pytest.fixture(scope="module")
def loss_grid():
    """(histories, figure): the loss figure of ``fake_grid()``, drawn once for the tests that
    only read it."""
    histories, seeds = fake_grid()
    return histories, figures.grid_curves(histories, seeds, metric="train_loss")


@pytest.fixture(scope="module")
def accuracy_grid():
    """The test-accuracy figure of ``fake_grid()``, drawn once for the tests that only read it."""
    histories, seeds = fake_grid()
    return figures.grid_curves(histories, seeds, metric="test_acc")


def test_grid_curves_small_multiples_titles_and_divergence(loss_grid):
    _, fig = loss_grid
    assert len(fig.axes) == len(LRS) * len(BATCH_SIZES)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "lr = 0.1, B = 1"
    assert titles[-1] == "lr = 0.001, B = 1000"
    assert "batch size (B)" in fig._suptitle.get_text()
    assert "95 % CI" in fig._suptitle.get_text()
    assert not any("N'" in t for t in titles), "grid panels are not subset runs"
    diverged = [t for t in all_text(fig) if "diverged" in t]
    assert len(diverged) == len(BATCH_SIZES)
    assert diverged[0].startswith("diverged at\niteration 5-7\n(3 of 3 seeds)")


def test_grid_curves_share_one_log_loss_axis_that_diverging_runs_do_not_stretch():
    """Every panel has the same y limits, on a log scale for the loss, set by the seeds that
    did not diverge; the exploding values of diverged seeds are marked on the edge."""
    histories, seeds = fake_grid(**FEW)
    exploding = histories["lr"] == 0.1
    histories.loc[exploding, "train_loss"] = 10.0 ** histories.loc[exploding, "iteration"]
    fig = figures.grid_curves(histories, seeds, metric="train_loss")
    limits = {ax.get_ylim() for ax in fig.axes}
    assert len(limits) == 1
    (_, high), ax = limits.pop(), fig.axes[0]
    assert ax.get_yscale() == "log" and high < 1, "the axis is set by the converged runs"
    triangles = [line for line in ax.get_lines() if line.get_marker() == "^"]
    assert triangles and all(np.allclose(line.get_ydata(), high) for line in triangles)
    assert "above the axis" in ax.texts[0].get_text()


def test_grid_curves_diverged_panel_has_its_own_short_iteration_range(loss_grid):
    histories, fig = loss_grid
    assert fig.axes[0].get_xlim() == (0, 8), "seeds stopped at iterations 5-7"
    assert fig.axes[-1].get_xlim()[1] == histories["iteration"].max()


def test_grid_curves_notes_stay_inside_their_panel(loss_grid, accuracy_grid):
    """No note spills over a neighbouring panel (its tick labels), even at the page width."""
    for fig in (loss_grid[1], accuracy_grid):
        fig.draw_without_rendering()
        for ax in fig.axes:
            box = ax.get_window_extent()
            for text in ax.texts:
                inner = text.get_window_extent()
                assert box.x0 <= inner.x0 and inner.x1 <= box.x1, text.get_text()
                assert box.y0 <= inner.y0 and inner.y1 <= box.y1, text.get_text()


def test_seed_band_is_the_95_percent_ci_of_the_mean():
    """low/high are the mean -/+ t(0.975, n-1) sd / sqrt(n); one seed: the mean itself."""
    history = pd.DataFrame(
        {"iteration": [0, 0, 0, 1], "seed": [0, 1, 2, 0], "train_loss": [1.0, 2.0, 3.0, 5.0]}
    )
    band = figures.seed_band(history, "train_loss").set_index("iteration")
    assert band.loc[0, "mean"] == 2.0
    assert band.loc[0, "high"] - 2.0 == pytest.approx(4.303 * 1.0 / np.sqrt(3))
    assert band.loc[0, "low"] == pytest.approx(4.0 - band.loc[0, "high"])


def test_log_ticks_are_round_and_at_least_three():
    assert figures._log_ticks(0.18, 1.1) == [0.2, 0.3, 0.5, 1.0]
    narrow = figures._log_ticks(0.35, 0.78)
    assert len(narrow) >= 3 and all(0.35 <= t <= 0.78 for t in narrow)
    # a range of decades (an unstable run's loss) gets one tick per decade, not dozens
    assert figures._log_ticks(0.18, 50_000) == [1.0, 10.0, 100.0, 1000.0, 10000.0]


def test_examples_seen_leaves_out_an_unstable_configuration_and_says_so():
    histories, seeds = fake_grid()
    seeds = seeds.assign(outcome=np.where(seeds["diverged_at"].notna(), "diverged", "stable"))
    seeds.loc[(seeds["lr"] == 0.01) & (seeds["batch_size"] == 1), "outcome"] = "unstable"
    fig = figures.examples_seen(histories, seeds)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "lr = 0.01\n(B = 1 left out: unstable)" and titles[1] == "lr = 0.001"
    assert len(fig.axes[0].get_lines()) == len(fig.axes[1].get_lines()) - 1


def test_grid_curves_scale_on_stable_seeds_and_flag_unstable_ones():
    """An unstable seed whose loss grows to 10^4 does not set the shared axis; its panel
    says it is unstable."""
    histories, seeds = fake_grid(**FEW)
    cell = (seeds["lr"] == 0.01) & (seeds["batch_size"] == 1)
    seeds = seeds.assign(outcome=np.where(seeds["diverged_at"].notna(), "diverged", "stable"))
    seeds.loc[cell & (seeds["seed"] == 0), "outcome"] = "unstable"
    grows = (histories["lr"] == 0.01) & (histories["batch_size"] == 1) & (histories["seed"] == 0)
    histories = histories.assign(train_loss=histories["train_loss"].where(~grows, 1e4))
    fig = figures.grid_curves(histories, seeds, metric="train_loss")
    assert fig.axes[0].get_ylim()[1] < 10
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("unstable: 1 of") for t in texts)


def test_examples_seen_puts_each_batch_size_at_iteration_plus_one_times_b():
    """A panel per lr where no seed diverged; x = (iteration + 1) x B on a log axis; one
    colour per batch size; the panels share their log loss axis."""
    histories, seeds = fake_grid()
    fig = figures.examples_seen(histories, seeds)
    assert [ax.get_title() for ax in fig.axes] == ["lr = 0.01", "lr = 0.001"]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert fig.axes[0].get_ylim() == fig.axes[1].get_ylim()
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["B = 10"].get_xdata()[0] == 10 and lines["B = 1000"].get_xdata()[0] == 1000
    assert lines["B = 100"].get_color() == figures.batch_color(100)


@pytest.fixture(scope="module")
def stability_figure():
    """The stability plot of ``fake_table()``, drawn once for the tests that only read it."""
    return figures.stability_plot(fake_table(), lr_max=0.0525)


def test_stability_plot_draws_the_95_percent_ci():
    table = fake_table().assign(final_train_loss_ci=0.01)
    fig = figures.stability_plot(table, lr_max=0.0525)
    assert fig.axes[0].containers, "error bars of the 95 % CI"


def test_grid_curves_accuracy_in_percent(accuracy_grid):
    low, high = accuracy_grid.axes[-1].get_ylim()
    assert 1 < low < high <= 100.0
    assert "Test accuracy" in accuracy_grid._suptitle.get_text()


def test_grid_curves_of_a_grid_whose_cells_all_failed():
    """No history at all: every panel says the configuration failed."""
    _, seeds = fake_grid(n_seeds=1, **FEW)
    failed = seeds.assign(status="failed", seed=np.nan, diverged_at=np.nan)
    fig = figures.grid_curves(pd.DataFrame(), failed, metric="train_loss")
    assert all_text(fig).count("failed") == len(fig.axes) == 4


def test_every_figure_fits_the_page_with_readable_text(loss_grid, stability_figure):
    """At most PRINT_WIDTH inches wide, text of at least 8 pt (the printed size)."""
    made = [
        loss_grid[1],
        figures.accuracy_heatmap(fake_table()),
        stability_figure,
        figures.training_curves(fake_history(seed=0), title="t"),
    ]
    for fig in made:
        assert fig.get_size_inches()[0] <= figures.PRINT_WIDTH
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text()]
        assert min(sizes) >= 8, sizes


def test_one_colour_per_batch_size_in_every_figure(stability_figure):
    assert len(set(figures.BATCH_COLORS.values())) == len(figures.BATCH_COLORS)
    drawn = {
        line.get_label(): line.get_color()
        for line in stability_figure.axes[0].get_lines()
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
    assert ax.get_title() == "Final test accuracy, mean ± 95 % CI over seeds"


def test_accuracy_heatmap_says_unstable_where_no_seed_was_stable():
    """A cell whose seeds all ran to the end but were unstable has no mean to show, and says
    why (not "no result")."""
    table = fake_table().assign(n_unstable=0)
    cell = (table["lr"] == 0.01) & (table["batch_size"] == 1)
    table.loc[cell, ["n_unstable", "final_test_acc_mean"]] = [3, np.nan]
    texts = [t.get_text() for t in figures.accuracy_heatmap(table).axes[0].texts]
    assert texts.count("unstable") == 1 and "no result" not in texts


def test_stability_plot_marks_threshold_and_diverged_lrs(stability_figure):
    ax = stability_figure.axes[0]
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
    for ax in (top, bottom):
        assert vertical_lines(ax) == {0.05, 0.02, 0.005}
    triangles = [line for line in top.get_lines() if line.get_marker() == "v"]
    assert sorted(t.get_xdata()[0] for t in triangles if len(t.get_xdata())) == sorted(STUDY_LRS)
    assert bottom.get_yticklabels()[0].get_text() == "B = 1"


def state_cells(ax) -> dict[str, list[tuple[float, float]]]:
    """The (lr, row) of the markers of each state of the map's bottom panel."""
    return {
        c.get_label(): [tuple(xy) for xy in c.get_offsets()]
        for c in ax.collections
        if c.get_label() in STATE_LABELS
    }


STATE_LABELS = (
    "stable",
    "unstable (some seeds)",
    "unstable (every seed)",
    "diverged (some seeds)",
    "diverged (every seed)",
)


def test_the_stability_map_shows_three_states_and_no_unstable_run_as_stable():
    """An unstable cell (batch size 1, lr 0.01: one seed ends at loss 0.7; batch size 10,
    lr 0.1: every seed) is drawn as unstable, off the stable line, whose band is the 95 % CI
    of the stable seeds' mean; a cell with a diverged seed is drawn as diverged."""
    seeds = seeds_frame()
    seeds.loc[(seeds["cell"] == "lr0.01_bs1") & (seeds["seed"] == 0), "final_train_loss"] = 0.7
    seeds.loc[seeds["cell"] == "lr0.1_bs10", "final_train_loss"] = 0.9
    table = accuracy_table(seeds)
    fig = figures.stability_map(table, BOUNDS, study_lrs=STUDY_LRS)
    top, bottom = fig.axes
    states = state_cells(bottom)
    assert set(states) == set(STATE_LABELS), "the key names every state"
    assert states["unstable (some seeds)"] == [(0.01, 0.0)]
    assert states["unstable (every seed)"] == [(0.1, 1.0)]
    assert (0.0316, 0.0) in states["diverged (some seeds)"]
    assert (0.1, 0.0) in states["diverged (every seed)"]
    assert (0.01, 0.0) not in states["stable"] and (0.1, 1.0) not in states["stable"]
    one = next(line for line in top.get_lines() if line.get_label() == "batch size 1")
    assert list(one.get_xdata()) == [0.001], "only the cells where every seed was stable"
    ten = next(line for line in top.get_lines() if line.get_label() == "batch size 10")
    assert list(ten.get_xdata()) == [0.001, 0.01, 0.0316]
    color = matplotlib.colors.to_rgba(figures.batch_color(10), 0.25)
    bands = [c for c in top.collections if len(c.get_facecolor())]
    band = next(c for c in bands if np.allclose(c.get_facecolor()[0], color))
    edge = band.get_paths()[0].vertices
    cell = table.set_index(["batch_size", "lr"]).loc[(10, 0.001)]
    low = 100 * (cell["final_test_acc_mean"] - cell["final_test_acc_ci"])
    assert cell["final_test_acc_ci"] > 0.01
    assert np.isclose(edge[np.isclose(edge[:, 0], 0.001), 1], low).any()


def test_the_stability_map_refuses_a_non_frame():
    """A table that is not a DataFrame is refused by name."""
    with pytest.raises(ValueError, match="table must be a pandas DataFrame, got list"):
        figures.stability_map([1, 2], BOUNDS, study_lrs=STUDY_LRS)


def test_subset_curves_draw_the_optimum_on_s_prime_in_the_colour_of_n_prime():
    h = pd.concat([fake_history(seed=s, eval_every=5) for s in range(2)]).assign(n_prime=100)
    fig = figures.subset_curves(h, title="N'", optimum={100: 0.0})
    ax_loss, ax_acc, ax_gap, _ = fig.axes
    dotted = [line for line in ax_loss.get_lines() if line.get_linestyle() == ":"]
    assert [line.get_color() for line in dotted] == [figures.size_color(100)]
    assert dotted[0].get_ydata()[0] == 0.0
    assert ax_acc.get_shared_x_axes().joined(ax_acc, ax_loss)
    assert ax_gap.get_shared_x_axes().joined(ax_gap, ax_loss)


def test_spectrum_marks_lambda_max_and_the_norms_on_a_log_scale():
    """Eigenvalues largest first, zero ones left out and counted, the three levels marked."""
    fig = figures.spectrum(
        np.array([0.0, 1e-20, 0.5, 2.0, 4.0]), mean_norm=6.5, max_norm=9.0, title="S"
    )
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    points, *levels = ax.get_lines()
    assert points.get_ydata().tolist() == [4.0, 2.0, 0.5]
    assert sorted(line.get_ydata()[0] for line in levels) == [4.0, 6.5, 9.0]
    labels = line_labels(ax)
    assert "(2 below" in labels[0]
    assert any("tr" in label and "6.5" in label for label in labels)
    with pytest.raises(ValueError, match="positive maximum"):
        figures.spectrum(np.zeros(3), mean_norm=1.0, max_norm=1.0, title="S")


def _predicted_lines(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() == "--" and
            line.get_color() == "black"]  # fmt: skip


def test_grid_curves_draw_the_prediction_in_every_panel_with_a_key(loss_grid):
    histories, seeds = fake_grid(**FEW)
    predicted = histories.groupby(["lr", "batch_size", "iteration"], as_index=False)[
        "train_loss"
    ].mean()
    fig = figures.grid_curves(histories, seeds, metric="train_loss", predicted=predicted)
    assert all(len(_predicted_lines(ax)) == 1 for ax in fig.axes)
    assert figures.PREDICTED_LABEL in [t.get_text() for t in fig.legends[0].get_texts()]
    assert loss_grid[1].legends == []


def test_training_curves_and_subset_curves_draw_the_prediction():
    history = pd.concat([fake_history(seed=s) for s in range(3)])
    predicted = history.groupby("iteration", as_index=False)["train_loss"].mean()
    fig = figures.training_curves(history, title="lr 0.01", predicted=predicted)
    assert figures.PREDICTED_LABEL in line_labels(fig.axes[0])
    subset = history.assign(n_prime=100)
    fig = figures.subset_curves(subset, title="N'", predicted=predicted.assign(n_prime=100))
    assert len(_predicted_lines(fig.axes[0])) == 1


def test_the_stability_map_draws_the_predicted_edge_across_each_row():
    table = accuracy_table(seeds_frame())
    edges = pd.DataFrame({"batch_size": [1, 10, 7], "lr_edge": [0.01, 0.03, 0.04]})
    fig = figures.stability_map(table, BOUNDS, study_lrs=STUDY_LRS, edges=edges)
    bottom = fig.axes[1]
    bars = [line for line in bottom.get_lines() if line.get_linewidth() == 2.2]
    assert sorted(bar.get_xdata()[0] for bar in bars if len(bar.get_xdata())) == [0.01, 0.03]
    assert "predicted edge" in line_labels(bottom)


def test_size_curves_draw_both_fits_the_prediction_and_the_inputs_line():
    rows = []
    for n in (10, 100, 784, 5000):
        for seed in range(3):
            peak = 100.0 if n == 784 else 0.5
            rows.append([n, seed, 0.0 if n < 784 else 0.1, peak, 0.6, 0.3, 0.31, 0.8, 0.3, 0.31])
    frame = pd.DataFrame(rows, columns=SIZE_COLUMNS)
    fig = figures.size_curves(frame, inputs=784, title="sizes")
    loss, acc = fig.axes
    assert loss.get_xscale() == "log" and loss.get_yscale() == "log"
    assert 784 in vertical_lines(loss) and 784 in vertical_lines(acc)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"SGD {figures.PREDICTED_LABEL}" in labels
    assert loss.get_ylim()[0] == pytest.approx(0.1), "the interpolating fit's 0 is off the axis"


def test_the_summary_figure_draws_each_batch_sizes_prediction_and_both_keys():
    from linmnist.engine.scaling import fit_hyperbola

    table = accuracy_table(seeds_frame())
    predicted = table[["batch_size", "lr"]].assign(train_loss=0.3)
    steps = pd.DataFrame({"batch_size": [1, 4, 16, 64], "steps": [800.0, 220.0, 80.0, 50.0]})
    hyperbola = fit_hyperbola(steps["batch_size"], steps["steps"])
    fig = figures.hero(table, 0.05, steps, hyperbola, target="excess loss 0.1",
                       predicted=predicted)  # fmt: skip
    left = fig.axes[0]
    dashed = [line for line in left.get_lines() if line.get_linestyle() == "--"]
    assert len([line for line in dashed if len(line.get_xdata())]) >= 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert figures.PREDICTED_LABEL in labels and "B = 1" in labels
    plain = figures.hero(table, 0.05, steps, hyperbola, target="excess loss 0.1")
    assert figures.PREDICTED_LABEL not in [t.get_text() for t in plain.legends[0].get_texts()]
