"""The scaling-law section (notebooks/08_scaling_law.ipynb): per target excess, the steps at
each batch size's best rate, measured (``best_steps``) and predicted (``predicted_best``), the
hyperbola S = S_min + E_min / B fitted to them (``fit``), McCandlish et al.'s noise scales, and
the noise floor (``floor_table``, against the Task 3 grid and the stability sweep).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from linmnist.engine.scaling import Hyperbola, fit_hyperbola, floor_ratio, target_columns
from linmnist.experiments.paths import results_dir
from linmnist.experiments.scaling import (
    FLOOR,
    GD,
    GROUP,
    PREDICTED,
    Scaling,
    load_scaling,
    scaling_settings,
)
from linmnist.report import captions
from linmnist.report.inputs import config_path, require_results, require_tasks, task_results
from linmnist.report.tables import significant
from linmnist.report.uncertainty import ci95, t975

# A prediction of the noise floor "holds" when within this factor of the measured excess...
FLOOR_FACTOR = 1.25
# ... or within the 95 % confidence interval of the seeds' mean (Student's t; with three seeds
# the standard error itself is uncertain: 40 seeds of stability lr 0.000316, B = 1 gave
# 3.26 +- 0.27 e-3 where its three gave 4.55 +- 0.59 e-3, against 3.07 e-3 predicted).
# Doubling the batch size "still pays" while it divides the steps by at least this.
DOUBLING_GAIN = 1.5
PREDICTIONS = ("first_order", "stationary", "predicted")
VERDICTS = ("holds", "undecided", "fails")
# The tasks whose configurations the noise-floor table measures.
FLOOR_SOURCES = ("grid", "stability")
DPI = 110
# The noise scales as readers write them (tables: Unicode; figures: mathtext).
NOISE_NAMES = {"b_noise": "Bₙₒᵢₛₑ", "b_simple": "Bₛᵢₘₚₗₑ"}
NOISE_MATH = {"b_noise": r"$B_{\mathrm{noise}}$", "b_simple": r"$B_{\mathrm{simple}}$"}


def read_scaling(
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    build: str | Path | None = None,
) -> Scaling:
    """The scaling products of a build, or ``MissingResults`` naming the command."""
    require_tasks((GROUP,), dataset=dataset, profile=profile, config=config)
    settings = scaling_settings(config_path(config), profile=profile)
    stems = [f"bs{b}" for b in settings["batch_size"]] + [GD, FLOOR, PREDICTED]
    records = {f"{GROUP}/{stem}": "the scaling experiment's results" for stem in stems}
    path = require_results(
        records, dataset=dataset, profile=profile, config=config, build=build, target=GROUP
    )
    return load_scaling(results_dir(path) / GROUP, settings["batch_size"])


def _steps(frame: pd.DataFrame, target: int) -> pd.DataFrame:
    """``frame`` with ``steps``, its steps to the target (inf where it is not reached)."""
    return frame.assign(steps=frame[target_columns(target + 1)[target]].fillna(np.inf))


def _fewest(table: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """The row of each ``by`` group with the fewest ``steps`` (NaN: none reached)."""
    best = table.loc[table.groupby(by)["steps"].idxmin()].reset_index(drop=True)
    best["steps"] = best["steps"].where(np.isfinite(best["steps"]))
    return best


def best_steps(scaling: Scaling, target: int) -> pd.DataFrame:
    """Per batch size, the best lr by median steps: steps, min, max, examples, seeds."""
    runs = _steps(scaling.runs, target)
    runs = runs.assign(reached=np.isfinite(runs["steps"]).astype(int))
    stats = {"steps": ("steps", "median"), "steps_min": ("steps", "min")}
    stats |= {
        "steps_max": ("steps", "max"),
        "reached": ("reached", "sum"),
        "seeds": ("steps", "size"),
    }
    best = _fewest(runs.groupby(["batch_size", "lr"]).agg(**stats).reset_index(), "batch_size")
    return best.assign(examples=best["batch_size"] * best["steps"])


def predicted_best(scaling: Scaling, target: int) -> pd.DataFrame:
    """Per batch size: the rate with the fewest predicted steps, and those steps."""
    return _fewest(_steps(scaling.predicted, target), "batch_size")[["batch_size", "lr", "steps"]]


def predicted_fit(scaling: Scaling, target: int) -> Hyperbola:
    """The hyperbola S = S_min + E_min / B fitted to ``predicted_best``."""
    best = predicted_best(scaling, target)
    return fit_hyperbola(best["batch_size"], best["steps"])


def steps_agreement(scaling: Scaling) -> pd.DataFrame:
    """Per target and batch size: ``measured`` and ``predicted`` steps and their ``ratio``."""
    frames = []
    for i, target in enumerate(scaling.targets):
        measured = best_steps(scaling, i)[["batch_size", "lr", "steps"]]
        names = {"lr": "predicted_lr", "steps": "predicted"}
        predicted = predicted_best(scaling, i).rename(columns=names)
        both = measured.rename(columns={"steps": "measured"}).merge(predicted, on="batch_size")
        frames.append(both.assign(target=target, ratio=both["predicted"] / both["measured"]))
    return pd.concat(frames, ignore_index=True)


def format_agreement(table: pd.DataFrame) -> pd.DataFrame:
    """``steps_agreement`` for display, batch size x target: "145 / 217 (1.5×)"."""
    rows = zip(table["measured"], table["predicted"], table["ratio"], strict=True)
    text = [f"{_count(m)} / {_count(p)}" + (f" ({significant(r, 2)}×)" if math.isfinite(r) else "")
            for m, p, r in rows]  # fmt: skip
    shown = table.assign(text=text, column=table["target"].map(lambda v: f"excess {v:g}"))
    wide = shown.pivot(index="batch_size", columns="column", values="text")
    wide = wide[[f"excess {v:g}" for v in table["target"].unique()]]
    wide.index.name, wide.columns.name = "batch size", None
    return wide


@dataclass(frozen=True)
class Fit:
    """The hyperbola of one target: fitted to the medians and to each seed."""

    median: Hyperbola
    seeds: list[Hyperbola]

    @property
    def b_crit_seeds(self) -> np.ndarray:
        return np.array([h.b_crit for h in self.seeds])


def fit(scaling: Scaling, target: int) -> Fit:
    """The hyperbola fitted to ``best_steps`` and to each seed's fewest steps over the rates."""
    best = best_steps(scaling, target)
    per_seed = _fewest(_steps(scaling.runs, target), ["batch_size", "seed"])
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


