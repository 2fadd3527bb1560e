"""The scaling-law section (notebooks/08_scaling_law.ipynb): tables, facts and figures.

Everything here is computed from a ``linmnist.experiments.scaling.Scaling`` (``read_scaling``)
and, for the noise floor, from the final losses of the Task 3 grid and the stability sweep:

* ``best_steps``: per batch size, the learning rate whose median steps to a target (over the
  seeds) is lowest, with those steps; ``seed_steps``: each seed's fewest steps over the rates;
* ``fit``: the hyperbola S = S_min + E_min / B fitted to the medians and to each seed;
* ``lr_table``: the best rates beside McCandlish's eps_opt(B), the linear-scaling rule and
  the ceiling 2 / lambda_max;
* ``floor_table``: the measured excess of SGD over gradient descent at the same rate and
  iterations, beside the three predictions of ``linmnist.engine.noise_floor``;
* ``scaling_facts`` and ``render``: the numbers of the discussion and its text (templates
  ``scaling_<part>.md.j2``); the figures ``steps_figure``, ``lr_figure``, ``noise_figure`` and
  ``floor_figure``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from linmnist.engine.scaling import Hyperbola, fit_hyperbola, target_columns
from linmnist.experiments.paths import results_dir
from linmnist.experiments.results import read_run_log
from linmnist.experiments.scaling import GD, GROUP, Scaling, load_scaling, scaling_settings
from linmnist.report import narrative
from linmnist.report.facts import ScalingFacts, TargetFacts
from linmnist.report.inputs import config_path, locate_build, require_product
from linmnist.report.study import dataset_name
from linmnist.report.uncertainty import t975

# A prediction of the noise floor "holds" when within this factor of the measured excess...
FLOOR_FACTOR = 1.25
# ... or within the 95 % confidence interval of the seeds' mean (Student's t; with three seeds
# the standard error itself is uncertain: 40 seeds of stability lr 0.000316, B = 1 gave
# 3.26 +- 0.27 e-3 where its three gave 4.55 +- 0.59 e-3, against 3.07 e-3 predicted).
# Doubling the batch size "still pays" while it divides the steps by at least this.
DOUBLING_GAIN = 1.5
PREDICTIONS = ("first_order", "stationary", "predicted")
PARTS = ("law", "floor", "cost", "task4")
VERDICTS = ("holds", "undecided", "fails")
DPI = 110


def read_scaling(
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    build: str | Path | None = None,
) -> Scaling:
    """The scaling products of a build, or ``MissingResults`` naming the command."""
    settings = scaling_settings(config_path(config), profile=profile)
    directory = results_dir(locate_build(dataset, profile, build, config)) / GROUP
    stems = [f"bs{b}" for b in settings["batch_size"]] + [GD, "floor"]
    for stem in stems:
        require_product(
            directory / f"{stem}.json",
            what="the scaling experiment's results",
            dataset=dataset,
            profile=profile,
            config=config,
            target=GROUP,
        )
    return load_scaling(directory, settings["batch_size"])


def _steps(runs: pd.DataFrame, target: int) -> pd.DataFrame:
    column = target_columns(target + 1)[target]
    return runs.assign(steps=runs[column].fillna(np.inf))


def best_steps(scaling: Scaling, target: int) -> pd.DataFrame:
    """Per batch size: lr (the best by median steps), steps (median), steps_min, steps_max
    (over the seeds at that lr), examples (B x steps) and the seeds that reached it."""
    runs = _steps(scaling.runs, target)
    by_lr = runs.groupby(["batch_size", "lr"])["steps"]
    table = pd.DataFrame(
        {
            "steps": by_lr.median(),
            "steps_min": by_lr.min(),
            "steps_max": by_lr.max(),
            "reached": by_lr.apply(lambda s: int(np.isfinite(s).sum())),
            "seeds": by_lr.size(),
        }
    ).reset_index()
    best = table.loc[table.groupby("batch_size")["steps"].idxmin()].reset_index(drop=True)
    best["steps"] = best["steps"].where(np.isfinite(best["steps"]))
    return best.assign(examples=best["batch_size"] * best["steps"])


def seed_steps(scaling: Scaling, target: int) -> pd.DataFrame:
    """Per (batch size, seed): the fewest steps to the target over the rates (NaN: none)."""
    runs = _steps(scaling.runs, target)
    best = runs.groupby(["batch_size", "seed"])["steps"].min().reset_index()
    best["steps"] = best["steps"].where(np.isfinite(best["steps"]))
    return best


@dataclass(frozen=True)
class Fit:
    """The hyperbola of one target: fitted to the medians and to each seed.

    Attributes
    ----------
    median : Hyperbola
    seeds : list of Hyperbola
    """

    median: Hyperbola
    seeds: list[Hyperbola]

    @property
    def b_crit_seeds(self) -> np.ndarray:
        return np.array([h.b_crit for h in self.seeds])


def fit(scaling: Scaling, target: int) -> Fit:
    """The hyperbola fitted to ``best_steps`` and to each seed's ``seed_steps``."""
    best = best_steps(scaling, target)
    per_seed = seed_steps(scaling, target)
    return Fit(
        median=fit_hyperbola(best["batch_size"], best["steps"]),
        seeds=[fit_hyperbola(g["batch_size"], g["steps"]) for _, g in per_seed.groupby("seed")],
    )


