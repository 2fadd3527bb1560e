"""The [scaling] section, its products and their files, made on synthetic data."""

import math

import pytest

from linmnist.engine.validation import UsageError
from linmnist.experiments.grids import load_grids, section
from linmnist.experiments.scaling import (
    CURVE_COLUMNS,
    CURVE_SIZES,
    FLOOR_COLUMNS,
    RUN_COLUMNS,
    TRAJECTORY_COLUMNS,
    scaling_products,
    scaling_settings,
)
from linmnist.report.pipeline import pipeline

from .scaling_case import CONFIG, scaling_build


def test_the_default_and_small_settings_are_valid():
    full, small = scaling_settings(), scaling_settings(profile="small")
    assert full["batch_size"][0] == 1 and full["batch_size"][-1] >= 4096
    assert len(full["seeds"]) >= 3 and len(full["targets"]) >= 6  # the noise-floor account
    assert len(small["batch_size"]) < len(full["batch_size"])
    assert section(None, "scaling", profile="small")["seeds"] == small["seeds"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("targets = [0.1, 0.2]", "scaling.targets must be decreasing"),
        ("lr_top = 1.0", "scaling.lr_top must be below 1"),
        ("seeds = []", "scaling.seeds must be a non-empty list"),
        ("max_step = 3", "unknown key"),
    ],
)
def test_a_wrong_scaling_section_is_refused(tmp_path, change, message):
    head, tail = CONFIG.split("[scaling]")
    key = change.split(" ", 1)[0]
    lines = [line for line in tail.splitlines() if not line.startswith(key + " ")]
    config = tmp_path / "grids.toml"
    config.write_text(head + "[scaling]" + "\n".join([*lines, change]) + "\n")
    with pytest.raises(UsageError, match=message):
        scaling_settings(config)


def test_a_profile_may_override_the_section_and_nothing_unknown(tmp_path):
    config = tmp_path / "grids.toml"
    config.write_text(CONFIG + "\n[profiles.tiny.scaling]\nseeds = [5]\n")
    assert scaling_settings(config, profile="tiny")["seeds"] == [5]
    load_grids(config, profile="tiny")
    config.write_text(CONFIG + "\n[profiles.tiny.scalin]\nseeds = [5]\n")
    with pytest.raises(UsageError, match="did you mean 'scaling'"):
        load_grids(config)


def test_the_pipeline_holds_one_product_per_batch_size_and_three_more(tmp_path):
    """The longest first: the predictions, then the batch sizes from the largest."""
    names = [p.name for p in pipeline("mnist", "small") if p.group == "scaling"]
    small = scaling_settings(profile="small")["batch_size"]
    batches = [f"scaling/bs{b}" for b in sorted(small, reverse=True)]
    assert names == ["scaling/predicted", "scaling/floor", *batches, "scaling/gd"]
    config = tmp_path / "grids.toml"
    config.write_text(CONFIG.split("[scaling]")[0])
    assert scaling_products(tmp_path, "mnist", config=config) == []


@pytest.mark.slow
def test_the_products_write_their_tables(tmp_path, synthetic):
    result, _, _ = scaling_build(tmp_path, synthetic)
    assert not result.failed
    assert list(result.runs.columns) == [*RUN_COLUMNS, "steps_0", "steps_1"]
    assert set(result.runs["batch_size"]) == {1, 4, 16, 64}
    assert set(result.runs["status"]) <= {"reached", "stalled", "capped", "diverged"}
    assert list(result.trajectory.columns) == TRAJECTORY_COLUMNS
    assert result.trajectory["step"].iloc[0] == 0
    assert list(result.floor.columns) == FLOOR_COLUMNS and len(result.floor) == 4
    gd = result.records["gd"]
    assert [t["target"] for t in gd["at_target"]] == [0.2, 0.1]
    assert gd["optimum"]["b_noise"] is None  # infinite, stored as null
    assert math.isclose(gd["lr_max"], 2 / gd["lambda_max"])
    assert result.wall_seconds > 0
    predicted = result.predicted
    assert list(predicted.columns) == ["batch_size", "lr", "steps_0", "steps_1"]
    assert set(predicted["batch_size"]) == {1, 4, 16, 64}
    assert predicted.groupby("batch_size")["steps_1"].min().notna().all()


@pytest.mark.slow
def test_the_floor_curve_passes_through_the_predictions_of_the_measured_sizes(tmp_path, synthetic):
    """The predicted floor against the batch size is drawn for the grid's rates, at the
    sizes CURVE_SIZES up to the largest measured and at the measured ones, where it is the
    table's prediction after t steps."""
    result, _, _ = scaling_build(tmp_path, synthetic)
    curves = result.floor_curves
    assert list(curves.columns) == CURVE_COLUMNS
    assert set(curves["lr"]) == {0.002, 0.02} and set(curves["batch_size"]) == {1, 2, 5, 10}
    assert set(curves["batch_size"]) <= set(CURVE_SIZES) | set(result.floor["batch_size"])
    shared = curves.merge(result.floor, on=["lr", "iterations", "batch_size"])
    assert len(shared) == 4
    assert (shared["predicted_x"] == shared["predicted_y"]).all()
    assert (curves.groupby("lr")["predicted"].apply(lambda p: p.is_monotonic_decreasing)).all()
