"""The scaling section: best rates, fits, noise-floor table, facts, text and figures."""

import math

import numpy as np
import pandas as pd
import pytest
from experiments.scaling_case import scaling_build
from matplotlib.figure import Figure

from linmnist.experiments.scaling import Scaling
from linmnist.report import scaling as section

SCALES = {"b_noise": 10.0, "b_simple": 20.0, "eps_max": 0.03}


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
        "loss_star": 0.2,
        "at_zero": SCALES,
        "at_target": [{**SCALES, "b_noise": 300.0}, {**SCALES, "b_noise": 3000.0}],
        "wall_seconds": 1.0,
    }
    return Scaling(
        runs=pd.DataFrame(rows), gd=gd, trajectory=pd.DataFrame(), floor=pd.DataFrame(),
        records={"gd": record, "floor": {"tr_sigma_star": 30.0, "mean_x2": 80.0}},
    )  # fmt: skip


def test_the_best_rate_and_the_fit_recover_the_hyperbola():
    scaling = _scaling()
    best = section.best_steps(scaling, 1)
    assert list(best["lr"]) == [0.01 * min(b, 16) for b in (1, 2, 4, 8, 16, 32, 64)]
    np.testing.assert_allclose(best["steps"], 20 + 600 / best["batch_size"] + 0.5)
    fit = section.fit(scaling, 1)
    assert fit.median.b_crit == pytest.approx(600 / 20, rel=0.05)
    assert len(fit.seeds) == 2 and fit.b_crit_seeds[0] == pytest.approx(30, rel=1e-9)
    assert section.gd_best(scaling, 1) == (0.16, 20.0)
    assert section._halving_until(best) == 16  # 95.5 / 58 = 1.65, then 58 / 39.25 = 1.48


def test_eps_opt_and_the_lr_table():
    np.testing.assert_allclose(section.eps_opt([10, 1000], SCALES), [0.015, 0.03 / 1.01])
    table = section.lr_table(_scaling())
    np.testing.assert_allclose(table["linear"], 0.01 * table["batch_size"])
    assert (table["ceiling"] == 0.2).all()
    assert section._linear_until(table, "lr_1") == 32  # 0.16 at 32 is half of 0.32


def test_the_floor_verdict_needs_a_factor_or_the_confidence_interval():
    predicted = pd.Series([1.0, 1.0, 1.0, 1.0, np.inf])
    measured = pd.Series([0.9, 2.0, 2.0, 2.0, 1.0])
    se = pd.Series([0.0, 0.1, 0.3, 0.3, 0.1])
    n_seeds = pd.Series([3, 3, 3, 30, 3])  # t = 4.30 for 3 seeds, 2.0 for 30
    verdict = section._verdict(predicted, measured, se, n_seeds)
    assert list(verdict) == ["holds", "fails", "undecided", "fails", "fails"]


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
    facts = section.scaling_facts(scaling, floor, dataset="mnist")
    assert [t.excess for t in facts.targets] == [0.2, 0.1]
    assert facts.floor_rows + facts.floor_unresolved == 4 and facts.wall_seconds is None
    law = section.render(facts, "law")
    for t in facts.targets:
        assert f"= {t.b_crit:.0f} (per-seed fits: {t.b_crit_mean:.0f} ± {t.b_crit_sd:.0f}" in law
    verdicts = facts.floor_verdicts["first_order"]
    assert sum(verdicts.values()) == facts.floor_rows
    assert f"holds for {verdicts['holds']}, undecided for" in section.render(facts, "floor")
    assert f"{facts.runs:,} SGD runs" in section.render(facts, "cost")
    with pytest.raises(ValueError, match="part must be"):
        section.render(facts, "abstract")
    for figure in (
        section.steps_figure(scaling),
        section.lr_figure(scaling),
        section.noise_figure(scaling),
        section.floor_figure(floor),
    ):
        assert isinstance(figure, Figure)
    assert section.format_best(scaling).shape[0] == 4
    assert not math.isnan(section.format_floor(floor).shape[0])