def gd_best(scaling: Scaling, target: int) -> tuple[float, float]:
    """(lr, steps) of exact gradient descent at its best rate of the grid for the target."""
    column = target_columns(target + 1)[target]
    row = scaling.gd.loc[scaling.gd[column].idxmin()]
    return float(row["lr"]), float(row[column])


def eps_opt(batch_size, scales: dict) -> np.ndarray:
    """McCandlish's best step at batch size B: eps_max / (1 + B_noise / B)."""
    return scales["eps_max"] / (1 + scales["b_noise"] / np.asarray(batch_size, dtype=float))


def lr_table(scaling: Scaling) -> pd.DataFrame:
    """Per batch size: the best lr for each target (``lr_<i>``), eps_opt(B) at W = 0 and at
    each target on the gradient-descent trajectory (``eps_opt_0``, ``eps_opt_<i>``), the
    linear-scaling rule from B = 1 for the last target, and the ceiling 2 / lambda_max."""
    record = scaling.records[GD]
    n = len(scaling.targets)
    table = None
    for i in range(n):
        best = best_steps(scaling, i)[["batch_size", "lr"]].rename(columns={"lr": f"lr_{i}"})
        table = best if table is None else table.merge(best, on="batch_size")
    B = table["batch_size"].to_numpy(dtype=float)
    table["eps_opt_start"] = eps_opt(B, record["at_zero"])
    for i, scales in enumerate(record["at_target"]):
        table[f"eps_opt_{i}"] = eps_opt(B, scales)
    smallest = table.iloc[0]
    table["linear"] = smallest[f"lr_{n - 1}"] * B / smallest["batch_size"]
    table["ceiling"] = record["lr_max"]
    return table


def floor_table(scaling: Scaling, seeds: pd.DataFrame) -> pd.DataFrame:
    """Every configuration of ``scaling.floor`` some seed of which did not diverge: the
    measured excess over gradient descent (mean of those seeds' final training losses minus
    L(W_t^GD)), its standard error, the seeds, lr x mean ||x||^2, the three predictions and
    whether it is resolved (above twice the magnitude of the most negative measured excess)
    and the verdict on each prediction there (``_verdict``; "unresolved" elsewhere).

    ``seeds`` holds the per-seed rows of the Task 3 grid and the stability sweep (columns
    task, cell, status, final_train_loss, diverged_at), as ``inputs.task_results`` reads them.
    """
    loss_star = scaling.records[GD]["loss_star"]
    ok = seeds[(seeds["status"] == "ok") & seeds["diverged_at"].isna()]
    measured = ok.groupby(["task", "cell"])["final_train_loss"].agg(["mean", "std", "size"])
    table = scaling.floor.merge(measured.reset_index(), on=["task", "cell"])
    table["measured"] = table["mean"] - loss_star - table["gd_excess"]
    table["se"] = table["std"] / np.sqrt(table["size"])
    table["lr_x2"] = table["lr"] * scaling.records["floor"]["mean_x2"]
    table = table.rename(columns={"size": "n_seeds"}).drop(columns=["mean", "std"])
    # An excess over gradient descent is >= 0 in expectation; the most negative measured one
    # shows how small an excess the float32 runs resolve (twice it counts as unresolved).
    resolution = 2 * max(0.0, -float(table["measured"].min())) if len(table) else 0.0
    table["resolved"] = np.maximum(table["measured"].abs(), table["predicted"]) > resolution
    for name in PREDICTIONS:
        verdict = _verdict(table[name], table["measured"], table["se"], table["n_seeds"])
        table[f"{name}_verdict"] = verdict.where(table["resolved"], "unresolved")
    return table.sort_values(["batch_size", "lr", "task"]).reset_index(drop=True)


