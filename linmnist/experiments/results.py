"""Result files of the grid cells: what a cell's job writes and what the report reads.

In ``results/<task>/``: ``<cell>.history.csv`` (every seed's history) and ``<cell>.json``, its
record, written last (task, cell, status, error, params, ``seeds``: an entry per seed,
``SEED_FIELDS``; non-finite numbers as null). Names starting with a dot are a runner's
temporary files. ``runs.jsonl`` logs each group of products a run made (``RUN_LOG_FIELDS``).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from linmnist.engine.data import write_atomic as atomic_write
from linmnist.experiments.outputs import seal

# The cells' and the report's writers know it by these names.
atomic_write_text = atomic_write
if TYPE_CHECKING:  # for the annotations only: reading results needs no training code
    from linmnist.engine.sgd import TrainResult

SEED_FIELDS = (
    "seed", "eval_every", "final_iteration", "final_train_loss", "final_train_acc",
    "final_test_acc", "final_excess", "diverged_at", "seconds",
)  # fmt: skip
# The seed fields whose dtype is inferred from their values (``_seed_frame`` casts the others).
UNCAST_FIELDS = ("seed", "eval_every")
HISTORY_SUFFIX = ".history.csv"
RUN_LOG = "runs.jsonl"
# When the group finished (ISO 8601, UTC), the group, the run's setting, its products made,
# failed and skipped (up to date), and its wall time (first start to last end).
RUN_LOG_FIELDS = (
    "finished", "tasks", "profile", "dataset", "executor", "scheduler", "jobs",
    "threads_per_job", "cores", "cells", "ok", "failed", "skipped", "wall_seconds",
)  # fmt: skip


@dataclass(frozen=True)
class CellResult:
    """The JSON record of one cell; ``rows``, its per-seed entries (empty when failed)."""

    task: str
    cell: str
    status: str
    error: str | None
    params: dict[str, Any]
    rows: tuple[dict[str, Any], ...]
    path: Path

    @property
    def seeds(self) -> pd.DataFrame:
        """A row per seed, ``SEED_FIELDS`` (empty when failed)."""
        return _seed_frame(list(self.rows))

    def history(self) -> pd.DataFrame:
        """Every seed's history (columns seed, iteration, train_loss, train_acc, test_acc)."""
        return pd.read_csv(history_path(self.path.parent, self.cell))

    def signature(self) -> tuple[Any, ...]:
        """What the dtypes of its rows in ``load_task`` and ``load_history`` depend on."""
        scalars = tuple((k, type(v)) for k, v in _scalar_params(self.params).items())
        fields = frozenset(
            (k, type(row[k]) if k in row else None) for row in self.rows for k in UNCAST_FIELDS
        )
        return scalars, bool(self.rows), fields


def json_path(directory: str | Path, cell: str) -> Path:
    """Path of the JSON record of ``cell`` in ``directory``."""
    return Path(directory) / f"{cell}.json"


def history_path(directory: str | Path, cell: str) -> Path:
    """Path of the history CSV of ``cell`` in ``directory``."""
    return Path(directory) / f"{cell}{HISTORY_SUFFIX}"


def final_metrics(history: pd.DataFrame) -> dict[str, Any]:
    """The metrics at the last evaluated iteration of a run's history (NaN/None if none)."""
    metrics = ("train_loss", "train_acc", "test_acc")
    if not len(history):
        return {"final_iteration": None, **{f"final_{k}": math.nan for k in metrics}}
    last = history.iloc[-1]
    return {"final_iteration": int(last["iteration"])} | {
        f"final_{k}": float(last[k]) for k in metrics
    }


def summarize(runs: Sequence[TrainResult]) -> pd.DataFrame:
    """One row per run, ``SEED_FIELDS`` (``final_excess`` NaN)."""
    rows = [
        {"seed": run.seed, "eval_every": run.eval_every, **final_metrics(run.history),
         "final_excess": math.nan, "diverged_at": run.diverged_at, "seconds": run.seconds}
        for run in runs
    ]  # fmt: skip
    return _seed_frame(rows)


def histories(runs: Sequence[TrainResult]) -> pd.DataFrame:
    """The runs' histories stacked, with a first column ``seed``."""
    frames = [run.history.assign(seed=run.seed) for run in runs]
    history = pd.concat(frames, ignore_index=True)
    return history[["seed", *runs[0].history.columns]]


def write_record(path: str | Path, record: dict[str, Any]) -> None:
    """Write a JSON record atomically and sealed (non-finite numbers as null)."""
    text = json.dumps(seal(plain(record)), indent=1, allow_nan=False)
    atomic_write_text(path, text + "\n")


def read_record(path: str | Path) -> dict[str, Any]:
    """The JSON record at ``path`` as a dict."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_cell(path: str | Path) -> CellResult:
    """Read the JSON record of one cell (``runs_dir/<task>/<cell>.json``)."""
    path = Path(path)
    record = read_record(path)
    # The parameters of its configuration and those its job derived (an edge cell's lr).
    params = {**record.get("params", {}), **record.get("derived", {})}
    task, cell, status = (record[k] for k in ("task", "cell", "status"))
    rows = tuple(record.get("seeds") or ())
    return CellResult(task, cell, status, record.get("error"), params, rows, path)


def _seed_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per-seed entries of records as a frame of ``SEED_FIELDS`` with their dtypes."""
    seeds = pd.DataFrame(rows, columns=list(SEED_FIELDS))
    seeds = seeds.astype({"final_iteration": "Int64", "diverged_at": "Int64"})
    float_fields = [f for f in SEED_FIELDS if f.startswith("final_") and f != "final_iteration"]
    return seeds.astype({f: float for f in [*float_fields, "seconds"]})