def path_average(scaling: Scaling, target: int) -> dict[str, float]:
    """``b_noise`` and ``b_simple`` averaged over gradient descent's ``steps`` to the target."""
    end = scaling.records[GD]["at_target"][target]
    points = scaling.trajectory[scaling.trajectory["step"] < end["step"]]
    steps = np.r_[points["step"].to_numpy(dtype=float), end["step"]]
    t = np.arange(int(end["step"]))
    averages = {}
    for name in ("b_noise", "b_simple"):
        log_values = np.log(np.r_[points[name].to_numpy(dtype=float), end[name]])
        averages[name] = float(np.exp(np.interp(t, steps, log_values)).mean())
    return {**averages, "steps": int(end["step"])}


def noise_table(scaling: Scaling) -> pd.DataFrame:
    """Per target: the measured B_crit beside B_noise and B_simple, and their ratios."""
    record = scaling.records[GD]
    rows = []
    for i, excess in enumerate(scaling.targets):
        f = fit(scaling, i)
        path = path_average(scaling, i)
        row = {"target": excess, "b_crit": f.median.b_crit,
               "b_crit_mean": float(f.b_crit_seeds.mean()), "b_crit_ci": ci95(f.b_crit_seeds),
               "gd_steps": path["steps"]}  # fmt: skip
        for name in ("b_noise", "b_simple"):
            row[f"{name}_zero"] = record["at_zero"][name]
            row[f"{name}_path"] = path[name]
            row[f"{name}_target"] = record["at_target"][i][name]
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in [c for c in table.columns if c.startswith(("b_noise_", "b_simple_"))]:
        table[f"{column}_ratio"] = table[column] / table["b_crit"]
    return table