def _verdict(
    predicted: pd.Series, measured: pd.Series, se: pd.Series, n_seeds: pd.Series
) -> pd.Series:
    """ "holds" within ``FLOOR_FACTOR`` of the measured excess; else "fails" outside the 95 %
    confidence interval of the seeds' mean, "undecided" inside it."""
    ratio = predicted / measured
    close = (ratio <= FLOOR_FACTOR) & (ratio >= 1 / FLOOR_FACTOR) & (measured > 0)
    inside = (predicted - measured).abs() <= n_seeds.map(t975) * se.fillna(0)
    verdict = np.where(close, "holds", np.where(inside, "undecided", "fails"))
    return pd.Series(verdict, index=predicted.index)


def format_floor(table: pd.DataFrame) -> pd.DataFrame:
    """``floor_table`` for display: excesses in units of 1e-3."""
    rows = []
    for row in table.itertuples():
        rows.append(
            {
                "source": row.task,
                "lr": f"{row.lr:g}",
                "batch size": row.batch_size,
                "iterations": row.iterations,
                "lr mean||x||²": f"{row.lr_x2:.2f}",
                "measured (1e-3)": f"{1e3 * row.measured:.3f} ± {1e3 * row.se:.3f}"
                + ("" if row.resolved else " (unresolved)"),
                "first order": _e3(row.first_order, row.first_order_verdict),
                "stationary": _e3(row.stationary, row.stationary_verdict),
                "after t steps": _e3(row.predicted, row.predicted_verdict),
            }
        )
    return pd.DataFrame(rows).set_index(["source", "lr", "batch size"])


def _e3(value: float, verdict: str) -> str:
    text = "unbounded" if not math.isfinite(value) else f"{1e3 * value:.3f}"
    return text + {"fails": " ✗", "undecided": " ?"}.get(verdict, "")


def format_best(scaling: Scaling) -> pd.DataFrame:
    """Per batch size and target: the best lr, its median steps (seed range) and examples."""
    frames = []
    for i, target in enumerate(scaling.targets):
        best = best_steps(scaling, i)
        frames.append(
            pd.DataFrame(
                {
                    "batch size": best["batch_size"],
                    "target": f"{target:g}",
                    "best lr": best["lr"].map(lambda v: f"{v:.3g}"),
                    "steps (median)": best["steps"].map(_count),
                    "seed range": [
                        f"{_count(a)}–{_count(b)}"
                        for a, b in zip(best["steps_min"], best["steps_max"], strict=True)
                    ],
                    "examples": best["examples"].map(_count),
                }
            )
        )
    table = pd.concat(frames).pivot(index="batch size", columns="target")
    return table.swaplevel(axis=1).sort_index(axis=1, level=0, sort_remaining=False)


