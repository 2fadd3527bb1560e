"""The command line: one argparse tree; one line and exit status 2 for a wrong usage or a data
cache that cannot serve, nothing made; 1 for a run that fails or is cut short; the data
directory resolved once."""

import os

import pytest

from linmnist.cli import main, resolve_data_dir
from linmnist.engine import data
from linmnist.engine.validation import RunFailedError, UsageError
from linmnist.experiments import paths
from linmnist.experiments.paths import DEFAULT_CONFIG


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--profile", "huge"], "profile must be one of small, fidelity; got 'huge'"),
        (["status", "--dataset", "cifar"], "dataset must be one of mnist, fashion-mnist"),
        (["run", "nothing-like-this", "--profile", "small"], "target 'nothing-like-this'"),
        (["report", "--jobs", "0"], "jobs must be an integer"),
        (["run", "--config", "/nonexistent.toml"], "config must be an existing TOML file"),
        (["run", "--jobs", "x"], "argument --jobs: invalid int value: 'x'"),
        (["status", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["bench", "--iterations", "2"], "--iterations must be an integer >= 5, got 2"),
        (["data", "--name", "cifar"], "argument --name: invalid choice: 'cifar'"),
        (["train"], "argument COMMAND: invalid choice: 'train'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_a_wrong_usage_is_one_line_and_status_2_and_makes_nothing(
    capsys, monkeypatch, tmp_path, argv, message
):
    # The builds go to an empty directory of this test's own: the other test worker makes
    # the small build under the repository's reports/ meanwhile.
    reports = tmp_path / "reports"
    monkeypatch.setattr(paths, "REPORTS", reports)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not reports.exists() or not any(p.is_file() for p in reports.rglob("*"))


def test_a_relative_data_dir_is_made_absolute_once(monkeypatch, tmp_path):
    """Workers and kernels run elsewhere (notebooks/): they must all see the same data file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINMNIST_DATA_DIR", "data")
    resolve_data_dir()
    assert os.environ["LINMNIST_DATA_DIR"] == str(tmp_path / "data")


def _loop(tmp):
    (tmp / "a").symlink_to(tmp / "b")
    (tmp / "b").symlink_to(tmp / "a")
    return tmp / "a"


def _unreadable(tmp, monkeypatch):
    listdir = os.listdir

    def refuse(path):
        if str(path) == str(tmp / "data"):
            raise PermissionError(13, "Permission denied")
        return listdir(path)

    monkeypatch.setattr(data.os, "listdir", refuse)  # root reads any directory
    (tmp / "data").mkdir()
    return tmp / "data"


def _read_only(tmp, monkeypatch):
    (tmp / "data").mkdir()
    access = os.access
    monkeypatch.setattr(
        data.os, "access", lambda p, mode: False if mode & os.W_OK else access(p, mode)
    )
    return tmp / "data"


def _empty_and_offline(tmp, monkeypatch):
    monkeypatch.setattr(data, "_sources", lambda name: [("a test source", _offline)])
    (tmp / "data").mkdir()
    return tmp / "data"


def _offline():
    raise data._Unavailable("offline in tests")


DATA_DIRS = {
    "a file": (lambda t, m: (t / "f").write_text("x") and t / "f", "is not a directory"),
    "under a file": (lambda t, m: (t / "f").write_text("x") and t / "f" / "d", "under a file"),
    "a symlink loop": (lambda t, m: _loop(t), "is a symlink loop"),
    "unreadable": (_unreadable, "cannot be read (Permission denied)"),
    "read-only without data": (_read_only, "cannot be written and holds no verified copy"),
    "empty, no source": (_empty_and_offline, "holds none and no source gave one"),
}


@pytest.mark.parametrize("command", ["status", "run", "report", "data"])
@pytest.mark.parametrize("problem", DATA_DIRS)
def test_a_data_cache_problem_is_one_line_naming_it_and_status_2_from_every_command(
    capsys, monkeypatch, tmp_path, command, problem
):
    make, reason = DATA_DIRS[problem]
    directory = make(tmp_path, monkeypatch)
    monkeypatch.setenv("LINMNIST_DATA_DIR", str(directory))
    argv = [command, "--dataset" if command != "data" else "--name", "fashion-mnist"]
    assert main([*argv, "--dry-run"] if command in ("run", "report") else argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"LINMNIST_DATA_DIR={directory}" in err and reason in err


@pytest.mark.slow  # about a second: make test, not make test-fast
def test_jobs_beyond_what_the_machine_holds_are_capped_with_a_note(capsys, monkeypatch, tmp_path):
    from linmnist.experiments import jobs

    monkeypatch.setattr(jobs, "available_cores", lambda: 2)
    # a copy of the default configuration: its build is one no other test is making (a dry run
    # of the repository's small build would meet the lock of the test making it)
    config = tmp_path / "copy.toml"
    config.write_text(DEFAULT_CONFIG.read_text())
    argv = ["run", "--config", str(config), "--profile", "small", "--jobs", "1000", "--dry-run"]
    assert main(argv) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: --jobs 1000 capped at 2: this machine has 2")


def test_help_lists_every_command_and_exits_0(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("data", "run", "status", "report", "bench"))


@pytest.mark.parametrize(
    ("error", "status"),
    [(UsageError("told"), 2), (RunFailedError("told"), 1), (RuntimeError("told"), 1)],
)
def test_an_error_of_a_command_is_one_line_with_the_status_of_its_kind(
    capsys, monkeypatch, error, status
):
    """2 for a usage error (the caller must change something), 1 for a run that failed."""
    from linmnist.experiments import runner

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(runner, "assess", fail)
    assert main(["status", "--profile", "small"]) == status
    assert capsys.readouterr().err == "error: told\n"


def test_a_failed_product_is_exit_status_1(capsys, monkeypatch):
    from linmnist.experiments import runner
    from linmnist.experiments.jobs import Outcome

    failed = runner.RunSummary((Outcome("grid/x", "failed", "told"),), 1.0)
    monkeypatch.setattr(runner, "run", lambda *args, **kwargs: failed)
    assert main(["run", "grid", "--profile", "small", "--no-progress"]) == 1
    assert "FAILED grid/x: told" in capsys.readouterr().out


def test_a_run_cut_short_is_one_line_and_status_1(capsys, monkeypatch):
    """A run cut short after it started (its Dask scheduler lost) is not a usage error."""
    from linmnist.experiments import runner
    from linmnist.experiments.jobs import RunAborted

    def lost(*args, **kwargs):
        raise RunAborted("lost the Dask scheduler at tcp://127.0.0.1:1: ...")

    monkeypatch.setattr(runner, "run", lost)
    argv = ["grid", "--profile", "small", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1"]
    assert main(["run", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: lost the Dask scheduler at tcp://127.0.0.1:1: ..."
