"""The papermill runner: refusals up front, parallel and incremental runs, failing and killed cells.

The integration tests execute the real cell notebooks (or copies with one added cell) on real
MNIST with a few iterations; papermill kernels take seconds to start, so they use few cells.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from linmnist.experiments.grids import load_grids
from linmnist.experiments.results import load_task, read_run_log
from linmnist.experiments.runner import (
    blas_threads,
    default_runs_dir,
    fingerprint,
    main,
    notebook_digest,
    run,
)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
REPO = NOTEBOOKS.parent


def write_config(path: Path, *, grid_notebook=None, subset_notebook=None, **changes) -> Path:
    """A tiny configuration: grid lr 0.01 x batch size 100, subset N' 100; 5 iterations, 2 seeds;
    a stability sweep of lr 1 on the grid's notebook, left out unless given batch sizes.

    ``changes`` maps "task.key" to a TOML value; a task whose ``batch_size`` list is empty
    (grid, stability) or whose ``n_prime`` list is empty (subset) is left out.
    """
    tables = {
        "grid": {
            "notebook": repr(str(grid_notebook or NOTEBOOKS / "03_grid_cell.ipynb")),
            "lr": "[0.01]",
            "batch_size": "[100]",
        },
        "subset": {
            "notebook": repr(str(subset_notebook or NOTEBOOKS / "05_subset_cell.ipynb")),
            "n_prime": "[100]",
            "lr": "0.001",
            "batch_size": "100",
        },
        "stability": {
            "notebook": repr(str(grid_notebook or NOTEBOOKS / "03_grid_cell.ipynb")),
            "lr": "[1.0]",
            "batch_size": "[]",
        },
    }
    lines = []
    for task, values in tables.items():
        common = {"iterations": "5", "seeds": "[0, 1]", "fidelity_seeds": "[0]", "eval_every": "2"}
        mine = {k.split(".")[1]: v for k, v in changes.items() if k.split(".")[0] == task}
        values = values | common | mine
        if "[]" in (values.get("batch_size"), values.get("n_prime")):
            continue
        lines += [f"[{task}]", *(f"{k} = {v}" for k, v in values.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def notebook_with(source: str, original: str, path: Path) -> Path:
    """A copy of a cell notebook with one code cell added right after the parameters cell."""
    nb = nbformat.read(NOTEBOOKS / original, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    nbformat.write(nb, path)
    return path


def records(runs_dir: Path, task: str) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted((runs_dir / task).glob("[!.]*.json"))}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "grids"], "--task must be one of grid, subset, stability, all; got 'grids'"),
        (["--jobs", "0"], "jobs must be an integer >= 1, got 0"),
        (["--dataset", "cifar"], "dataset must be one of mnist, fashion-mnist; got 'cifar'"),
        (["--profile", "big"], "profile must be one of: small, fidelity; got 'big'"),
        (["--config", "{tmp}/absent.toml"], "config must be an existing TOML file"),
        (["--config", "{tmp}/c.toml", "--task", "subset"], "tasks ['subset'] are not defined"),
    ],
)
def test_cli_refuses_wrong_arguments_before_running_anything(tmp_path, capsys, argv, message):
    """A wrong argument exits with status 2 and a message naming it; no runs directory appears."""
    write_config(tmp_path / "c.toml", **{"subset.n_prime": "[]"})
    runs_dir = tmp_path / "runs"
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main([*argv, "--runs-dir", str(runs_dir)]) == 2
    assert message in capsys.readouterr().err
    assert not runs_dir.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grid.lr": "[0.0]"}, "grid.lr must be a finite number > 0, got 0.0"),
        ({"grid.batch_size": "[0]"}, "grid.batch_size must be an integer >= 1, got 0"),
        ({"subset.n_prime": "[60001]"}, "subset.n_prime must be in [1, 60000]"),
        ({"grid.batchsize": "[1]"}, "grid: unknown key 'batchsize' (did you mean 'batch_size'?)"),
    ],
)
def test_wrong_config_values_are_refused_before_running_anything(tmp_path, capsys, change, message):
    """lr <= 0, batch size 0, N' above the training set and a typo'd key stop the run up front."""
    config = write_config(tmp_path / "c.toml", **change)
    assert main(["--config", str(config), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_fingerprint_tracks_source_parameters_and_data_not_outputs(tmp_path):
    """Changing a parameter, the notebook source or the data checksum changes the fingerprint;
    re-executing the notebook (new outputs) does not."""
    cell = load_grids(write_config(tmp_path / "c.toml"))["grid"][0]
    base = fingerprint(cell, dataset="mnist", checksum="abc")
    assert fingerprint(cell, dataset="mnist", checksum="abd") != base
    assert fingerprint(cell, dataset="fashion-mnist", checksum="abc") != base
    changed = type(cell)(cell.task, cell.name, cell.notebook, cell.params | {"iterations": 6})
    assert fingerprint(changed, dataset="mnist", checksum="abc") != base
    nb = nbformat.read(cell.notebook, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nbformat.write(nb, tmp_path / "copy.ipynb")
    assert notebook_digest(tmp_path / "copy.ipynb") == notebook_digest(cell.notebook)
    notebook_with("x = 1", cell.notebook.name, tmp_path / "edited.ipynb")
    assert notebook_digest(tmp_path / "edited.ipynb") != notebook_digest(cell.notebook)


def test_without_a_default_task_nothing_runs_unless_named(tmp_path):
    """A config holding only the stability sweep runs nothing when no task is named."""
    config = write_config(
        tmp_path / "c.toml",
        **{"grid.batch_size": "[]", "subset.n_prime": "[]", "stability.batch_size": "[100]"},
    )
    with pytest.raises(ValueError, match="the config defines none of the default tasks"):
        run(config=config, runs_dir=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


def test_profiles_and_datasets_get_their_own_default_runs_directory():
    """A profile's or another dataset's results never land in (and invalidate) the full MNIST
    run's directory; the layout is the report's."""
    assert default_runs_dir() == Path("reports/runs")
    assert default_runs_dir("small") == Path("reports/runs-small")
    assert default_runs_dir(None, "fashion-mnist") == Path("reports/fashion-mnist/runs")
    assert default_runs_dir("small", "fashion-mnist") == Path("reports/fashion-mnist/runs-small")


def test_blas_threads_split_the_cores_between_jobs():
    """cores // jobs threads per job, at least one."""
    assert blas_threads(1, cores=2) == 2
    assert blas_threads(2, cores=2) == 1
    assert blas_threads(3, cores=2) == 1
    assert blas_threads(2, cores=8) == 4


