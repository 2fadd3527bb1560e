"""The scaling section: best rates, fits, noise scales along the path, the noise-floor table
and its account of the critical batch size, and the figures."""

import math
import re

import numpy as np
import pandas as pd
import pytest
from experiments.scaling_case import scaling_build
from matplotlib.figure import Figure

from linmnist.engine.scaling import floor_ratio
from linmnist.experiments.scaling import Scaling
from linmnist.report import captions, tables
from linmnist.report import scaling as section

SCALES = {"b_noise": 10.0, "b_simple": 20.0, "eps_max": 0.03}


def _path_point(step: int) -> dict:
    """A point of a gradient-descent path whose noise scales grow exponentially in the step."""
    return {"step": step, "excess": 0.3 * math.exp(-0.05 * step), "grad_norm": 1.0,
            "b_noise": 10 * math.exp(0.1 * step), "b_simple": 5 * math.exp(0.05 * step),
            "eps_max": 0.03 * math.exp(0.05 * step)}  # fmt: skip


def _scaling(s_min=20.0, e_min=600.0) -> Scaling:
    """Two seeds whose steps at the best rate (lr 0.01 B) follow S_min + E_min / B exactly."""
    rows = []
    for b in (1, 2, 4, 8, 16, 32, 64):
        best = 0.01 * min(b, 16)
        for lr, slower in ((best, 1.0), (best / 2, 1.6)):
            for seed in (0, 1):
                steps = slower * (s_min + e_min / b) + seed
                rows.append({"batch_size": b, "lr": lr, "seed": seed, "status": "reached",
                             "steps_run": steps, "cap": 10**6, "seconds": 0.1,
                             "steps_0": steps / 3, "steps_1": steps})  # fmt: skip
    gd = pd.DataFrame({"lr": [0.16, 0.08], "steps_0": [7.0, 12.0], "steps_1": [20.0, 35.0]})
    record = {
        "params": {"targets": [0.1, 0.05], "seeds": [0, 1]},
        "lambda_max": 10.0,
        "lr_max": 0.2,
        "trajectory_lr": 0.1,
        "loss_star": 0.2,
        "loss_zero": 0.5,
        "at_zero": SCALES,
        "at_target": [{**SCALES, "b_noise": 300.0}, {**SCALES, "b_noise": 3000.0}],
        "wall_seconds": 1.0,
    }
    record["at_target"] = [{**scales, **_path_point(step)} for scales, step in
                           zip(record["at_target"], (20, 40), strict=True)]  # fmt: skip
    trajectory = pd.DataFrame([_path_point(t) for t in (0, 1, 2, 4, 9, 18, 37, 80)])
    return Scaling(
        runs=pd.DataFrame(rows), gd=gd, trajectory=trajectory, floor=pd.DataFrame(),
        floor_curves=pd.DataFrame(), predicted=_predicted(s_min, e_min),
        records={"gd": record, "floor": {"tr_sigma_star": 30.0, "mean_x2": 80.0}},
    )  # fmt: skip


def _predicted(s_min: float, e_min: float) -> pd.DataFrame:
    """Predicted steps 1.5 times the measured medians at the best rate, more at the rate
    above it, and none (NaN) at the rate below."""
    rows = []
    for b in (1, 2, 4, 8, 16, 32, 64):
        best = 0.01 * min(b, 16)
        steps = 1.5 * (s_min + e_min / b + 0.5)  # the median of the seeds (+0, +1)
        rows += [[b, 2 * best, 2 * steps / 3, 2 * steps], [b, best, steps / 3 + 0.5, steps],
                 [b, best / 2, np.nan, np.nan]]  # fmt: skip
    return pd.DataFrame(rows, columns=["batch_size", "lr", "steps_0", "steps_1"])


