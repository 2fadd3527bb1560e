"""Task 6 as a product: the same model trained by numpy, PyTorch and Keras, written as data.

``compare_frameworks`` trains every run of ``RUNS`` (Task 2 in float32 and float64, the
study's PyTorch setting and its numpy equivalent), compares each with its numpy reference
(``compare_runs``), times its updates alone and adds the closed-form optima.
``comparison_job`` writes the runs and histories as CSV; ``load_comparison`` reads them.
"""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linmnist.engine import frameworks
from linmnist.engine.analysis import least_squares
from linmnist.engine.evaluation import Evaluator
from linmnist.engine.sgd import HISTORY_COLUMNS, TrainResult, sample_batches, train
from linmnist.experiments.paths import results_dir
from linmnist.experiments.products import Product
from linmnist.experiments.results import atomic_write_text, final_metrics, plain, read_record

JOB = "linmnist.experiments.comparison:comparison_job"
NAME = STEM = "frameworks"
RUNS_FILE = f"{STEM}.runs.csv"
HISTORY_FILE = f"{STEM}.history.csv"
OUTPUTS = (HISTORY_FILE, RUNS_FILE)

# The study's Task 2 (``seed`` draws the batches every implementation shares; the study
# evaluated every iteration) and its PyTorch run (``study_lr`` with nn.MSELoss; the study ran
# 50 epochs of 1,000 updates).
FRAMEWORKS_PARAMETERS: dict[str, Any] = {
    "lr": 0.001, "batch_size": 100, "iterations": 1000, "seed": 0, "eval_every": 10,
    "study_lr": 0.01, "study_batch_size": 1000, "study_iterations": 1000, "study_eval_every": 50,
}  # fmt: skip
# Overrides of FRAMEWORKS_PARAMETERS per profile of the grid configuration.
FRAMEWORKS_PROFILES: dict[str, dict[str, Any]] = {
    "small": {"iterations": 100, "eval_every": 10, "study_iterations": 100, "study_eval_every": 10},
}


@dataclass(frozen=True)
class RunSpec:
    """One run of the comparison; ``reference``, the numpy run it is compared with."""

    run: str
    setting: str
    framework: str
    precision: str
    reference: str | None
    label: str
    loss: str = "quadratic"


# In training order: the runs of one precision and setting follow each other and share an
# evaluator (Gram matrices, a float32 copy of the data), built once for them.
RUNS = (
    RunSpec("numpy", "task2", "numpy", "float32", None, "numpy"),
    RunSpec("torch", "task2", "torch", "float32", "numpy", "PyTorch"),
    RunSpec("keras", "task2", "keras", "float32", "numpy", "Keras"),
    RunSpec("numpy64", "task2", "numpy", "float64", None, "numpy (float64)"),
    RunSpec("torch64", "task2", "torch", "float64", "numpy64", "PyTorch (float64)"),
    RunSpec(
        "study_torch", "study", "torch", "float32", "study_numpy", "PyTorch, bias, MSE, lr {lr:g}",
        "mse",
    ),
    RunSpec("study_numpy", "study", "numpy", "float32", None, "numpy, bias, lr {lr:g}"),
)  # fmt: skip
TRAINERS: dict[str, Any] = {
    "numpy": train,
    "torch": frameworks.train_torch,
    "keras": frameworks.train_keras,
}
# RunSpec's fields, the training's, the final metrics (the quadratic loss, whatever the loss
# trained on), compare_runs's against the reference, the updates' seconds alone and the
# training call's (with its evaluation, not the evaluator's shared set-up).
RUN_COLUMNS = [
    "run", "label", "setting", "framework", "precision", "bias", "loss", "lr", "batch_size",
    "iterations", "eval_every", "seed", "reference", "final_iteration", "final_train_loss",
    "final_train_acc", "final_test_acc", "diverged_at", "max_abs_dW", "evaluations", "differing",
    "train_samples", "test_samples", "max_loss_rel", "step_seconds", "run_seconds",
]  # fmt: skip
_INT_COLUMNS = [
    "batch_size", "iterations", "eval_every", "seed", "final_iteration", "diverged_at",
    "evaluations", "differing", "train_samples", "test_samples",
]  # fmt: skip
RECORD_FIELDS = ("dataset", "n_train", "n_test", "optimum", "optimum_bias", "runs", "versions")


