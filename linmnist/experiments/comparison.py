"""Task 6 as a product: the same model trained by numpy, PyTorch and Keras, written as data.

``compare_frameworks`` trains, on arrays it is given, every run of the comparison (``RUNS``):

* the Task 2 configuration (``lr``, ``batch_size``, ``iterations``) on one set of batch
  indices, in float32 by the numpy engine, PyTorch and Keras 3, and in float64 by numpy and
  PyTorch (Keras 3 computes 64-bit products in 32 bits on the torch backend);
* the study's own PyTorch setting, ``nn.Linear`` with a bias on ``nn.MSELoss`` at
  ``study_lr`` and ``study_batch_size``, and its numpy equivalent (bias, quadratic loss at
  ``quadratic_lr(study_lr)``), on another set of batch indices;
* the closed-form optima of the quadratic loss, without and with a bias.

Each framework run is compared with the numpy run of its configuration
(``linmnist.engine.frameworks.compare_runs``), and the updates of every run are timed alone
(``step_seconds``; ``numpy_step_seconds`` replays the numpy runs' batches).

``comparison_job`` is the job of the ``frameworks`` product (``comparison_product``): it
loads the dataset, calls ``compare_frameworks`` and writes, in its output directory,

* ``frameworks.runs.csv``: one row per run, columns ``RUN_COLUMNS`` (accuracies are
  fractions, times seconds);
* ``frameworks.history.csv``: every run's history, columns run, iteration, train_loss,
  train_acc, test_acc;

and returns the extra fields of the record ``frameworks.json`` (``RECORD_FIELDS``): dataset,
n_train, n_test, the optima, the run ids in table order and the library versions.
``load_comparison`` reads the three files back into a ``Comparison``.
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

from linmnist.engine.analysis import least_squares
from linmnist.engine.evaluation import Evaluator
from linmnist.engine.frameworks import (
    compare_runs,
    numpy_step_seconds,
    quadratic_lr,
    train_keras,
    train_torch,
)
from linmnist.engine.sgd import HISTORY_COLUMNS, TrainResult, sample_batches, train
from linmnist.experiments.paths import results_dir
from linmnist.experiments.products import Product
from linmnist.experiments.results import atomic_write_text, final_metrics, plain, read_record

JOB = "linmnist.experiments.comparison:comparison_job"
NAME = STEM = "frameworks"
RUNS_FILE = f"{STEM}.runs.csv"
HISTORY_FILE = f"{STEM}.history.csv"
OUTPUTS = (HISTORY_FILE, RUNS_FILE)

# The parameters of the comparison (those of the study's Task 2 and of its PyTorch run).
FRAMEWORKS_PARAMETERS: dict[str, Any] = {
    "lr": 0.001,  # learning rate (Task 2)
    "batch_size": 100,  # samples per update, drawn with replacement (Task 2)
    "iterations": 1000,  # SGD updates (Task 2: 1,000)
    "seed": 0,  # seed of the batch indices shared by all implementations
    "eval_every": 10,  # evaluation period (the study evaluated every iteration)
    "study_lr": 0.01,  # the study's PyTorch learning rate with nn.MSELoss
    "study_batch_size": 1000,  # the study's PyTorch batch size
    "study_iterations": 1000,  # updates; the study ran 50 epochs of 1,000 (50,000 in all)
    "study_eval_every": 50,  # evaluation period of the study-setting runs
}
# Overrides of FRAMEWORKS_PARAMETERS per profile of the grid configuration.
FRAMEWORKS_PROFILES: dict[str, dict[str, Any]] = {
    "small": {"iterations": 100, "eval_every": 10, "study_iterations": 100, "study_eval_every": 10},
}

SETTINGS = ("task2", "study")
PRECISIONS = ("float32", "float64")


@dataclass(frozen=True)
class RunSpec:
    """One run of the comparison.

    Attributes
    ----------
    run : str
        Its id (the ``run`` column of the files).
    setting : str
        ``"task2"`` (the Task 2 configuration, no bias, quadratic loss) or ``"study"`` (the
        study's PyTorch setting: bias; MSE for PyTorch, its quadratic equivalent for numpy).
    framework : str
        ``"numpy"``, ``"torch"`` or ``"keras"``.
    precision : str
        ``"float32"`` or ``"float64"``.
    reference : str or None
        The id of the numpy run it is compared with (None for a numpy run).
    label : str
        Its display name (unique); ``{lr}`` stands for its learning rate.
    loss : str
        The loss it trains on: ``"quadratic"``, or ``"mse"`` (``nn.MSELoss``, at the
        setting's MSE learning rate).
    """

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
TRAINERS = {"numpy": train, "torch": train_torch, "keras": train_keras}
RUN_COLUMNS = [
    "run",  # id, RunSpec.run
    "label",  # display name, unique
    "setting",  # "task2" or "study"
    "framework",  # "numpy", "torch" or "keras"
    "precision",  # "float32" or "float64"
    "bias",  # bool
    "loss",  # "quadratic" or "mse": the loss trained on
    "lr",
    "batch_size",
    "iterations",
    "eval_every",
    "seed",
    "reference",  # the run compared with (empty for a numpy run)
    "final_iteration",  # last evaluated iteration
    "final_train_loss",  # quadratic loss, whatever the loss trained on
    "final_train_acc",
    "final_test_acc",
    "diverged_at",  # empty when the run did not diverge
    "max_abs_dW",  # max |(W, b) - (W, b)_reference| (0 for a numpy run)
    "evaluations",  # iterations evaluated in both runs
    "differing",  # evaluated iterations whose training or test accuracy differ
    "train_samples",  # largest difference in correctly classified training samples
    "test_samples",  # same, test samples
    "max_loss_rel",  # largest relative difference of the training loss
    "step_seconds",  # the updates alone, summed over iterations
    "run_seconds",  # the training call with its evaluation (not the evaluator's shared set-up)
]
_INT_COLUMNS = [
    "batch_size", "iterations", "eval_every", "seed", "final_iteration", "diverged_at",
    "evaluations", "differing", "train_samples", "test_samples",
]  # fmt: skip
RECORD_FIELDS = ("dataset", "n_train", "n_test", "optimum", "optimum_bias", "runs", "versions")


@dataclass(frozen=True)
class Optimum:
    """The closed-form optimum of the quadratic loss (``linmnist.engine.analysis.least_squares``).

    Attributes
    ----------
    loss, train_acc, test_acc : float
        Its training loss and accuracies (fractions; test_acc NaN without a test set).
    """

    loss: float
    train_acc: float
    test_acc: float


@dataclass
class Comparison:
    """The framework comparison: what ``compare_frameworks`` computes, ``load_comparison`` reads.

    Attributes
    ----------
    runs : DataFrame
        One row per run of ``RUNS`` (in that order), indexed by run id, the other columns of
        ``RUN_COLUMNS``; empty for a failed product.
    histories : DataFrame
        Every run's history: columns run, iteration, train_loss, train_acc, test_acc.
    optimum, optimum_bias : Optimum or None
        The closed-form optimum without and with a bias (None for a failed product).
    params : dict
        The parameters (``comparison_params``, dataset included).
    n_train, n_test : int or None
        Training and test samples.
    versions : dict
        Versions of numpy, torch and keras.
    status : str
        ``"ok"`` or ``"failed"``.
    error : str or None
        The error of a failed product.
    wall_seconds : float or None
        Wall time of the job (set by the runner; None before).
    directory : Path or None
        Where it was read from.
    """

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
    return Product(
        name=NAME,
        directory=results_dir(build) / NAME,
        stem=STEM,
        job=JOB,
        params=comparison_params(profile, dataset),
        outputs=OUTPUTS,
    )


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
    lr: float,
    batch_size: int,
    iterations: int,
    seed: int,
    eval_every: int,
    study_lr: float,
    study_batch_size: int,
    study_iterations: int,
    study_eval_every: int,
    data64: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    dataset: str | None = None,
) -> Comparison:
    """Train and compare every run of ``RUNS`` on the given data, into a ``Comparison`` of
    status ``"ok"`` (``wall_seconds`` and ``directory`` None).

    Parameters
    ----------
    X, Y, X_test, Y_test : ndarray
        Training and test sets in float32, feature-major (``linmnist.engine.data.prepare``).
    lr, batch_size, iterations, seed, eval_every
        The Task 2 configuration; ``seed`` draws the batches of both settings.
    study_lr, study_batch_size, study_iterations, study_eval_every
        The study's PyTorch setting (``study_lr`` on the MSE loss).
    data64 : tuple of ndarray, optional
        The same four arrays in float64 for the float64 runs (default: the float32 arrays
        converted).
    dataset : str, optional
        Stored in ``params``.
    """
    params: dict[str, Any] = {"dataset": dataset} if dataset is not None else {}
    params |= dict(
        lr=lr, batch_size=batch_size, iterations=iterations, seed=seed, eval_every=eval_every,
        study_lr=study_lr, study_batch_size=study_batch_size, study_iterations=study_iterations,
        study_eval_every=study_eval_every,
    )  # fmt: skip
    results = _train_all((X, Y, X_test, Y_test), data64, _settings(params, X.shape[1]))
    n_train, n_test = Y.shape[1], Y_test.shape[1]
    rows = [_row(spec, results, seed, n_train, n_test) for spec in RUNS]
    histories = pd.concat(
        [results[s.run][0].history.assign(run=s.run) for s in RUNS], ignore_index=True
    )[["run", *HISTORY_COLUMNS]]
    optima = [least_squares(X, Y, X_test, Y_test, bias=b) for b in (False, True)]
    optimum, optimum_bias = (Optimum(o.loss, o.train_acc, o.test_acc) for o in optima)
    return Comparison(
        runs=runs_frame(rows),
        histories=histories,
        optimum=optimum,
        optimum_bias=optimum_bias,
        params=params,
        n_train=n_train,
        n_test=n_test,
        versions=_versions(),
    )


def _train_all(
    data32: tuple[np.ndarray, ...],
    data64: tuple[np.ndarray, ...] | None,
    settings: dict[str, dict[str, Any]],
) -> dict[str, tuple[TrainResult, float]]:
    """Every run of ``RUNS`` with its ``step_seconds``, in order; the runs of one precision
    and setting share an evaluator built for them (not counted in their times)."""
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
    """Per setting, the training arguments its runs share, batches included (both drawn with
    ``seed``); ``mse_lr`` is the learning rate of a run on the MSE loss."""
    task2 = {k: params[k] for k in ("lr", "batch_size", "iterations", "eval_every")}
    study = {k: params[f"study_{k}"] for k in ("lr", "batch_size", "iterations", "eval_every")}
    study |= {"lr": quadratic_lr(params["study_lr"]), "mse_lr": params["study_lr"]}
    settings = {"task2": {**task2, "bias": False}, "study": {**study, "bias": True}}
    for setting in settings.values():
        setting["seed"] = params["seed"]
        setting["batches"] = sample_batches(
            n,
            batch_size=setting["batch_size"],
            iterations=setting["iterations"],
            seed=params["seed"],
        )
    return settings


def _train(
    spec: RunSpec, arrays: tuple[np.ndarray, ...], setting: dict[str, Any], evaluator: Evaluator
) -> tuple[TrainResult, float]:
    """One run of the comparison, and the time of its updates alone (``step_seconds``; the
    numpy engine's updates replayed by ``numpy_step_seconds``)."""
    X, Y, X_test, Y_test = arrays
    kwargs = {k: v for k, v in setting.items() if k != "mse_lr"}
    kwargs |= dict(dtype=np.dtype(spec.precision), X_test=X_test, Y_test=Y_test)
    if spec.loss == "mse":
        kwargs |= dict(lr=setting["mse_lr"], loss="mse")
    result = TRAINERS[spec.framework](X, Y, **kwargs, evaluator=evaluator)
    if spec.framework != "numpy":
        return result, result.step_seconds  # type: ignore[attr-defined]
    replay = {k: kwargs[k] for k in ("lr", "batches", "dtype", "bias")}
    return result, numpy_step_seconds(X, Y, **replay)


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
    compared = compare_runs(reference, result, n_train=n_train, n_test=n_test)
    return {
        "run": spec.run,
        "label": spec.label.format(lr=result.lr),
        "setting": spec.setting,
        "framework": spec.framework,
        "precision": spec.precision,
        "bias": result.b is not None,
        "loss": spec.loss,
        "lr": result.lr,
        "batch_size": result.batch_size,
        "iterations": result.iterations,
        "eval_every": result.eval_every,
        "seed": seed,
        "reference": spec.reference,
        **final_metrics(result.history),
        "diverged_at": result.diverged_at,
        **asdict(compared),
        "step_seconds": step_seconds,
        "run_seconds": result.seconds,
    }


def runs_frame(rows: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
    """The runs table of a ``Comparison`` from its rows (columns ``RUN_COLUMNS``): indexed by
    run, with nullable integers, booleans, and None for a missing reference."""
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS).astype(
        {c: "Int64" for c in _INT_COLUMNS} | {"bias": bool}
    )
    runs["reference"] = runs["reference"].astype(object).where(runs["reference"].notna(), None)
    return runs.set_index("run")


def _versions() -> dict[str, str]:
    versions = {"numpy": np.__version__}
    for name in ("torch", "keras"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "unknown")
    return versions


def write_comparison(comparison: Comparison, out: Path) -> dict[str, Any]:
    """Write ``comparison``'s CSVs (``OUTPUTS``) into ``out``; return its record fields."""
    out = Path(out)
    atomic_write_text(out / RUNS_FILE, comparison.runs.reset_index().to_csv(index=False))
    atomic_write_text(out / HISTORY_FILE, comparison.histories.to_csv(index=False))
    return plain(
        {
            "dataset": comparison.dataset,
            "n_train": comparison.n_train,
            "n_test": comparison.n_test,
            "optimum": None if comparison.optimum is None else vars(comparison.optimum),
            "optimum_bias": (
                None if comparison.optimum_bias is None else vars(comparison.optimum_bias)
            ),
            "runs": list(comparison.runs.index),
            "versions": comparison.versions,
        }
    )


def load_data(dataset: str) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """``((X, Y, X_test, Y_test) in float32, the same in float64)`` of ``dataset``.

    The float32 arrays are those the grid cells use (``linmnist.experiments.cells.prepared``,
    loaded once per process); the float64 ones are prepared from the images in float64.
    """
    from linmnist.engine.data import load_mnist, prepare
    from linmnist.experiments.cells import prepared

    (x, y), (x_test, y_test) = load_mnist(dataset)
    data64 = (*prepare(x, y, np.float64), *prepare(x_test, y_test, np.float64))
    return prepared(dataset), data64


def comparison_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """The job of the ``frameworks`` product (``comparison_product``).

    Loads ``params["dataset"]`` (``load_data``), runs ``compare_frameworks`` with the other
    parameters, writes ``OUTPUTS`` into ``out`` and returns the record fields
    ``RECORD_FIELDS``.
    """
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
    """The comparison stored in ``directory`` (``results/frameworks/`` of a build).

    A failed product gives a ``Comparison`` with its status and error, and empty tables.

    Raises
    ------
    FileNotFoundError
        When ``directory`` holds no record ``frameworks.json``.
    """
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
    return Comparison(
        runs=runs_frame(runs),
        histories=histories,
        optimum=_optimum(record.get("optimum")),
        optimum_bias=_optimum(record.get("optimum_bias")),
        params=record.get("params") or {},
        n_train=record.get("n_train"),
        n_test=record.get("n_test"),
        versions=record.get("versions") or {},
        status=status,
        error=record.get("error"),
        wall_seconds=record.get("wall_seconds"),
        directory=directory,
    )