def format_noise(table: pd.DataFrame) -> pd.DataFrame:
    """``noise_table`` for display: one row per target, headers in words."""
    shown = pd.DataFrame({"target excess": table["target"].map(lambda v: f"{v:g}")})
    shown["critical batch size (fit to the medians)"] = table["b_crit"].map(significant)
    shown["critical batch size (per-seed fits)"] = [
        f"{significant(m)} ± {significant(c, 2)}" if math.isfinite(c) else significant(m)
        for m, c in zip(table["b_crit_mean"], table["b_crit_ci"], strict=True)
    ]
    for name, label in NOISE_NAMES.items():
        for where, words in (("zero", "at W = 0"), ("path", "path average"),
                             ("target", "at the target")):  # fmt: skip
            pairs = zip(table[f"{name}_{where}"], table[f"{name}_{where}_ratio"], strict=True)
            shown[f"{label} {words}"] = [
                f"{significant(v)} ({significant(r, 2)}×)" for v, r in pairs
            ]
    return shown.set_index("target excess")


def floor_account(scaling: Scaling) -> pd.DataFrame:
    """Per target: B_crit beside B_floor, their ``ratio`` and the ``model``'s."""
    tr_sigma = scaling.records[FLOOR]["tr_sigma_star"]
    record = scaling.records[GD]
    start = record["loss_zero"] - record["loss_star"]
    rows = []
    for i, excess in enumerate(scaling.targets):
        lr_large = float(best_steps(scaling, i)["lr"].iloc[-1])
        b_floor = lr_large * tr_sigma / (4 * excess)
        b_crit = fit(scaling, i).median.b_crit
        rows.append({"target": excess, "lr_large": lr_large, "b_floor": b_floor,
                     "b_crit": b_crit, "ratio": b_crit / b_floor,
                     "model": floor_ratio(start, excess)})  # fmt: skip
    return pd.DataFrame(rows)


def floor_account_holds(account: pd.DataFrame) -> bool:
    """Whether B_crit / B_floor varies less than half as much as B_crit over the targets."""
    spread = account["ratio"].max() / account["ratio"].min()
    growth = account["b_crit"].max() / account["b_crit"].min()
    return bool(spread < growth / 2)


def format_floor_account(table: pd.DataFrame) -> pd.DataFrame:
    """``floor_account`` for display, one row per target, headers in words."""
    return pd.DataFrame(
        {
            "target excess": table["target"].map(lambda v: f"{v:g}"),
            "best lr at the largest batch": table["lr_large"].map(significant),
            "noise-floor batch size": table["b_floor"].map(significant),
            "critical batch size": table["b_crit"].map(significant),
            "critical / noise-floor": table["ratio"].map(lambda v: significant(v, 2)),
            "derived ratio (one slow direction)": table["model"].map(lambda v: significant(v, 2)),
        }
    ).set_index("target excess")


def lr_ratio(scaling: Scaling, target: int) -> pd.Series:
    """Per batch size: the measured best lr for the target over eps_opt(B) at W = 0."""
    table = lr_table(scaling).set_index("batch_size")
    return table[f"lr_{target}"] / table["eps_opt_start"]


def lr_table(scaling: Scaling) -> pd.DataFrame:
    """Per batch size: the best lr per target, eps_opt(B), linear scaling and the ceiling."""
    record = scaling.records[GD]
    n = len(scaling.targets)
    rates = [best_steps(scaling, i).set_index("batch_size")["lr"] for i in range(n)]
    table = pd.concat(rates, axis=1, keys=[f"lr_{i}" for i in range(n)]).reset_index()
    B = table["batch_size"].to_numpy(dtype=float)
    table["eps_opt_start"] = eps_opt(B, record["at_zero"])
    for i, scales in enumerate(record["at_target"]):
        table[f"eps_opt_{i}"] = eps_opt(B, scales)
    smallest = table.iloc[0]
    table["linear"] = smallest[f"lr_{n - 1}"] * B / smallest["batch_size"]
    table["ceiling"] = record["lr_max"]
    return table