@pytest.mark.integration
def test_parallel_run_then_incremental_reruns(tmp_path, capsys):
    """Two jobs run two cells, not the stability sweep; a second run skips them both; changing
    the subset's lr reruns that cell only; the sweep runs when named, its cell saved under
    task stability by the grid notebook; "--task all" covers every task."""
    config = write_config(
        tmp_path / "c.toml", **{"grid.seeds": "[0]", "stability.batch_size": "[100]"}
    )
    runs_dir = tmp_path / "runs"
    first = run(jobs=2, config=config, runs_dir=runs_dir, progress=False)
    assert first.ok and first.jobs == 2 and first.threads_per_job == blas_threads(2)
    assert [(o.cell, o.status) for o in first.outcomes] == [("lr0.01_bs100", "ok"), ("n100", "ok")]
    grid = records(runs_dir, "grid")
    assert set(grid) == {"lr0.01_bs100"}
    for name, record in grid.items():
        assert record["status"] == "ok" and record["notebook"] == f"{name}.ipynb"
        assert record["params"]["dataset"] == "mnist" and len(record["fingerprint"]) == 64
        assert [(s["seed"], s["eval_every"]) for s in record["seeds"]] == [(0, 1)]
        assert (runs_dir / "grid" / f"{name}.ipynb").is_file()
    table = load_task(runs_dir, "subset")
    assert table["seed"].tolist() == [0, 1] and (table["status"] == "ok").all()
    assert table["eval_every"].tolist() == [1, 2]
    assert sorted(p.name for p in (runs_dir / "grid").iterdir()) == sorted(
        f"{n}{suffix}" for n in grid for suffix in (".ipynb", ".json", ".history.csv")
    )

    again = run(jobs=2, config=config, runs_dir=runs_dir, progress=False)
    assert {o.status for o in again.outcomes} == {"skipped"}
    assert records(runs_dir, "grid") == grid

    write_config(
        config, **{"grid.seeds": "[0]", "subset.lr": "0.002", "stability.batch_size": "[100]"}
    )
    third = run(jobs=2, config=config, runs_dir=runs_dir, progress=False)
    assert [o.status for o in third.outcomes] == ["skipped", "ok"]
    assert records(runs_dir, "subset")["n100"]["params"]["lr"] == 0.002
    assert not (runs_dir / "stability").exists()

    sweep = run(["stability"], config=config, runs_dir=runs_dir, progress=False)
    assert [(o.task, o.cell, o.status) for o in sweep.outcomes] == [
        ("stability", "lr1_bs100", "ok")
    ]
    record = records(runs_dir, "stability")["lr1_bs100"]
    assert record["task"] == "stability" and record["params"]["lr"] == 1.0
    assert all(s["diverged_at"] is not None for s in record["seeds"])
    argv = ["--config", str(config), "--runs-dir", str(runs_dir), "--no-progress"]
    assert main([*argv, "--task", "all"]) == 0
    out = capsys.readouterr().out
    assert "grid: 1 cells (0 ok, 0 failed, 1 skipped)" in out
    assert "stability: 1 cells (0 ok, 0 failed, 1 skipped)" in out
    log = read_run_log(runs_dir)  # every run, with what it ran
    assert log["tasks"].tolist() == [*["grid,subset"] * 3, "stability", "grid,subset,stability"]
    assert log[["ok", "skipped"]].to_numpy().tolist() == [[2, 0], [0, 2], [1, 1], [1, 0], [0, 3]]
    assert (log["executor"] == "local").all() and log["jobs"].iloc[0] == 2


