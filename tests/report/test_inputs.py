"""What notebooks read: results of a build, or one line with a command that makes them."""

import shlex

import pytest

from linmnist.cli import main
from linmnist.experiments.paths import REPORTS
from linmnist.report.inputs import (
    MissingResults,
    locate_build,
    run_command,
    size_results,
    task_results,
    theory_results,
)
from linmnist.report.pipeline import pipeline

CONFIG = """
[grid]
lr = [0.01]
batch_size = [10, 100]
iterations = 5
seeds = [0]
fidelity_seeds = [0]
eval_every = 1

[profiles.tiny.grid]
iterations = 3
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "inputs_test_grids.toml"
    path.write_text(CONFIG)
    return path


def test_missing_results_name_the_command_that_makes_exactly_them(config, capsys):
    with pytest.raises(MissingResults) as caught:
        task_results("grid", profile="tiny", config=config)
    message = str(caught.value)
    assert message.startswith("2 of the 2 grid results are missing in ")
    command = message.split("run `", 1)[1].rstrip("`")
    words = shlex.split(command)
    assert words[:5] == ["python", "-m", "linmnist", "run", "grid"]
    assert main([*words[3:], "--dry-run"]) == 0
    planned = {line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert planned == {"grid/lr0.01_bs10", "grid/lr0.01_bs100"}
    assert not (REPORTS / "mnist" / f"config-{config.stem}").exists(), "a dry run makes nothing"


def test_missing_results_show_as_one_line_in_ipython():
    error = MissingResults("x are missing: run `python -m linmnist run`")
    assert error._render_traceback_() == [
        "MissingResults: x are missing: run `python -m linmnist run`"
    ]


def test_the_status_command_lists_the_products_of_its_build(capsys):
    words = shlex.split(run_command("mnist", "small", verb="status"))
    assert words[:4] == ["python", "-m", "linmnist", "status"]
    assert main(words[3:]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[:-1]}
    assert listed == {p.name for p in pipeline("mnist", "small")}


def test_run_command_names_the_build():
    assert run_command() == "python -m linmnist run"
    assert run_command("fashion-mnist", "small", targets=("subset",)) == (
        "python -m linmnist run subset --profile small --dataset fashion-mnist"
    )


def test_builds_are_apart():
    assert locate_build() == REPORTS
    assert locate_build("mnist", "small") == REPORTS / "mnist" / "small"
    assert locate_build("fashion-mnist") == REPORTS / "fashion-mnist" / "full"


def test_missing_predictions_name_the_command_that_makes_them(config, capsys):
    with pytest.raises(MissingResults, match="the predictions of grid are missing") as caught:
        theory_results(("grid",), profile="tiny", config=config)
    words = shlex.split(str(caught.value).split("run `", 1)[1].rstrip("`"))
    assert main([*words[3:], "--dry-run"]) == 0
    planned = {line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert planned == {"theory/grid"}


def test_missing_sizes_name_the_product_that_makes_them(tmp_path):
    config = tmp_path / "sizes_grids.toml"
    config.write_text(
        "[subset]\nn_prime = [10]\nlr = 0.01\nbatch_size = 5\niterations = 5\nseeds = [0]\n"
        "fidelity_seeds = []\neval_every = 5\n\n[sizes]\nn_prime = [10, 20]\nseeds = [0]\n"
    )
    with pytest.raises(MissingResults, match=r"the results of N' = 10 are missing .* sizes/n10"):
        size_results(config=config)
    config.write_text(CONFIG)
    with pytest.raises(MissingResults, match=r"no \[sizes\] section"):
        size_results(config=config)