def floor_table(scaling: Scaling, seeds: pd.DataFrame) -> pd.DataFrame:
    """Every configuration of ``scaling.floor`` whose seeds (``seeds``: the grid's and the sweep's)
    were all stable: ``measured`` and ``se``, ``loss_difference`` and ``loss_se``, lr_x2, and each
    prediction with its verdict."""
    loss_star = scaling.records[GD]["loss_star"]
    ran = seeds[seeds["status"] == "ok"]
    stable = ran["outcome"] == "stable" if "outcome" in ran else ran["diverged_at"].isna()
    whole = stable.groupby([ran["task"], ran["cell"]]).transform("all")
    groups = ran[whole].groupby(["task", "cell"])
    measured = groups["final_excess"].agg(["mean", "std", "size"])
    losses = groups["final_train_loss"].agg(["mean", "std"]).add_prefix("loss_")
    table = scaling.floor.merge(measured.join(losses).reset_index(), on=["task", "cell"])
    table["measured"] = table["mean"]
    table["se"] = table["std"] / np.sqrt(table["size"])
    table["loss_difference"] = table["loss_mean"] - loss_star - table["gd_excess"]
    table["loss_se"] = table["loss_std"] / np.sqrt(table["size"])
    table["lr_x2"] = table["lr"] * scaling.records["floor"]["mean_x2"]
    table = table.rename(columns={"size": "n_seeds"})
    table = table.drop(columns=["mean", "std", "loss_mean", "loss_std"])
    for name in PREDICTIONS:
        table[f"{name}_verdict"] = _verdict(
            table[name], table["measured"], table["se"], table["n_seeds"]
        )
    return table.sort_values(["batch_size", "lr", "task"]).reset_index(drop=True)


def read_floor(
    scaling: Scaling,
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    build: str | Path | None = None,
) -> pd.DataFrame:
    """``floor_table`` of a build: its Task 3 grid and stability sweep against ``scaling``."""
    require_tasks(FLOOR_SOURCES, dataset=dataset, profile=profile, config=config)
    seeds = [
        task_results(task, dataset=dataset, profile=profile, config=config, build=build).seeds
        for task in FLOOR_SOURCES
    ]
    return floor_table(scaling, pd.concat(seeds, ignore_index=True))


def floor_appendix(
    dataset: str = "mnist",
    profile: str | None = None,
    config: str | Path | None = None,
    build: str | Path | None = None,
) -> captions.Captioned:
    """The full noise-floor table of a build, for the appendix (``tab-scaling-floor-full``)."""
    scaling = read_scaling(dataset, profile, config, build)
    floor = read_floor(scaling, dataset, profile, config, build)
    return captions.table(
        format_floor(floor), label="tab-scaling-floor-full", caption=floor_caption()
    )


def _verdict(
    predicted: pd.Series, measured: pd.Series, se: pd.Series, n_seeds: pd.Series
) -> pd.Series:
    """ "holds" within ``FLOOR_FACTOR``; else "fails" outside the 95 % CI, "undecided" inside."""
    ratio = predicted / measured
    close = (ratio <= FLOOR_FACTOR) & (ratio >= 1 / FLOOR_FACTOR) & (measured > 0)
    inside = (predicted - measured).abs() <= n_seeds.map(t975) * se.fillna(0)
    verdict = np.where(close, "holds", np.where(inside, "undecided", "fails"))
    return pd.Series(verdict, index=predicted.index)


def decisive(table: pd.DataFrame, factor: float = 100.0) -> pd.Series:
    """Whether a prediction off by ``factor`` either way would fail, not be undecided."""
    half = table["n_seeds"].map(t975) * table["se"].fillna(np.inf)
    return half < (1 - 1 / factor) * table["measured"]


# The marks of the full noise-floor table (``format_floor``), defined in its caption.
FLOOR_MARKS = {"fails": " ✗", "undecided": " ?"}
PREDICTION_NAMES = {"first_order": "first order", "stationary": "stationary",
                    "predicted": "after t steps"}  # fmt: skip


