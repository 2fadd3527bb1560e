"""The dask executor: cells on a LocalCluster of 2 workers on loopback, and killed workers.

The cells execute the real grid-cell notebook (or a copy with one added cell) on real MNIST
with a few iterations; each kernel takes seconds to start, so the tests use few cells.
"""

import json
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_runner import _wait, notebook_with, records, write_config

from linmnist.experiments import dask_executor as cluster
from linmnist.experiments.cells import train_seeds
from linmnist.experiments.grids import load_grids
from linmnist.experiments.results import json_path, load_cell, load_task, summarize
from linmnist.experiments.runner import blas_threads, main, run

# Added after the parameters cell (before the notebook loads anything): report the BLAS
# threads the kernel inherited, and, when LINMNIST_TEST_DEATHS names a directory, log this
# attempt (with the worker's pid, the kernel's parent) and kill the worker while the cell has
# had at most KILLS[cell] attempts.
HOOK = """import os, signal
from pathlib import Path
print(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
KILLS = {"lr0.01_bs10": 1, "lr0.01_bs100": 2}
if os.environ.get("LINMNIST_TEST_DEATHS"):
    log = Path(os.environ["LINMNIST_TEST_DEATHS"]) / f"{cell}.attempts"
    with log.open("a") as fh:
        fh.write(f"{os.getppid()}\\n")
    if len(log.read_text().split()) <= KILLS.get(cell, 0):
        os.kill(os.getppid(), signal.SIGKILL)
        os._exit(1)"""


def hooked(tmp_path: Path, batch_sizes: str) -> Path:
    """A grid configuration of lr 0.01 x ``batch_sizes``, one seed, on the hooked notebook."""
    notebook = notebook_with(HOOK, "03_grid_cell.ipynb", tmp_path / "hooked.ipynb")
    return write_config(
        tmp_path / "c.toml",
        grid_notebook=notebook,
        **{"grid.batch_size": batch_sizes, "grid.seeds": "[0]", "subset.n_prime": "[]"},
    )


def hook_output(notebook: Path) -> str:
    """The printed output of the hook cell of an executed notebook."""
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if c.source.startswith("import os, signal"))
    return "".join(o.get("text", "") for o in cell.outputs)


@pytest.mark.integration
def test_a_local_cluster_of_two_workers_runs_the_cells_like_the_local_executor(tmp_path, mnist):
    """Two cells on a LocalCluster of 2 workers: each leaves exactly the local executor's
    files and record, with the metrics of the same training run in this process, and its
    kernel gets the local executor's BLAS thread split; a second run skips both without
    starting a cluster."""
    config = hooked(tmp_path, "[10, 100]")
    runs_dir = tmp_path / "runs"
    summary = run(["grid"], jobs=2, config=config, runs_dir=runs_dir, executor="dask")
    assert summary.ok and summary.executor == "dask" and summary.scheduler is None
    assert (summary.jobs, summary.threads_per_job) == (2, blas_threads(2))
    names = ["lr0.01_bs10", "lr0.01_bs100"]
    assert [(o.cell, o.status) for o in summary.outcomes] == [(n, "ok") for n in names]
    assert sorted(p.name for p in (runs_dir / "grid").iterdir()) == sorted(
        f"{n}{suffix}" for n in names for suffix in (".history.csv", ".ipynb", ".json")
    )
    grid = records(runs_dir, "grid")
    (X, Y), (X_test, Y_test) = mnist
    for cell in load_grids(config)["grid"]:
        record = grid[cell.name]
        assert record["status"] == "ok" and record["notebook"] == f"{cell.name}.ipynb"
        assert record["params"] == {**cell.params, "dataset": "mnist"}
        output = hook_output(runs_dir / "grid" / f"{cell.name}.ipynb")
        assert output == f"OMP_NUM_THREADS={blas_threads(2)}\n"
        here = summarize(train_seeds(X, Y, X_test=X_test, Y_test=Y_test, **cell.params))
        assert (
            load_cell(json_path(runs_dir / "grid", cell.name))
            .seeds.drop(columns="seconds")
            .equals(here.drop(columns="seconds"))
        )

    again = run(["grid"], jobs=2, config=config, runs_dir=runs_dir, executor="dask")
    assert {o.status for o in again.outcomes} == {"skipped"}
    assert records(runs_dir, "grid") == grid