@dataclass(frozen=True)
class Optimum:
    """The closed-form optimum: training loss and accuracies (test_acc NaN without a test set)."""

    loss: float
    train_acc: float
    test_acc: float


@dataclass
class Comparison:
    """The comparison (``RUNS`` by id, ``RUN_COLUMNS``); empty, without optima, when failed."""

    runs: pd.DataFrame
    histories: pd.DataFrame
    optimum: Optimum | None
    optimum_bias: Optimum | None
    params: dict[str, Any]
    n_train: int | None = None
    n_test: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    wall_seconds: float | None = None
    directory: Path | None = None

    @property
    def dataset(self) -> str | None:
        """The dataset the comparison ran on."""
        return self.params.get("dataset")

    @property
    def ok(self) -> bool:
        """True when the comparison was made."""
        return self.status == "ok"

    def history(self, run: str) -> pd.DataFrame:
        """The history of one run (columns iteration, train_loss, train_acc, test_acc)."""
        if run not in self.runs.index:
            raise KeyError(f"run must be one of {list(self.runs.index)}, got {run!r}")
        rows = self.histories[self.histories["run"] == run]
        return rows[HISTORY_COLUMNS].reset_index(drop=True)

    def select(self, setting: str, precision: str | None = None) -> pd.DataFrame:
        """The rows of ``runs`` of one setting (and precision)."""
        rows = self.runs[self.runs["setting"] == setting]
        return rows if precision is None else rows[rows["precision"] == precision]


def comparison_params(profile: str | None, dataset: str) -> dict[str, Any]:
    """The comparison's parameters for a profile (unknown profiles: the defaults)."""
    return {
        "dataset": dataset,
        **FRAMEWORKS_PARAMETERS,
        **FRAMEWORKS_PROFILES.get(profile or "", {}),
    }


def comparison_product(build: Path, dataset: str, profile: str | None) -> Product:
    """The ``frameworks`` product of a build: ``results/frameworks/`` (``OUTPUTS``, record)."""
    params = comparison_params(profile, dataset)
    return Product(NAME, results_dir(build) / NAME, STEM, JOB, params, outputs=OUTPUTS)


def _evaluator(X, Y, X_test, Y_test, *, bias: bool = False) -> Evaluator:
    """An evaluator with its lazy parts already built, so that no run's time includes them."""
    evaluator = Evaluator(X, Y, X_test, Y_test, bias=bias)
    evaluator.history(np.zeros((1, Y.shape[0], X.shape[0] + bias)), np.zeros(1, dtype=int))
    return evaluator


def compare_frameworks(
    X: np.ndarray,
    Y: np.ndarray,
    X_test: np.ndarray,
    Y_test: np.ndarray,
    *,
    data64: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    dataset: str | None = None,
    **settings: Any,
) -> Comparison:
    """Train and compare every run of ``RUNS`` (``settings``: ``FRAMEWORKS_PARAMETERS``)."""
    if set(settings) != set(FRAMEWORKS_PARAMETERS):
        raise TypeError(
            f"compare_frameworks takes the settings {', '.join(FRAMEWORKS_PARAMETERS)}; got "
            f"{', '.join(settings) or 'none'}"
        )
    params: dict[str, Any] = {"dataset": dataset} if dataset is not None else {}
    params |= {key: settings[key] for key in FRAMEWORKS_PARAMETERS}
    results = _train_all((X, Y, X_test, Y_test), data64, _settings(params, X.shape[1]))
    n_train, n_test = Y.shape[1], Y_test.shape[1]
    rows = [_row(spec, results, params["seed"], n_train, n_test) for spec in RUNS]
    histories = pd.concat(
        [results[s.run][0].history.assign(run=s.run) for s in RUNS], ignore_index=True
    )[["run", *HISTORY_COLUMNS]]
    optima = [least_squares(X, Y, X_test, Y_test, bias=b) for b in (False, True)]
    optimum, optimum_bias = (Optimum(o.loss, o.train_acc, o.test_acc) for o in optima)
    runs = runs_frame(rows)
    return Comparison(runs, histories, optimum, optimum_bias, params, n_train, n_test, _versions())