def load_cells(
    runs_dir: str | Path, task: str, *, cells: Iterable[str] | None = None
) -> list[CellResult]:
    """The finished cells of ``task`` (or those of ``cells``), sorted by name."""
    directory = Path(runs_dir) / task
    if cells is None:
        paths = sorted(p for p in directory.glob("*.json") if not p.name.startswith("."))
    else:
        paths = [json_path(directory, c) for c in cells if json_path(directory, c).is_file()]
    return [load_cell(p) for p in paths]


def _runs(results: list[CellResult]) -> list[list[CellResult]]:
    """``results`` cut into runs of consecutive cells of one ``CellResult.signature``."""
    return [list(run) for _, run in itertools.groupby(results, CellResult.signature)]


def _head(result: CellResult) -> dict[str, Any]:
    """The columns of ``load_task`` that a cell's rows share."""
    head: dict[str, Any] = {"task": result.task, "cell": result.cell, "status": result.status}
    return head | {"error": result.error, **_scalar_params(result.params)}


def _task_frame(run: list[CellResult]) -> pd.DataFrame:
    """``load_task``'s rows of a run of cells of one signature, in one frame."""
    columns = [*_head(run[0]), *SEED_FIELDS]
    if not run[0].rows:
        return pd.DataFrame([_head(r) for r in run], columns=columns)
    heads = pd.DataFrame([_head(r) for r in run for _ in r.rows])
    seeds = _seed_frame([row for r in run for row in r.rows])
    return pd.concat([heads, seeds], axis=1)[columns]


def load_task(
    runs_dir: str | Path, task: str, *, cells: Iterable[str] | None = None
) -> pd.DataFrame:
    """One row per (cell, seed) of ``task``: its status, scalar parameters, ``SEED_FIELDS``."""
    frames = [_task_frame(run) for run in _runs(load_cells(runs_dir, task, cells=cells))]
    if not frames:
        return pd.DataFrame(columns=["task", "cell", "status", "error", *SEED_FIELDS])
    return pd.concat(frames, ignore_index=True)


def _history_frame(run: list[CellResult]) -> pd.DataFrame:
    """The histories of a run of cells of one signature, with their parameters."""
    histories = [r.history() for r in run]
    history = pd.concat(histories, ignore_index=True) if len(run) > 1 else histories[0]
    history["cell"] = [r.cell for r, h in zip(run, histories, strict=True) for _ in range(len(h))]
    evals = [[r.cell, row.get("seed"), row.get("eval_every")] for r in run for row in r.rows]
    evals = pd.DataFrame(evals, columns=["cell", "seed", "eval_every"])
    # An inner merge keeps the left order: each cell's rows stay together, in run order.
    history = history.merge(evals, on=["cell", "seed"])
    scalars = {r.cell: _scalar_params(r.params) for r in run}
    cells = history.pop("cell").tolist()
    columns = {"cell": cells} | {
        name: [scalars[cell][name] for cell in cells] for name in scalars[run[0].cell]
    }
    return history.assign(**columns)


def load_history(
    runs_dir: str | Path, task: str, *, cells: Iterable[str] | None = None
) -> pd.DataFrame:
    """Histories of the ok cells of ``task``, with their cells' scalar parameters."""
    ok = [r for r in load_cells(runs_dir, task, cells=cells) if r.status == "ok"]
    if not ok:
        return pd.DataFrame()
    first = ["cell"]
    for result in ok:
        first += [k for k in _scalar_params(result.params) if k not in first]
    history = pd.concat([_history_frame(run) for run in _runs(ok)], ignore_index=True)
    first += ["eval_every", "seed"]
    return history[[*first, *[c for c in history.columns if c not in first]]]


def append_run_log(runs_dir: str | Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` (``RUN_LOG_FIELDS``) as the last line of ``runs_dir/runs.jsonl``."""
    missing = [f for f in RUN_LOG_FIELDS if f not in entry]
    if missing:
        raise ValueError(f"entry lacks the run-log fields {missing}")
    path = Path(runs_dir) / RUN_LOG
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    line = json.dumps(plain({f: entry[f] for f in RUN_LOG_FIELDS}), allow_nan=False)
    atomic_write_text(path, old + line + "\n")


def read_run_log(runs_dir: str | Path) -> pd.DataFrame:
    """The runs logged in ``runs_dir/runs.jsonl``, oldest first (``RUN_LOG_FIELDS``)."""
    path = Path(runs_dir) / RUN_LOG
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    log = pd.DataFrame([json.loads(line) for line in lines if line], columns=list(RUN_LOG_FIELDS))
    log["finished"] = pd.to_datetime(log["finished"], utc=True)
    return log


def _scalar_params(params: dict[str, Any]) -> dict[str, Any]:
    """The single-valued parameters of a cell, without eval_every (a per-seed field)."""
    return {
        k: v
        for k, v in params.items()
        if not isinstance(v, list | dict) and k not in (*SEED_FIELDS, "task", "cell")
    }


def plain(value: Any) -> Any:
    """JSON-ready copy: numpy/pandas scalars to Python, non-finite floats and NA to None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
