"""The dask executor: the runner's toy pipeline on a LocalCluster of 2 workers on loopback
and on an external scheduler with `dask worker` processes, killed workers, a lost scheduler,
and refusals of wrong clusters and addresses."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from linmnist.cli import main
from linmnist.engine.validation import UsageError
from linmnist.experiments.jobs import RunAborted
from linmnist.experiments.runner import assess, run

from .test_runner import TESTS, _wait, chain, statuses

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
    assert len(attempts_y.read_text().split()) == 2
    # x dies once and is retried. Its second, good attempt can be made a third time when the
    # worker holding its result is the one a/y kills before the runner has read it: Dask
    # recomputes a result its worker took down with it. Never more.
    assert len(attempts_x.read_text().split()) in (2, 3)


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
    # named by its path: the module (and distributed, seconds of imports) is imported where
    # a test of this slow module runs, not where make test-fast only collects it
    monkeypatch.setattr("linmnist.experiments.dask_executor.CONNECT_TIMEOUT", 2)
    with socket.socket() as sock:  # a free port, closed again
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(UsageError, match=f"cannot reach the Dask scheduler at {address}"):
        run(chain(tmp_path), lock_dir=tmp_path, executor="dask", scheduler=address, progress=False)
    assert not (tmp_path / "a").exists()


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]


@contextlib.contextmanager
def external_cluster(
    tmp: Path, machines: int, *, nworkers: int = 1, nthreads: int = 1
) -> Iterator[Cluster]:
    """A ``dask scheduler`` on loopback that retries nothing, started as the README says, and
    ``machines`` ``dask worker`` commands of ``nworkers`` workers each (under nannies, each
    command in its own process group), stopped after. With one-threaded workers, it waits
    until they have all joined."""
    dask = Path(sys.executable).with_name("dask")
    info = tmp / "scheduler.json"
    path = os.pathsep.join([str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0", "PYTHONPATH": path}
    common = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp,
              "env": env, "start_new_session": True}  # fmt: skip
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", info],
        **common,
    )  # fmt: skip
    started = []
    try:
        assert _wait(lambda: info.is_file() and info.stat().st_size > 0, 30)
        address = json.loads(info.read_text())["address"]
        command = [dask, "worker", address, "--nworkers", str(nworkers), "--nthreads",
                   str(nthreads), "--no-dashboard"]  # fmt: skip
        started = [subprocess.Popen(command, **common) for _ in range(machines)]
        if nthreads == 1:
            from distributed import Client  # seconds of imports: only where a cluster runs

            with Client(address, timeout=30) as client:
                client.wait_for_workers(machines * nworkers, timeout=60)
        yield Cluster(address, scheduler, started)
    finally:
        for process in (*started, scheduler):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def kill_when_paused(marker: Path, kill, then: Path | None = None) -> threading.Thread:
    """A thread that, once a job has written its pid to ``marker``, calls ``kill(pid)``,
    and 2 s later creates ``then``."""

    def watch() -> None:
        assert _wait(lambda: marker.is_file() and marker.stat().st_size > 0, 60)
        kill(json.loads(marker.read_text())["pid"])
        if then is not None:
            time.sleep(2)
            then.write_text("go")

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.integration
def test_a_worker_lost_mid_product_at_an_external_scheduler_costs_one_retry(tmp_path):
    """Two `dask worker`s of a scheduler that retries nothing; the one making a/x is killed
    (nanny and worker) while the other is busy with a/y: a/x is made again once, on the
    survivor, once a/y is done, and the run completes with every record right."""
    build, marker, hold = tmp_path / "build", tmp_path / "x.pid", tmp_path / "hold"
    attempts = tmp_path / "x.attempts"
    products = chain(
        build,
        **{
            "a/x": {"pause_once": str(marker), "attempts": str(attempts), "die_times": 0},
            "a/y": {"hold": str(hold)},
        },
    )
    with external_cluster(tmp_path, 2) as cluster:
        killer = kill_when_paused(
            marker, lambda pid: os.killpg(os.getpgid(pid), signal.SIGKILL), hold
        )
        summary = run(
            products, lock_dir=build, jobs=2, executor="dask", scheduler=cluster.address,
            progress=False,
        )  # fmt: skip
        killer.join(timeout=5)
        alive = [w.poll() is None for w in cluster.workers]
    assert summary.ok and set(statuses(summary).values()) == {"ok"}
    assert sorted(alive) == [False, True], "exactly one worker was killed"
    killed = json.loads(marker.read_text())["pid"]
    assert [int(pid) for pid in attempts.read_text().split()] != [killed]
    assert len(attempts.read_text().split()) == 1, "made again once"
    for product in products:
        record = json.loads(product.record.read_text())
        assert record["status"] == "ok" and record["params"] == product.params
    assert json.loads((build / "a" / "x.txt").read_text()) == products[0].params
    assert {s.state for s in assess(products).values()} == {"up to date"}


@pytest.mark.integration
def test_a_worker_process_killed_alone_is_restarted_by_its_nanny_and_its_product_made_again(
    tmp_path,
):
    """One `dask worker` command of two workers; the process making a/x is killed, not its
    nanny: the command lives on, a/x is made again once and the run completes."""
    build, marker, attempts = tmp_path / "build", tmp_path / "x.pid", tmp_path / "x.attempts"
    products = chain(
        build, **{"a/x": {"pause_once": str(marker), "attempts": str(attempts), "die_times": 0}}
    )
    with external_cluster(tmp_path, 1, nworkers=2) as cluster:
        killer = kill_when_paused(marker, lambda pid: os.kill(pid, signal.SIGKILL))
        summary = run(
            products, lock_dir=build, jobs=2, executor="dask", scheduler=cluster.address,
            progress=False,
        )  # fmt: skip
        killer.join(timeout=5)
        alive = cluster.workers[0].poll() is None
    assert summary.ok and set(statuses(summary).values()) == {"ok"}
    assert alive, "the worker command, its nanny, lives on"
    retries = [int(pid) for pid in attempts.read_text().split()]
    assert len(retries) == 1 and retries != [json.loads(marker.read_text())["pid"]]
    assert {s.state for s in assess(products).values()} == {"up to date"}


@pytest.mark.integration
def test_a_lost_scheduler_is_one_error_naming_it_and_no_record_is_touched(tmp_path, capfd):
    build, marker = tmp_path / "build", tmp_path / "x.pid"
    products = chain(build, **{"a/x": {"pause": str(marker)}})
    with external_cluster(tmp_path, 1) as cluster:
        killer = kill_when_paused(
            marker, lambda pid: os.killpg(cluster.scheduler.pid, signal.SIGKILL)
        )
        with pytest.raises(RunAborted, match=f"lost the Dask scheduler at {cluster.address}"):
            run(
                products, lock_dir=build, executor="dask", scheduler=cluster.address,
                progress=False,
            )  # fmt: skip
        killer.join(timeout=5)
    assert not capfd.readouterr().err, "nothing but the error"
    assert {s.state for s in assess(products).values()} == {"missing"}


def test_an_external_cluster_of_multithreaded_workers_is_refused(tmp_path):
    """Against a running scheduler, a worker with 2 threads is refused before anything runs."""
    with external_cluster(tmp_path, 1, nthreads=2) as cluster:
        build = tmp_path / "build"
        with pytest.raises(UsageError, match="every Dask worker must run one thread"):
            run(
                chain(build), lock_dir=build, executor="dask", scheduler=cluster.address,
                progress=False,
            )  # fmt: skip
        assert not (build / "a").exists()