def _train_all(
    data32: tuple[np.ndarray, ...],
    data64: tuple[np.ndarray, ...] | None,
    settings: dict[str, dict[str, Any]],
) -> dict[str, tuple[TrainResult, float]]:
    """Each run's (TrainResult, step_seconds); one evaluator per precision and setting."""
    results = {}
    for (precision, setting), specs in itertools.groupby(RUNS, lambda s: (s.precision, s.setting)):
        arrays = data32
        if precision == "float64":
            arrays = data64 if data64 is not None else tuple(a.astype(np.float64) for a in data32)
        evaluator = _evaluator(*arrays, bias=settings[setting]["bias"])
        for spec in specs:
            results[spec.run] = _train(spec, arrays, settings[setting], evaluator)
        del arrays, evaluator  # the float64 data and its evaluator are not kept
    return results


def _settings(params: dict[str, Any], n: int) -> dict[str, dict[str, Any]]:
    """Per setting, the training arguments (batches included) its runs share."""
    task2 = {k: params[k] for k in ("lr", "batch_size", "iterations", "eval_every")}
    study = {k: params[f"study_{k}"] for k in ("lr", "batch_size", "iterations", "eval_every")}
    study |= {"lr": frameworks.quadratic_lr(params["study_lr"]), "mse_lr": params["study_lr"]}
    settings = {"task2": {**task2, "bias": False}, "study": {**study, "bias": True}}
    for setting in settings.values():
        setting["seed"] = params["seed"]
        shape = {k: setting[k] for k in ("batch_size", "iterations")}
        setting["batches"] = sample_batches(n, **shape, seed=params["seed"])
    return settings


def _train(
    spec: RunSpec, arrays: tuple[np.ndarray, ...], setting: dict[str, Any], evaluator: Evaluator
) -> tuple[TrainResult, float]:
    """One run of the comparison, and the seconds of its updates alone."""
    X, Y, X_test, Y_test = arrays
    kwargs = {k: v for k, v in setting.items() if k != "mse_lr"}
    kwargs |= dict(dtype=np.dtype(spec.precision), X_test=X_test, Y_test=Y_test)
    if spec.loss == "mse":
        kwargs |= dict(lr=setting["mse_lr"], loss="mse")
    result = TRAINERS[spec.framework](X, Y, **kwargs, evaluator=evaluator)
    if spec.framework != "numpy":
        return result, result.step_seconds
    replay = {k: kwargs[k] for k in ("lr", "batches", "dtype", "bias")}
    return result, frameworks.numpy_step_seconds(X, Y, **replay)


def _row(
    spec: RunSpec,
    results: dict[str, tuple[TrainResult, float]],
    seed: int,
    n_train: int,
    n_test: int,
) -> dict[str, Any]:
    """The row of one run (``RUN_COLUMNS``), compared with its reference run."""
    result, step_seconds = results[spec.run]
    reference = results[spec.reference or spec.run][0]
    compared = frameworks.compare_runs(reference, result, n_train=n_train, n_test=n_test)
    training = {k: getattr(result, k) for k in ("lr", "batch_size", "iterations", "eval_every")}
    return {
        **asdict(spec),
        "label": spec.label.format(lr=result.lr),
        "bias": result.b is not None,
        **training,
        "seed": seed,
        **final_metrics(result.history),
        "diverged_at": result.diverged_at,
        **asdict(compared),
        "step_seconds": step_seconds,
        "run_seconds": result.seconds,
    }