def test_the_best_rate_and_the_fit_recover_the_hyperbola():
    scaling = _scaling()
    best = section.best_steps(scaling, 1)
    assert list(best["lr"]) == [0.01 * min(b, 16) for b in (1, 2, 4, 8, 16, 32, 64)]
    np.testing.assert_allclose(best["steps"], 20 + 600 / best["batch_size"] + 0.5)
    fit = section.fit(scaling, 1)
    assert fit.median.b_crit == pytest.approx(600 / 20, rel=0.05)
    assert len(fit.seeds) == 2 and fit.b_crit_seeds[0] == pytest.approx(30, rel=1e-9)
    assert section.gd_best(scaling, 1) == (0.16, 20.0)
    assert section.halving_until(best) == 16  # 95.5 / 58 = 1.65, then 58 / 39.25 = 1.48


def test_the_predicted_steps_are_set_beside_the_measured_at_each_best_rate():
    scaling = _scaling()
    table = section.steps_agreement(scaling)
    assert len(table) == 2 * 7 and list(table["target"].unique()) == [0.1, 0.05]
    last = table[table["target"] == 0.05]
    np.testing.assert_allclose(last["ratio"], 1.5)  # the seeds' median, seed 0 and seed 1
    np.testing.assert_allclose(last["predicted_lr"], last["lr"])  # the rate above is slower
    assert section.predicted_fit(scaling, 1).b_crit == pytest.approx(600 / 20.5)
    shown = section.format_agreement(table)
    assert list(shown.columns) == ["excess 0.1", "excess 0.05"] and len(shown) == 7
    assert shown.loc[1, "excess 0.05"] == "620 / 930 (1.5×)"


def test_eps_opt_and_the_lr_table():
    np.testing.assert_allclose(section.eps_opt([10, 1000], SCALES), [0.015, 0.03 / 1.01])
    table = section.lr_table(_scaling())
    np.testing.assert_allclose(table["linear"], 0.01 * table["batch_size"])
    assert (table["ceiling"] == 0.2).all()


def test_the_floor_verdict_needs_a_factor_or_the_confidence_interval():
    predicted = pd.Series([1.0, 1.0, 1.0, 1.0, np.inf])
    measured = pd.Series([0.9, 2.0, 2.0, 2.0, 1.0])
    se = pd.Series([0.0, 0.1, 0.3, 0.3, 0.1])
    n_seeds = pd.Series([3, 3, 3, 30, 3])  # t = 4.30 for 3 seeds, 2.0 for 30
    verdict = section._verdict(predicted, measured, se, n_seeds)
    assert list(verdict) == ["holds", "fails", "undecided", "fails", "fails"]


def test_the_path_average_weighs_every_step_of_gradient_descent_alike():
    scaling = _scaling()
    # the scales grow exponentially between the stored points: the log-linear interpolation
    # is exact, so the average is the mean over the steps t = 0 .. S - 1 themselves
    for target, steps in ((0, 20), (1, 40)):
        average = section.path_average(scaling, target)
        t = np.arange(steps)
        assert average["steps"] == steps
        assert average["b_noise"] == pytest.approx(np.mean(10 * np.exp(0.1 * t)), rel=1e-9)
        assert average["b_simple"] == pytest.approx(np.mean(5 * np.exp(0.05 * t)), rel=1e-9)
    table = section.noise_table(scaling)
    np.testing.assert_allclose(table["b_noise_path_ratio"], table["b_noise_path"] / table["b_crit"])
    assert (table["b_noise_zero"] == 10.0).all()
    np.testing.assert_allclose(table["b_noise_target"], 10 * np.exp([2.0, 4.0]))
    assert table["b_crit_ci"].notna().all()  # two seeds: an interval


