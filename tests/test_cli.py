"""The command line: one line and exit status 2 for a wrong usage, nothing made; the data
directory resolved once."""

import os

import pytest

from linmnist.cli import report_main, resolve_data_dir, run_main, status_main
from linmnist.experiments.paths import REPORTS


@pytest.mark.parametrize(
    ("main", "argv", "message"),
    [
        (run_main, ["--profile", "huge"], "profile must be one of: small, fidelity; got 'huge'"),
        (status_main, ["--dataset", "cifar"], "dataset must be one of mnist, fashion-mnist"),
        (run_main, ["nothing-like-this", "--profile", "small"], "target 'nothing-like-this'"),
        (report_main, ["--jobs", "0"], "jobs must be an integer"),
        (run_main, ["--config", "/nonexistent.toml"], "config must be an existing TOML file"),
        (run_main, ["--jobs", "x"], "argument --jobs: invalid int value: 'x'"),
        (status_main, ["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_a_wrong_usage_is_one_line_and_status_2_and_makes_nothing(capsys, main, argv, message):
    before = sorted(REPORTS.rglob("*.json")) if REPORTS.is_dir() else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert (sorted(REPORTS.rglob("*.json")) if REPORTS.is_dir() else []) == before


def test_a_relative_data_dir_is_made_absolute_once(monkeypatch, tmp_path):
    """Workers and kernels run elsewhere (notebooks/): they must all see the same data file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINMNIST_DATA_DIR", "data")
    resolve_data_dir()
    assert os.environ["LINMNIST_DATA_DIR"] == str(tmp_path / "data")