@pytest.mark.integration
def test_a_killed_worker_costs_one_retry_then_the_cell_fails_and_nothing_else(
    tmp_path, monkeypatch, mnist
):
    """The worker running lr0.01_bs10 is killed once: the cell is retried on another worker
    process and completes. The one running lr0.01_bs100 is killed on both attempts: the cell
    is recorded failed after the second death, with no result files. lr0.01_bs1000 runs once.
    Both completed cells hold the results of the same training run in this process."""
    config = hooked(tmp_path, "[10, 100, 1000]")
    deaths = tmp_path / "deaths"
    deaths.mkdir()
    monkeypatch.setenv("LINMNIST_TEST_DEATHS", str(deaths))
    runs_dir = tmp_path / "runs"
    summary = run(["grid"], jobs=2, config=config, runs_dir=runs_dir, executor="dask")
    statuses = {o.cell: o.status for o in summary.outcomes}
    assert statuses == {"lr0.01_bs10": "ok", "lr0.01_bs100": "failed", "lr0.01_bs1000": "ok"}
    assert "died 2 times" in summary.failed[0].error
    attempts = {p.stem: p.read_text().split() for p in deaths.glob("*.attempts")}
    assert {cell: len(pids) for cell, pids in attempts.items()} == {
        "lr0.01_bs10": 2,
        "lr0.01_bs100": 2,
        "lr0.01_bs1000": 1,
    }
    assert all(len(set(pids)) == len(pids) for pids in attempts.values())  # new processes

    grid = records(runs_dir, "grid")
    assert {name: r["status"] for name, r in grid.items()} == statuses
    assert grid["lr0.01_bs100"]["error"] == summary.failed[0].error
    assert grid["lr0.01_bs100"]["seeds"] == [] and grid["lr0.01_bs100"]["notebook"] is None
    visible = sorted(p.name for p in (runs_dir / "grid").iterdir() if not p.name.startswith("."))
    assert visible == sorted(
        [f"{n}{s}" for n in ("lr0.01_bs10", "lr0.01_bs1000") for s in (".history.csv", ".ipynb")]
        + [f"{n}.json" for n in statuses]
    )
    hidden = [p.name for p in (runs_dir / "grid").iterdir() if p.name.startswith(".")]
    assert all(name.endswith(".staging") for name in hidden)  # the killed attempts' own
    table = load_task(runs_dir, "grid")
    assert table.set_index("cell")["status"].to_dict() == statuses
    (X, Y), (X_test, Y_test) = mnist
    for cell in load_grids(config)["grid"]:
        if statuses[cell.name] == "ok":
            here = summarize(train_seeds(X, Y, X_test=X_test, Y_test=Y_test, **cell.params))
            saved = load_cell(json_path(runs_dir / "grid", cell.name)).seeds
            assert saved.drop(columns="seconds").equals(here.drop(columns="seconds"))


def test_cli_refuses_a_wrong_executor_or_scheduler_before_running(tmp_path, capsys):
    """--executor must be local or dask, --scheduler needs dask and an address; nothing runs."""
    config = write_config(tmp_path / "c.toml", **{"subset.n_prime": "[]"})
    runs_dir = tmp_path / "runs"
    base = ["--config", str(config), "--runs-dir", str(runs_dir)]
    cases = [
        (["--executor", "spark"], "executor must be one of local, dask; got 'spark'"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "with executor 'dask'; got 'tcp://127."),
        (["--executor", "dask", "--scheduler", "localhost"], "such as tcp://HOST:PORT"),
    ]
    for argv, message in cases:
        assert main([*base, *argv]) == 2
        assert message in capsys.readouterr().err
    assert not runs_dir.exists()


def test_an_unreachable_scheduler_is_an_error_not_a_hang(tmp_path, capsys, monkeypatch):
    """A scheduler address where nothing listens ends the run with status 2 and a message."""
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2)
    with socket.socket() as sock:  # a free port, closed again
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write_config(tmp_path / "c.toml", **{"subset.n_prime": "[]"})
    argv = ["--config", str(config), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
    address = f"tcp://127.0.0.1:{port}"
    assert main([*argv, "--executor", "dask", "--scheduler", address]) == 2
    assert f"cannot reach the Dask scheduler at {address}" in capsys.readouterr().err
    assert records(tmp_path / "runs", "grid") == {}


@pytest.mark.integration
def test_an_external_cluster_of_multithreaded_workers_is_refused(tmp_path, capsys):
    """Against a running scheduler (`dask scheduler`), a worker with 2 threads is refused by
    name before any cell runs: a cell redirects its worker process's stderr and environment."""
    dask = Path(sys.executable).with_name("dask")
    info = tmp_path / "scheduler.json"
    common = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp_path}
    scheduler = subprocess.Popen(
        [
            dask,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            info,
        ],
        **common,
    )
    worker = None
    try:
        assert _wait(lambda: info.is_file() and info.stat().st_size > 0, 30)
        address = json.loads(info.read_text())["address"]
        worker = subprocess.Popen(
            [dask, "worker", address, "--nthreads", "2", "--no-dashboard"], **common
        )
        config = write_config(tmp_path / "c.toml", **{"subset.n_prime": "[]"})
        argv = ["--config", str(config), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
        assert main([*argv, "--executor", "dask", "--scheduler", address]) == 2
        assert "every Dask worker must run one thread" in capsys.readouterr().err
        assert records(tmp_path / "runs", "grid") == {}
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