def test_the_noise_floor_account_sets_b_crit_against_the_floor_batch_size():
    scaling = _scaling()
    table = section.floor_account(scaling)
    # the best rate of the largest batch is 0.16; tr Sigma* = 30: B_floor = 0.16 * 30 / (4 eps)
    np.testing.assert_allclose(table["b_floor"], 0.16 * 30 / (4 * np.array([0.1, 0.05])))
    np.testing.assert_allclose(table["ratio"], table["b_crit"] / table["b_floor"])
    # The derived ratio, from the excess at W = 0 (0.5 - 0.2) and each target.
    np.testing.assert_allclose(table["model"], [floor_ratio(0.3, 0.1), floor_ratio(0.3, 0.05)])
    assert _bad_headers(section.format_floor_account(table)) == []


def test_the_floor_account_holds_only_when_the_ratio_varies_less_than_b_crit():
    steady = pd.DataFrame({"b_crit": [10.0, 20.0, 40.0], "ratio": [4.0, 3.8, 4.2]})
    assert section.floor_account_holds(steady)
    drifting = pd.DataFrame({"b_crit": [10.0, 20.0, 21.0], "ratio": [1.7, 3.0, 4.1]})
    assert not section.floor_account_holds(drifting)


def test_the_floor_table_measures_only_configurations_whose_every_seed_was_stable():
    """An unstable seed has no noise floor: its configuration is left out of the test (a
    loss 50 times its start would otherwise be an "undecided" 100-fold miss)."""
    base = _scaling()
    floor = pd.DataFrame({
        "task": "stability", "cell": ["a", "b"], "lr": [0.001, 0.02], "batch_size": 1,
        "iterations": 1000, "gd_excess": 0.0,
        **{name: [1e-3, 0.2] for name in section.PREDICTIONS},
    })  # fmt: skip
    records = {**base.records, "gd": {**base.records["gd"], "loss_star": 0.2}}
    scaling = Scaling(runs=base.runs, gd=base.gd, trajectory=base.trajectory, floor=floor,
                      floor_curves=pd.DataFrame(), predicted=base.predicted,
                      records=records)  # fmt: skip
    seeds = pd.DataFrame({
        "task": "stability", "cell": ["a", "a", "b", "b"], "status": "ok",
        "diverged_at": np.nan, "final_train_loss": [0.201, 0.2012, 0.3, 24.6],
        "final_excess": [0.0009, 0.0011, 0.1, 24.4],
        "outcome": ["stable", "stable", "stable", "unstable"],
    })  # fmt: skip
    table = section.floor_table(scaling, seeds)
    assert list(table["cell"]) == ["a"]
    assert table["measured"].iloc[0] == pytest.approx(0.001)  # the seeds' final excesses
    assert table["loss_difference"].iloc[0] == pytest.approx(0.0011)
    assert table["se"].iloc[0] == pytest.approx(0.0001)


def test_the_floor_against_the_batch_size_draws_one_point_per_size_the_grid_first():
    base = _scaling()
    curves = pd.DataFrame({"lr": 0.01, "iterations": 100, "batch_size": [1, 2, 5, 10],
                           "predicted": [4e-2, 2e-2, 8e-3, 4e-3]})  # fmt: skip
    scaling = Scaling(runs=base.runs, gd=base.gd, trajectory=base.trajectory,
                      floor=pd.DataFrame(), floor_curves=curves, predicted=base.predicted,
                      records=base.records)  # fmt: skip
    table = pd.DataFrame({
        "task": ["stability", "grid", "stability", "grid"], "lr": [0.01, 0.01, 0.01, 0.02],
        "iterations": 100, "batch_size": [1, 1, 10, 1], "measured": [1.0, 2.0, 3.0, 4.0],
    })  # fmt: skip
    points = section.floor_batch_points(table, scaling)
    assert list(zip(points["task"], points["batch_size"], strict=True)) == [
        ("grid", 1), ("stability", 10)
    ]  # fmt: skip


def test_significant_digits_are_written_out():
    assert tables.significant(445_012.3) == "445,000"
    assert tables.significant(0.000147) == "0.000147"
    assert tables.significant(26.34) == "26.3"
    assert tables.significant(6131.0, 2) == "6,100"
    assert tables.significant(math.inf) == "–"