def _count(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{int(value):,}"


def _halving_until(best: pd.DataFrame) -> int | None:
    """The largest B up to which every step up the batch sizes divided the steps by at least
    ``DOUBLING_GAIN`` per doubling (per factor 2 of B, for grids with larger steps)."""
    steps = best.set_index("batch_size")["steps"]
    sizes = list(steps.index)
    last = None
    for small, large in zip(sizes, sizes[1:], strict=False):
        gain = (steps[small] / steps[large]) ** (1 / math.log2(large / small))
        if not gain >= DOUBLING_GAIN:
            break
        last = int(large)
    return last


def _linear_until(table: pd.DataFrame, column: str) -> int | None:
    """The largest B up to which the best lr stays within a factor 2 of the linear rule."""
    last = None
    for row in table.itertuples():
        if 0.5 <= getattr(row, column) / row.linear <= 2:
            last = int(row.batch_size)
        else:
            break
    return last


def _run_wall(build: Path, cells: int) -> pd.Series | None:
    log = read_run_log(build)
    if log.empty:
        return None
    whole = log[(log["tasks"] == GROUP) & (log["cells"] == cells) & (log["ok"] == cells)]
    return None if whole.empty else whole.iloc[-1]


def scaling_facts(
    scaling: Scaling,
    floor: pd.DataFrame | None = None,
    *,
    dataset: str,
    build: Path | None = None,
) -> ScalingFacts:
    """The facts of the discussion from the experiment and its ``floor_table`` (without
    one, the noise-floor facts are empty: the Task 4 summary needs none)."""
    record = scaling.records[GD]
    floor_record = scaling.records["floor"]
    batch_sizes = sorted(int(b) for b in scaling.runs["batch_size"].unique())
    lrs = lr_table(scaling)
    n = len(scaling.targets)
    targets = []
    for i, excess in enumerate(scaling.targets):
        best = best_steps(scaling, i)
        f = fit(scaling, i)
        per_seed = f.b_crit_seeds
        gd_lr, gd_steps = gd_best(scaling, i)
        at = {k: _finite(v) for k, v in record["at_target"][i].items()}
        b_floor = float(best["lr"].iloc[-1]) * floor_record["tr_sigma_star"] / (4 * excess)
        targets.append(
            TargetFacts(
                excess=excess,
                loss=record["loss_star"] + excess,
                s_min=f.median.s_min,
                e_min=f.median.e_min,
                b_crit=f.median.b_crit,
                b_crit_mean=float(per_seed.mean()),
                b_crit_sd=float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None,
                b_crit_low=float(per_seed.min()),
                b_crit_high=float(per_seed.max()),
                n_seeds=len(per_seed),
                gd_steps=gd_steps,
                gd_lr=gd_lr,
                b_noise=at["b_noise"],
                b_simple=at["b_simple"],
                eps_max=at["eps_max"],
                b_floor=b_floor,
                halving_until=_halving_until(best),
                best_lr_small=float(lrs[f"lr_{i}"].iloc[0]),
                best_lr_large=float(lrs[f"lr_{i}"].iloc[-1]),
                eps_opt_small=float(lrs[f"eps_opt_{i}"].iloc[0]),
                eps_opt_large=float(lrs[f"eps_opt_{i}"].iloc[-1]),
                noise_ratio=_ratio(at["b_noise"], f.median.b_crit),
                simple_ratio=_ratio(at["b_simple"], f.median.b_crit),
                eps_max_ratio=_ratio(at["eps_max"], record["lr_max"]),
                floor_ratio=f.median.b_crit / b_floor,
                lr_large_ratio=float(lrs[f"lr_{i}"].iloc[-1]) / record["lr_max"],
                start_lr_low=float((lrs[f"lr_{i}"] / lrs["eps_opt_start"]).min()),
                start_lr_high=float((lrs[f"lr_{i}"] / lrs["eps_opt_start"]).max()),
            )
        )
    if floor is None:
        columns = ["resolved", *(f"{name}_verdict" for name in PREDICTIONS)]
        floor = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    run = None if build is None else _run_wall(build, len(scaling.records))
    return ScalingFacts(
        dataset=dataset_name(dataset),
        batch_sizes=batch_sizes,
        n_seeds=int(scaling.runs["seed"].nunique()),
        lambda_max=record["lambda_max"],
        lr_max=record["lr_max"],
        loss_star=record["loss_star"],
        tr_sigma_star=floor_record["tr_sigma_star"],
        b_noise_start=record["at_zero"]["b_noise"],
        b_simple_start=record["at_zero"]["b_simple"],
        eps_max_start=record["at_zero"]["eps_max"],
        eps_max_start_ratio=record["at_zero"]["eps_max"] / record["lr_max"],
        eps_opt_start_small=float(lrs["eps_opt_start"].iloc[0]),
        targets=targets,
        linear_until=_linear_until(lrs, f"lr_{n - 1}"),
        floor_rows=int(floor["resolved"].sum()),
        floor_unresolved=int((~floor["resolved"]).sum()),
        floor_verdicts={
            name: {v: int((floor[f"{name}_verdict"] == v).sum()) for v in VERDICTS}
            for name in PREDICTIONS
        },
        floor_fails={name: _fails(floor, name) for name in PREDICTIONS},
        runs=len(scaling.runs),
        steps=int(scaling.runs["steps_run"].sum()),
        job_seconds=scaling.wall_seconds,
        wall_seconds=None if run is None else float(run["wall_seconds"]),
        jobs=None if run is None else int(run["jobs"]),
        eps_max_capped=all(t.eps_max_ratio is not None and t.eps_max_ratio > 1 for t in targets),
        noise_fails=all(t.noise_ratio is None or not 0.5 <= t.noise_ratio <= 2 for t in targets),
        doubling_gain=DOUBLING_GAIN,
        floor_factor=FLOOR_FACTOR,
    )


def _fails(floor: pd.DataFrame, name: str) -> list[dict]:
    rows = floor[floor[f"{name}_verdict"] == "fails"]
    return [
        {
            "task": r.task,
            "lr": float(r.lr),
            "batch_size": int(r.batch_size),
            "ratio": _finite(getattr(r, name) / r.measured) if r.measured > 0 else None,
            "lr_x2": float(r.lr_x2),
        }
        for r in rows.itertuples()
    ]


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _ratio(value: float | None, by: float) -> float | None:
    return None if value is None else value / by


def render(facts: ScalingFacts, part: str = "law") -> str:
    """The discussion ``part`` ("law", "floor", "cost", or "task4": the summary that Task 4
    quotes) as Markdown, from the template ``scaling_<part>.md.j2``."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    return narrative.render(f"scaling_{part}", facts)


def _figure(ncols: int, width: float = 11.0, height: float = 4.2) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def steps_figure(scaling: Scaling) -> Figure:
    """Left: steps to each target against B (log-log), the medians with the seeds' range,
    the fitted hyperbola, perfect scaling S_min B_crit / B and gradient descent's steps.
    Right: examples against steps, with the hyperbola."""
    fig, (left, right) = _figure(2)
    for i, target in enumerate(scaling.targets):
        color = f"C{i}"
        best = best_steps(scaling, i)
        h = fit(scaling, i).median
        B = best["batch_size"].to_numpy(dtype=float)
        grid = np.geomspace(B.min(), B.max(), 200)
        err = [best["steps"] - best["steps_min"], best["steps_max"] - best["steps"]]
        left.errorbar(B, best["steps"], yerr=err, fmt="o", color=color, ms=4,
                      label=f"target excess {target:g}")  # fmt: skip
        left.plot(grid, h.steps(grid), color=color, lw=1,
                  label=f"fit: S_min {h.s_min:.0f}, B_crit {h.b_crit:.0f}")  # fmt: skip
        left.plot(grid, h.e_min / grid, color=color, lw=0.8, ls=":")
        left.axhline(gd_best(scaling, i)[1], color=color, lw=0.8, ls="--")
        E = np.geomspace(1.02 * h.e_min, 50 * h.e_min, 200)
        right.plot(best["steps"], best["examples"], "o", color=color, ms=4)
        right.plot(h.s_min * E / (E - h.e_min), E, color=color, lw=1)
        right.axvline(h.s_min, color=color, lw=0.6, ls="--")
        right.axhline(h.e_min, color=color, lw=0.6, ls="--")
    left.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="steps to target",
             title="steps (dotted: perfect scaling; dashed: exact full batch)")  # fmt: skip
    left.legend(fontsize=8)
    right.set(xscale="log", yscale="log", xlabel="steps S", ylabel="examples E = B S",
              title="(S/S_min - 1)(E/E_min - 1) = 1")  # fmt: skip
    return fig


def lr_figure(scaling: Scaling) -> Figure:
    """The best lr against B for each target, eps_opt(B) at W = 0 and at each target, the
    linear-scaling line and the ceiling 2 / lambda_max."""
    fig, (ax,) = _figure(1, width=7.5, height=4.5)
    table = lr_table(scaling)
    B = table["batch_size"]
    for i, target in enumerate(scaling.targets):
        ax.plot(B, table[f"lr_{i}"], "o-", color=f"C{i}", ms=4, label=f"best lr, target {target:g}")
        ax.plot(
            B,
            table[f"eps_opt_{i}"],
            color=f"C{i}",
            ls=":",
            label=f"eps_opt(B) at target {target:g}",
        )
    ax.plot(B, table["eps_opt_start"], color="0.4", ls=":", label="eps_opt(B) at W = 0")
    ax.plot(B, table["linear"], color="0.6", ls="-.", label="linear scaling from B = 1")
    ax.axhline(table["ceiling"].iloc[0], color="C3", ls="--", label=r"$2/\lambda_{\max}$")
    lowest = table[[f"lr_{i}" for i in range(len(scaling.targets))]].min().min()
    ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="learning rate",
           ylim=(lowest / 5, 4 * table["ceiling"].iloc[0]))  # fmt: skip
    ax.legend(fontsize=7)
    return fig


def noise_figure(scaling: Scaling) -> Figure:
    """B_noise, B_simple and eps_max along exact gradient descent, against the excess loss."""
    fig, (left, right) = _figure(2)
    t = scaling.trajectory[scaling.trajectory["grad_norm"] > 0]
    left.plot(t["excess"], t["b_noise"], "o-", ms=3, label="B_noise = tr(HΣ) / GᵀHG")
    left.plot(t["excess"], t["b_simple"], "s-", ms=3, label="B_simple = tr Σ / |G|²")
    right.plot(t["excess"], t["eps_max"], "o-", ms=3, color="C2", label="eps_max = |G|² / GᵀHG")
    right.axhline(scaling.records[GD]["lr_max"], color="C3", ls="--", label=r"$2/\lambda_{\max}$")
    for i, target in enumerate(scaling.targets):
        for ax in (left, right):
            ax.axvline(target, color="0.5", lw=0.7, ls=":")
        left.plot([target], [fit(scaling, i).median.b_crit], "*", ms=12, color=f"C{i + 3}",
                  label=f"measured B_crit, target {target:g}")  # fmt: skip
    lr = scaling.records[GD]["trajectory_lr"]
    for ax in (left, right):
        ax.set(xscale="log", yscale="log", xlabel="excess training loss (gradient descent)")
        ax.xaxis.set_minor_formatter(NullFormatter())  # the labelled decades only
        ax.invert_xaxis()
        ax.legend(fontsize=8)
    left.set(ylabel="batch size", title=f"noise scales along gradient descent, lr {lr:.3g}")
    right.set(ylabel="learning rate", title="the best step along -G")
    return fig


def floor_figure(table: pd.DataFrame) -> Figure:
    """Predicted against measured excess over gradient descent, one point per configuration
    (the measured excess must be positive to be drawn on the log axes)."""
    fig, (ax,) = _figure(1, width=6.5, height=5.0)
    shown = table[(table["measured"] > 0)]
    markers = {"first_order": "x", "stationary": "s", "predicted": "o"}
    labels = {
        "first_order": "first order",
        "stationary": "stationary",
        "predicted": "after t steps",
    }
    for name in PREDICTIONS:
        finite = shown[np.isfinite(shown[name])]
        ax.scatter(finite["measured"], finite[name], marker=markers[name], s=18,
                   label=labels[name], alpha=0.8)  # fmt: skip
    if len(shown):
        low, high = shown["measured"].min() / 2, shown["measured"].max() * 2
        ax.plot([low, high], [low, high], color="0.4", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="measured excess over gradient descent",
           ylabel="predicted", title="noise floor")  # fmt: skip
    ax.legend(fontsize=8)
    return fig