def floor_caption(n_seeds: int | None = None) -> str:
    """The caption of ``format_floor``: what is shown and what each mark means."""
    seeds = "the seeds" if n_seeds is None else f"{n_seeds} seeds"
    return (
        "The excess of SGD's final training loss over gradient descent's at the same learning "
        "rate after the same iterations, for every configuration of the Task 3 grid and the "
        f"stability sweep whose every seed was stable: measured (mean ± 95 % CI over {seeds} "
        "of ½ tr(D S Dᵀ), D the run's deviation from gradient descent) and predicted, in "
        "units of 10⁻³. ✗: the prediction is off by more than a factor "
        f"{FLOOR_FACTOR} and outside the measured 95 % CI; ?: off by more than that factor "
        "but inside the CI (undecided); no mark: within the factor (holds); "
        '"unbounded": no stationary spread exists in the model.'
    )


def format_floor(table: pd.DataFrame) -> pd.DataFrame:
    """``floor_table`` for display (the appendix's full table): excesses in units of 1e-3."""
    rows = []
    for row in table.itertuples():
        ci = t975(row.n_seeds) * row.se if row.n_seeds > 1 else math.nan
        rows.append(
            {
                "source": row.task,
                "lr": f"{row.lr:g}",
                "batch size": row.batch_size,
                "iterations": row.iterations,
                "lr · mean‖x‖²": significant(row.lr_x2),
                "measured (10⁻³)": significant(1e3 * row.measured)
                + ("" if math.isnan(ci) else f" ± {significant(1e3 * ci, 2)}"),
                **{
                    f"{words} (10⁻³)": _e3(getattr(row, name), getattr(row, f"{name}_verdict"))
                    for name, words in PREDICTION_NAMES.items()
                },
            }
        )
    return pd.DataFrame(rows).set_index(["source", "lr", "batch size"])


def _e3(value: float, verdict: str) -> str:
    text = "unbounded" if not math.isfinite(value) else significant(1e3 * value)
    return text + FLOOR_MARKS.get(verdict, "")