HEADER = re.compile(r"<th[^>]*>(.*?)</th>", re.S)


def _bad_headers(frame: pd.DataFrame) -> list[str]:
    """The column headers of ``frame`` as the report renders it that hold no letter or digit."""
    html = captions.table(frame, label="tab-x", caption="x").data["text/html"]
    headers = [re.sub(r"<[^>]+>|&[a-z]+;|&#\d+;", "", h).strip() for h in HEADER.findall(html)]
    return [h for h in headers if not re.search(r"\w", h)]


def test_a_multiindex_header_is_caught():
    frame = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "b"), ("a", "c")]))
    assert _bad_headers(frame)  # the check can fail: a tuple header renders as "(" and "&"


def test_the_tables_have_headers_in_words():
    scaling = _scaling()
    frames = [
        section.format_best(scaling),
        section.format_noise(section.noise_table(scaling)),
        section.format_fit(scaling),
    ]
    for frame in frames:
        assert _bad_headers(frame) == []
        assert not isinstance(frame.columns, pd.MultiIndex)
    best = section.format_best(scaling)
    assert list(best.index) == [1, 2, 4, 8, 16, 32, 64]
    assert list(best.columns) == ["excess 0.1", "excess 0.05"]
    assert best.loc[1, "excess 0.05"] == "620 at η = 0.01"
    noise = section.format_noise(section.noise_table(scaling))
    assert not any("e+" in str(v) for v in noise.to_numpy().ravel())  # no e-notation
    fits = section.format_fit(scaling)
    assert list(fits.index) == ["0.1", "0.05"]
    b_crit = section.fit(scaling, 1).median.b_crit  # about E_min 600 / S_min 20
    assert fits.loc["0.05", "critical batch size"] == tables.significant(b_crit)
    assert abs(b_crit - 30) < 1.5


def _floor() -> pd.DataFrame:
    """A floor table: two batch sizes, every verdict, one negative loss difference."""
    verdicts = ["holds", "undecided", "fails", "holds"]
    return pd.DataFrame({
        "task": "grid", "lr": [0.001, 0.000147, 0.01, 0.001], "batch_size": [1, 1, 1000, 1000],
        "iterations": 100, "measured": [1e-3, 2e-3, 3e-3, 1e-6], "se": [1e-4, 1e-3, 1e-4, 1e-7],
        "loss_difference": [1e-3, 3e-3, 3e-3, -1e-5], "loss_se": [2e-4, 2e-3, 2e-4, 2e-5],
        "n_seeds": 3, "lr_x2": [0.0878, 0.0129, 0.878, 0.0000147],
        **{name: [1e-3, 1e-3, 1e-2, 1e-6] for name in section.PREDICTIONS},
        **{f"{name}_verdict": verdicts for name in section.PREDICTIONS},
    })  # fmt: skip


def test_the_floor_summary_counts_every_verdict_by_batch_size():
    summary = section.floor_summary(_floor())
    assert _bad_headers(summary) == []
    assert summary.shape == (6, 3)  # two batch sizes x three predictions
    assert summary.loc[(1, "first order")].tolist() == [1, 1, 0]
    assert summary.loc[(1000, "stationary")].tolist() == [1, 0, 1]


def test_the_full_floor_table_defines_its_marks_and_keeps_significant_digits():
    full = section.format_floor(_floor())
    assert _bad_headers(full) == []
    assert list(full["lr · mean‖x‖²"]) == ["0.0878", "0.0129", "0.878", "0.0000147"]
    caption = section.floor_caption(3)
    for mark in section.FLOOR_MARKS.values():
        assert mark.strip() in caption
        assert any(str(v).endswith(mark) for v in full["first order (10⁻³)"])