@pytest.mark.integration
def test_a_relative_runs_directory_is_taken_from_the_current_directory(tmp_path, monkeypatch):
    """As ``make run`` passes it (``reports/runs``), although the notebooks run elsewhere."""
    config = write_config(tmp_path / "c.toml", **{"grid.seeds": "[0]"})
    monkeypatch.chdir(tmp_path)
    summary = run(["grid"], config=config, runs_dir=Path("reports") / "runs", progress=False)
    assert summary.ok and summary.runs_dir == tmp_path / "reports" / "runs"
    assert records(tmp_path / "reports" / "runs", "grid")["lr0.01_bs100"]["status"] == "ok"


@pytest.mark.integration
def test_a_failing_cell_is_recorded_and_the_others_complete(tmp_path, capsys):
    """A cell whose notebook raises gets a failed record with the error and keeps its partial
    notebook under a non-result name; the other cell completes; the exit status is 1. The
    error also shows the BLAS threads the kernel inherited (2 jobs on this machine's cores)."""
    failing = notebook_with(
        "import os\n"
        "threads = os.environ['OMP_NUM_THREADS']\n"
        "raise RuntimeError(f'planned failure, OMP_NUM_THREADS={threads}')",
        "03_grid_cell.ipynb",
        tmp_path / "failing.ipynb",
    )
    config = write_config(tmp_path / "c.toml", grid_notebook=failing)
    runs_dir = tmp_path / "runs"
    argv = ["--config", str(config), "--runs-dir", str(runs_dir), "--jobs", "2", "--no-progress"]
    assert main(argv) == 1
    error = f"RuntimeError: planned failure, OMP_NUM_THREADS={blas_threads(2)}"
    assert f"FAILED grid/lr0.01_bs100: {error}" in capsys.readouterr().out
    record = records(runs_dir, "grid")["lr0.01_bs100"]
    assert record["status"] == "failed" and record["error"].startswith(error)
    assert record["seeds"] == [] and record["notebook"] == "lr0.01_bs100.failed.ipynb"
    assert {p.name for p in (runs_dir / "grid").iterdir()} <= {
        "lr0.01_bs100.failed.ipynb",
        "lr0.01_bs100.failed.log",
        "lr0.01_bs100.json",
    }
    assert (runs_dir / "grid" / "lr0.01_bs100.failed.ipynb").is_file()
    assert records(runs_dir, "subset")["n100"]["status"] == "ok"
    assert load_task(runs_dir, "grid")["status"].tolist() == ["failed"]


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.integration
@pytest.mark.parametrize("how", ["SIGKILL to the runner", "SIGINT to the process group"])
def test_an_interrupted_cell_is_not_taken_as_finished_and_reruns(tmp_path, how):
    """Killing a run while a cell executes leaves no record of it and its kernel exits too;
    the next run removes the leftovers and completes the cell."""
    marker = tmp_path / "marker.json"
    pausing = notebook_with(
        "import json, os, time\n"
        "if os.environ.get('LINMNIST_TEST_PAUSE'):\n"
        "    with open(os.environ['LINMNIST_TEST_PAUSE'], 'w') as fh:\n"
        "        json.dump({'pid': os.getpid()}, fh)\n"
        "    time.sleep(600)",
        "05_subset_cell.ipynb",
        tmp_path / "pausing.ipynb",
    )
    config = write_config(tmp_path / "c.toml", subset_notebook=pausing, **{"grid.batch_size": "[]"})
    runs_dir = tmp_path / "runs"
    command = [sys.executable, "-m", "linmnist", "run", "--config", str(config)]
    proc = subprocess.Popen(
        [*command, "--runs-dir", str(runs_dir), "--no-progress"],
        cwd=REPO,
        env={**os.environ, "LINMNIST_TEST_PAUSE": str(marker)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = _wait(lambda: marker.is_file() and marker.stat().st_size > 0, 90)
        assert started, "the cell never started"
        kernel = json.loads(marker.read_text())["pid"]
        if how.startswith("SIGKILL"):
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGINT)
        returncode = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert returncode == (-signal.SIGKILL if how.startswith("SIGKILL") else 130)
    assert _wait(lambda: not _alive(kernel), 15), "the cell's kernel outlived the run"
    assert records(runs_dir, "subset") == {}
    assert load_task(runs_dir, "subset").empty

    summary = run(config=config, runs_dir=runs_dir, progress=False)
    assert [o.status for o in summary.outcomes] == ["ok"]
    assert records(runs_dir, "subset")["n100"]["status"] == "ok"
    assert sorted(p.name for p in (runs_dir / "subset").iterdir()) == [
        "n100.history.csv",
        "n100.ipynb",
        "n100.json",
    ]