def floor_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per batch size and prediction: how many configurations hold, are undecided, fail."""
    rows = [
        {"batch size": int(batch_size), "prediction": words}
        | {v: int((group[f"{name}_verdict"] == v).sum()) for v in VERDICTS}
        for batch_size, group in table.groupby("batch_size")
        for name, words in PREDICTION_NAMES.items()
    ]
    return pd.DataFrame(rows).set_index(["batch size", "prediction"])


@dataclass(frozen=True)
class ExcessSign:
    """The negative loss differences of ``floor_table`` (the expected excess never is)."""

    negative: int  # configurations whose loss difference is below zero
    consistent: int  # of those, how many have zero inside their 95 % CI (or a single seed)
    batch_sizes: list[int]  # their batch sizes
    lowest: float  # the most negative loss difference (0 when none is)
    total: int  # configurations measured
    # The median of the loss difference's standard error over the measured excess's (``se``):
    # the spread the linear term adds.
    spread: float


def excess_sign(table: pd.DataFrame) -> ExcessSign:
    """``ExcessSign`` of ``floor_table`` (the expected excess over gradient descent is >= 0)."""
    negative = table[table["loss_difference"] < 0]
    half = negative["n_seeds"].map(t975) * negative["loss_se"]
    consistent = ~(negative["loss_difference"].abs() > half)  # NaN half-width (one seed) counts
    ratio = (table["loss_se"] / table["se"]).replace([np.inf, -np.inf], np.nan).dropna()
    return ExcessSign(
        negative=len(negative),
        consistent=int(consistent.sum()),
        batch_sizes=sorted(int(b) for b in negative["batch_size"].unique()),
        lowest=float(min(0.0, table["loss_difference"].min())) if len(table) else 0.0,
        total=len(table),
        spread=float(ratio.median()) if len(ratio) else math.nan,
    )


def format_fit(scaling: Scaling) -> pd.DataFrame:
    """Per target: the fitted hyperbola, per-seed B_crit, gradient descent, prediction."""
    rows = []
    for i, target in enumerate(scaling.targets):
        f = fit(scaling, i)
        gd_lr, gd_steps = gd_best(scaling, i)
        until = halving_until(best_steps(scaling, i))
        seeds = f.b_crit_seeds
        rows.append(
            {
                "target excess": f"{target:g}",
                "fewest steps Sₘᵢₙ": significant(f.median.s_min),
                "fewest examples Eₘᵢₙ": significant(f.median.e_min),
                "critical batch size": significant(f.median.b_crit),
                "per-seed fits (mean ± 95 % CI)": (
                    f"{significant(seeds.mean())} ± {significant(ci95(seeds), 2)}"
                ),
                f"doubling B divides the steps by {DOUBLING_GAIN} or more up to": (
                    "–" if until is None else f"B = {until:,}"
                ),
                "gradient descent: steps at its best rate": (
                    f"{int(gd_steps):,} at η = {significant(gd_lr)}"
                ),
                "critical batch size predicted from the data": significant(
                    predicted_fit(scaling, i).b_crit
                ),
            }
        )
    return pd.DataFrame(rows).set_index("target excess")


def format_best(scaling: Scaling) -> pd.DataFrame:
    """Batch size x target: the median steps at the best lr, "639 at η = 0.00325"."""
    table = pd.DataFrame({"batch size": best_steps(scaling, 0)["batch_size"]})
    for i, target in enumerate(scaling.targets):
        best = best_steps(scaling, i)
        table[f"excess {target:g}"] = [
            f"{_count(steps)} at η = {lr:.3g}"
            for steps, lr in zip(best["steps"], best["lr"], strict=True)
        ]
    return table.set_index("batch size")


def _count(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{int(value):,}"


def halving_until(best: pd.DataFrame) -> int | None:
    """The largest B up to which each doubling divided the steps by ``DOUBLING_GAIN``."""
    steps = best.set_index("batch_size")["steps"]
    sizes = list(steps.index)
    last = None
    for small, large in zip(sizes, sizes[1:], strict=False):
        gain = (steps[small] / steps[large]) ** (1 / math.log2(large / small))
        if not gain >= DOUBLING_GAIN:
            break
        last = int(large)
    return last


def _figure(ncols: int, width: float = 11.0, height: float = 4.2) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _measured(ax, best: pd.DataFrame, color: str, label: str) -> None:
    """The median steps of ``best_steps`` against B, the seeds' range as error bars."""
    err = [best["steps"] - best["steps_min"], best["steps_max"] - best["steps"]]
    ax.errorbar(best["batch_size"], best["steps"], yerr=err, fmt="o", color=color, ms=4,
                label=label)  # fmt: skip


def steps_figure(scaling: Scaling) -> Figure:
    """Steps to each target against B with the fits (left); examples against steps."""
    fig, (left, right) = _figure(2)
    for i, target in enumerate(scaling.targets):
        color = f"C{i}"
        best = best_steps(scaling, i)
        h = fit(scaling, i).median
        grid = np.geomspace(best["batch_size"].min(), best["batch_size"].max(), 200)
        _measured(left, best, color, f"target excess {target:g}")
        fitted = rf"fit: $S_{{\min}}$ {h.s_min:.0f}, $B_{{\mathrm{{crit}}}}$ {h.b_crit:.0f}"
        left.plot(grid, h.steps(grid), color=color, lw=1, label=fitted)
        left.plot(grid, h.e_min / grid, color=color, lw=0.8, ls=":")
        left.axhline(gd_best(scaling, i)[1], color=color, lw=0.8, ls="--")
        E = np.geomspace(1.02 * h.e_min, 50 * h.e_min, 200)
        right.plot(best["steps"], best["examples"], "o", color=color, ms=4)
        right.plot(h.s_min * E / (E - h.e_min), E, color=color, lw=1)
        right.axvline(h.s_min, color=color, lw=0.6, ls="--")
        right.axhline(h.e_min, color=color, lw=0.6, ls="--")
    left.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="steps to target",
             title="steps (dotted: perfect scaling; dashed: exact full batch)")  # fmt: skip
    # Perfect scaling runs on below the measured steps: the axis stops under the smallest.
    smallest = min(best_steps(scaling, i)["steps"].min() for i in range(len(scaling.targets)))
    left.set_ylim(bottom=0.5 * smallest)
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)
    right.set(xscale="log", yscale="log", xlabel="steps S", ylabel="examples E = B S",
              title=r"$(S/S_{\min} - 1)(E/E_{\min} - 1) = 1$")  # fmt: skip
    return fig