def test_a_miss_is_decisive_only_where_the_ci_is_narrower_than_the_excess():
    """With 3 seeds (t = 4.30), se 1e-4 on an excess 1e-3 gives a half-width 4.3e-4: a
    100-fold miss fails; se 1e-3 on 2e-3 reaches below zero: it could be undecided."""
    assert section.decisive(_floor()).tolist() == [True, False, True, True]
    verdict = section._verdict(
        pd.Series([1e-5, 0.2]), pd.Series([2e-3, 2e-3]), pd.Series([1e-3, 1e-3]), pd.Series([3, 3])
    )
    assert verdict.tolist() == ["undecided", "fails"]  # why the second row is not decisive


def test_the_sign_of_the_loss_difference():
    """The loss difference can be negative, the measured excess cannot; the sign counts
    and the spread ratio come from the loss difference's own CI."""
    sign = section.excess_sign(_floor())
    assert (sign.negative, sign.consistent, sign.batch_sizes) == (1, 1, [1000])
    assert sign.lowest == -1e-5 and sign.total == 4
    assert sign.spread == pytest.approx(2.0)  # median of 2, 2, 2, 200
    clean = _floor().assign(loss_difference=1e-3)
    assert section.excess_sign(clean).negative == 0 and section.excess_sign(clean).lowest == 0


def _texts(fig: Figure) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def test_the_floor_figure_draws_every_finite_prediction_on_log_axes():
    fig = section.floor_figure(_floor())
    (ax,) = fig.axes
    assert sum(len(c.get_offsets()) for c in ax.collections) == 3 * len(_floor())
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert "predicted" in ax.get_ylabel()


def test_the_noise_figure_says_its_axis_is_reversed_and_has_log_ticks():
    fig = section.noise_figure(_scaling())
    for ax in fig.axes[:2]:
        assert ax.xaxis_inverted() and "reversed" in ax.get_xlabel()
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert len(labels) >= 2
    for figure in (fig, section.lr_figure(_scaling()), section.steps_figure(_scaling())):
        code_names = [t for t in _texts(figure) if re.search(r"eps_|B_noise|B_simple|S_min", t)
                      and "$" not in t]  # fmt: skip
        assert code_names == []


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from conftest import mnist_like

    return scaling_build(tmp_path_factory.mktemp("scaling"), mnist_like)


@pytest.mark.slow
def test_the_section_from_a_build(built):
    scaling, seeds, _ = built
    floor = section.floor_table(scaling, seeds)
    assert len(floor) == 4 and np.isfinite(floor["measured"]).all()
    # the first-order floor is the stationary one's small-step limit
    small = floor[floor["lr"] == 0.002]
    np.testing.assert_allclose(small["stationary"], small["first_order"], rtol=0.1)
    fits = [section.fit(scaling, i) for i in range(len(scaling.targets))]
    assert list(scaling.targets) == [0.2, 0.1]
    assert all(np.isfinite(f.median.b_crit) and len(f.seeds) == 2 for f in fits)
    for figure in (
        section.steps_figure(scaling),
        section.lr_figure(scaling),
        section.noise_figure(scaling),
        section.floor_figure(floor),
        section.predicted_figure(scaling),
    ):
        assert isinstance(figure, Figure)
    (ax,) = section.floor_batch_figure(floor, scaling).axes
    solid = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert len(solid) == scaling.floor_curves["lr"].nunique() == 2  # one predicted curve each
    assert len(solid[0].get_xdata()) == 4  # B = 1, 2, 5, 10
    assert section.format_best(scaling).shape[0] == 4
    assert len(section.format_floor(floor)) == len(floor)
    assert section.floor_summary(floor).to_numpy().sum() == 3 * len(floor)
    noise = section.noise_table(scaling)
    # the scales grow along the path: the average lies between the values at W = 0 and at
    # the target
    assert (noise["b_noise_zero"] < noise["b_noise_path"]).all()
    assert (noise["b_noise_path"] < noise["b_noise_target"]).all()
