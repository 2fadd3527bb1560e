"""The dask executor: the runner's toy pipeline on a LocalCluster of 2 workers on loopback,
killed workers, and refusals of wrong clusters and addresses."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from linmnist.cli import main
from linmnist.engine.validation import UsageError
from linmnist.experiments import dask_executor
from linmnist.experiments.runner import run

from .test_runner import _wait, chain, statuses

pytestmark = pytest.mark.slow


def test_a_local_cluster_makes_the_pipeline_like_the_local_executor(tmp_path):
    """The same files and records as the local executor, each worker with its BLAS threads."""
    local, dask = tmp_path / "local", tmp_path / "dask"
    run(chain(local, c={"threads": True}), lock_dir=local, jobs=2, progress=False)
    summary = run(
        chain(dask, c={"threads": True}), lock_dir=dask, jobs=2, executor="dask", progress=False
    )
    assert summary.ok and summary.executor == "dask" and summary.jobs == 2
    assert set(statuses(summary).values()) == {"ok"}
    for path in sorted(local.rglob("*.txt")):
        twin = dask / path.relative_to(local)
        assert twin.read_text() == path.read_text()
    assert json.loads((dask / "top" / "c.txt").read_text())["omp"] == "1"


def test_a_killed_worker_costs_one_retry_then_the_product_fails_and_nothing_else(tmp_path):
    attempts_x, attempts_y = tmp_path / "x.attempts", tmp_path / "y.attempts"
    products = chain(
        tmp_path / "build",
        **{
            "a/x": {"attempts": str(attempts_x), "die_times": 1},
            "a/y": {"attempts": str(attempts_y), "die_times": 2},
        },
    )
    summary = run(products, lock_dir=tmp_path / "build", jobs=2, executor="dask", progress=False)
    assert statuses(summary) == {"a/x": "ok", "a/y": "failed", "b/z": "ok", "c": "ok"}
    assert "died 2 times" in summary.failed[0].error
    assert len(attempts_x.read_text().split()) == 2 and len(attempts_y.read_text().split()) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--executor", "spark"], "executor must be one of local, dask; got 'spark'"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler needs --executor dask"),
        (["--executor", "dask", "--scheduler", "localhost"], "such as tcp://HOST:PORT"),
    ],
)
def test_cli_refuses_a_wrong_executor_or_scheduler_before_running(capsys, argv, message):
    assert main(["run", "grid", "--profile", "small", "--dry-run", *argv]) == 2
    assert message in capsys.readouterr().err


def test_an_unreachable_scheduler_is_an_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT", 2)
    with socket.socket() as sock:  # a free port, closed again
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(UsageError, match=f"cannot reach the Dask scheduler at {address}"):
        run(chain(tmp_path), lock_dir=tmp_path, executor="dask", scheduler=address, progress=False)
    assert not (tmp_path / "a").exists()


def test_an_external_cluster_of_multithreaded_workers_is_refused(tmp_path):
    """Against a running scheduler, a worker with 2 threads is refused before anything runs."""
    dask = Path(sys.executable).with_name("dask")
    info = tmp_path / "scheduler.json"
    common = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp_path}
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", info],
        **common,
    )  # fmt: skip
    worker = None
    try:
        assert _wait(lambda: info.is_file() and info.stat().st_size > 0, 30)
        address = json.loads(info.read_text())["address"]
        worker = subprocess.Popen(
            [dask, "worker", address, "--nthreads", "2", "--no-dashboard"], **common
        )
        build = tmp_path / "build"
        with pytest.raises(UsageError, match="every Dask worker must run one thread"):
            run(chain(build), lock_dir=build, executor="dask", scheduler=address, progress=False)
        assert not (build / "a").exists()
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