def predicted_figure(scaling: Scaling) -> Figure:
    """Measured and predicted steps to each target against B, and their ratio."""
    fig, (left, right) = _figure(2)
    agreement = steps_agreement(scaling)
    for i, target in enumerate(scaling.targets):
        color = f"C{i}"
        _measured(left, best_steps(scaling, i), color, f"measured, target excess {target:g}")
        predicted = predicted_best(scaling, i)
        left.plot(predicted["batch_size"], predicted["steps"], color=color, lw=1.2,
                  label=f"predicted, target excess {target:g}")  # fmt: skip
        rows = agreement[agreement["target"] == target]
        right.plot(rows["batch_size"], rows["ratio"], "o-", color=color, ms=4)
    right.axhline(1, color="0.4", lw=0.8)
    left.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="steps to target",
             title="steps to target: measured (points) and predicted (lines)")  # fmt: skip
    right.set(xscale="log", xlabel="batch size B", ylabel="predicted / measured steps",
              title="predicted over measured")  # fmt: skip
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=8)
    return fig


def lr_figure(scaling: Scaling) -> Figure:
    """The best lr and eps_opt(B) against B, the linear-scaling line and 2 / lambda_max."""
    fig, (ax,) = _figure(1, width=7.5, height=3.7)
    table = lr_table(scaling)
    B = table["batch_size"]
    for i, target in enumerate(scaling.targets):
        ax.plot(B, table[f"lr_{i}"], "o-", color=f"C{i}", ms=4, label=f"best lr, target {target:g}")
        label = rf"$\epsilon_{{\mathrm{{opt}}}}(B)$ at target {target:g}"
        ax.plot(B, table[f"eps_opt_{i}"], color=f"C{i}", ls=":", label=label)
    label = r"$\epsilon_{\mathrm{opt}}(B)$ at $W = 0$"
    ax.plot(B, table["eps_opt_start"], color="0.4", ls=":", label=label)
    ax.plot(B, table["linear"], color="0.6", ls="-.", label="linear scaling from B = 1")
    ax.axhline(table["ceiling"].iloc[0], color="C3", ls="--", label=r"$2/\lambda_{\max}$")
    lowest = table[[f"lr_{i}" for i in range(len(scaling.targets))]].min().min()
    ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="learning rate",
           ylim=(lowest / 5, 4 * table["ceiling"].iloc[0]))  # fmt: skip
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


REVERSED_EXCESS = "excess loss of gradient descent (axis reversed: training proceeds →)"