def runs_frame(rows: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
    """The runs table (``RUN_COLUMNS``) indexed by run, with its dtypes, from its rows."""
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS).astype(
        {c: "Int64" for c in _INT_COLUMNS} | {"bias": bool}
    )
    runs["reference"] = runs["reference"].astype(object).where(runs["reference"].notna(), None)
    return runs.set_index("run")


def _versions() -> dict[str, str]:
    loaded = {name: sys.modules.get(name) for name in ("torch", "keras")}
    found = {k: getattr(m, "__version__", "unknown") for k, m in loaded.items() if m is not None}
    return {"numpy": np.__version__, **found}


def write_comparison(comparison: Comparison, out: Path) -> dict[str, Any]:
    """Write ``comparison``'s CSVs (``OUTPUTS``) into ``out``; return its record fields."""
    out = Path(out)
    atomic_write_text(out / RUNS_FILE, comparison.runs.reset_index().to_csv(index=False))
    atomic_write_text(out / HISTORY_FILE, comparison.histories.to_csv(index=False))
    fields = {k: getattr(comparison, k) for k in RECORD_FIELDS}
    for key in ("optimum", "optimum_bias"):
        fields[key] = None if fields[key] is None else vars(fields[key])
    return plain({**fields, "runs": list(comparison.runs.index)})


def load_data(dataset: str) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """``((X, Y, X_test, Y_test) in float32, as the cells use them; the same in float64)``."""
    from linmnist.engine.data import load_mnist, prepare
    from linmnist.experiments.cells import prepared

    (x, y), (x_test, y_test) = load_mnist(dataset)
    data64 = (*prepare(x, y, np.float64), *prepare(x_test, y_test, np.float64))
    return prepared(dataset), data64


def comparison_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of ``frameworks``: ``compare_frameworks``, its ``OUTPUTS`` and record fields."""
    if stem != STEM:
        raise ValueError(f"the frameworks product's stem must be {STEM!r}, got {stem!r}")
    dataset = params["dataset"]
    data32, data64 = load_data(dataset)
    settings = {k: params[k] for k in FRAMEWORKS_PARAMETERS}
    comparison = compare_frameworks(*data32, **settings, data64=data64, dataset=dataset)  # type: ignore[arg-type]
    return write_comparison(comparison, out)


def _optimum(value: dict | None) -> Optimum | None:
    if value is None:
        return None
    names = [f.name for f in fields(Optimum)]
    return Optimum(**{k: math.nan if value.get(k) is None else float(value[k]) for k in names})


def load_comparison(directory: str | Path) -> Comparison:
    """The comparison in ``directory``; FileNotFoundError without a record."""
    directory = Path(directory)
    path = directory / f"{STEM}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no framework comparison in {directory} ({path.name} is missing)")
    record = read_record(path)
    status = record.get("status", "failed")
    if status == "ok":
        runs = pd.read_csv(directory / RUNS_FILE)
        histories = pd.read_csv(directory / HISTORY_FILE)
    else:
        runs = pd.DataFrame(columns=RUN_COLUMNS)
        histories = pd.DataFrame(columns=["run", *HISTORY_COLUMNS])
    optimum, optimum_bias = (_optimum(record.get(k)) for k in ("optimum", "optimum_bias"))
    known: dict[str, Any] = {
        k: record.get(k) for k in ("n_train", "n_test", "error", "wall_seconds")
    }
    known |= {"versions": record.get("versions") or {}, "status": status, "directory": directory}
    params = record.get("params") or {}
    return Comparison(runs_frame(runs), histories, optimum, optimum_bias, params, **known)