def _log_ticks(axis) -> None:
    """Labelled log ticks at 1, 2 and 5 times the powers of ten."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def noise_figure(scaling: Scaling) -> Figure:
    """B_noise, B_simple (left) and eps_max (right) along gradient descent."""
    fig, (left, right) = _figure(2)
    t = scaling.trajectory[scaling.trajectory["grad_norm"] > 0]
    left.plot(t["excess"], t["b_noise"], "o-", ms=3, color="C0", label=NOISE_MATH["b_noise"])
    left.plot(t["excess"], t["b_simple"], "s-", ms=3, color="C1", label=NOISE_MATH["b_simple"])
    right.plot(t["excess"], t["eps_max"], "o-", ms=3, color="C2", label=r"$\epsilon_{\max}$")
    right.axhline(scaling.records[GD]["lr_max"], color="C3", ls="--", label=r"$2/\lambda_{\max}$")
    for i, target in enumerate(scaling.targets):
        for ax in (left, right):
            ax.axvline(target, color="0.5", lw=0.7, ls=":")
        color = f"C{i + 3}"
        left.plot([target], [fit(scaling, i).median.b_crit], "*", ms=12, color=color,
                  label=rf"measured $B_{{\mathrm{{crit}}}}$, target {target:g}")  # fmt: skip
        average = path_average(scaling, i)["b_noise"]
        left.hlines(average, t["excess"].max(), target, color=color, ls="--", lw=1,
                    label=rf"path average of {NOISE_MATH['b_noise']} to {target:g}")  # fmt: skip
    lr = scaling.records[GD]["trajectory_lr"]
    for ax in (left, right):
        ax.set(xscale="log", yscale="log", xlabel=REVERSED_EXCESS)
        ax.invert_xaxis()
        _log_ticks(ax.xaxis)
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    right.legend(fontsize=8, loc="upper left")
    left.set(ylabel="batch size", title=rf"noise scales along gradient descent, $\eta$ = {lr:.3g}")
    right.set(ylabel="learning rate", title=r"the best step along $-G$, $\epsilon_{\max}$")
    return fig


def floor_figure(table: pd.DataFrame) -> Figure:
    """Predicted against measured excess over gradient descent, with the equality line."""
    fig = Figure(figsize=(5.6, 3.7), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    markers = {"first_order": "x", "stationary": "s", "predicted": "o"}
    for k, (name, words) in enumerate(PREDICTION_NAMES.items()):
        shown = table[np.isfinite(table[name]) & (table["measured"] > 0)]
        ax.scatter(shown["measured"], shown[name], marker=markers[name], s=18, color=f"C{k}",
                   label=words, alpha=0.8)  # fmt: skip
    measured = table.loc[table["measured"] > 0, "measured"]
    if len(measured):
        low, high = measured.min() / 2, measured.max() * 2
        ax.plot([low, high], [low, high], color="0.4", lw=0.8, label="equality")
    ax.set(xscale="log", yscale="log", xlabel="measured excess over gradient descent",
           ylabel="predicted excess over gradient descent",
           title="noise floor: predicted against measured")  # fmt: skip
    ax.legend(fontsize=8)
    return fig


def floor_batch_points(table: pd.DataFrame, scaling: Scaling) -> pd.DataFrame:
    """The rows of ``floor_table`` at ``scaling.floor_curves``' rates, one per batch size."""
    keys = scaling.floor_curves[["lr", "iterations"]].drop_duplicates()
    rows = table.merge(keys, on=["lr", "iterations"])
    rows = rows.sort_values("task", key=lambda task: task != "grid", kind="stable")
    return rows.drop_duplicates(["lr", "iterations", "batch_size"]).reset_index(drop=True)


def floor_batch_figure(table: pd.DataFrame, scaling: Scaling) -> Figure:
    """The noise floor against B at each rate of ``scaling.floor_curves``."""
    fig = Figure(figsize=(6.4, 3.9), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    tr_sigma = scaling.records[FLOOR]["tr_sigma_star"]
    points = floor_batch_points(table, scaling)
    groups = scaling.floor_curves.groupby(["lr", "iterations"])
    for k, ((lr, iterations), curve) in enumerate(groups):
        color = f"C{k}"
        shown = points[(points["lr"] == lr) & (points["iterations"] == iterations)]
        half = shown["n_seeds"].map(t975) * shown["se"].fillna(0)
        ax.errorbar(shown["batch_size"], shown["measured"], yerr=half, fmt="o", ms=4,
                    color=color, label=f"measured, η = {lr:g}")  # fmt: skip
        B = curve["batch_size"].to_numpy(dtype=float)
        ax.plot(B, curve["predicted"], color=color, lw=1.2,
                label=f"predicted after {iterations} steps, η = {lr:g}")  # fmt: skip
        first = r"first order $\eta\,\mathrm{tr}\,\Sigma^*/(4B)$"
        ax.plot(B, lr * tr_sigma / (4 * B), color=color, lw=0.8, ls=":",
                label=first if k == 0 else None)  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="batch size B",
           ylabel="excess over gradient descent",
           title="noise floor against batch size")  # fmt: skip
    # Above a batch size's instability edge the prediction grows without bound: its curve
    # leaves the top, set by the measurements and first-order floors, instead of squeezing them.
    firsts = [lr * tr_sigma / (4 * curve["batch_size"].min()) for (lr, _), curve in groups]
    ax.set_ylim(top=30 * max([*points["measured"].dropna(), *firsts]))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
