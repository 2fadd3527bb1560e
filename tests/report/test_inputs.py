"""What notebooks read: results of a build, or one line with a command that makes them (a
command that runs); a task the configuration leaves out, one line saying so; the notebooks'
parameters checked on entry."""

import ast
import shlex

import nbformat
import pytest

from linmnist.cli import main
from linmnist.engine.validation import UsageError
from linmnist.experiments.fingerprint import module_closure
from linmnist.experiments.notebooks import LEFT_OUT
from linmnist.experiments.paths import NOTEBOOKS, REPORTS
from linmnist.report.inputs import (
    OWN_PARAMETERS,
    MissingResults,
    ParameterError,
    TaskNotConfigured,
    check_parameters,
    configured,
    locate_build,
    require_tasks,
    run_command,
    size_results,
    task_results,
    theory_results,
)
from linmnist.report.pipeline import pipeline
from linmnist.report.scaling import read_floor, read_scaling

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


@pytest.mark.slow  # about a second: make test, not make test-fast
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
    with pytest.raises(TaskNotConfigured, match=r"no \[sizes\] task"):
        size_results(config=config)


@pytest.mark.parametrize(
    ("read", "task"),
    [
        (lambda build: read_scaling(**build), "scaling"),
        (lambda build: read_floor(None, **build), "stability"),
        (lambda build: theory_results(("grid", "stability"), **build), "stability"),
        (lambda build: task_results("edge", **build), "edge"),
        (lambda build: task_results("subset", **build), "subset"),
        (lambda build: size_results(**build), "sizes"),
    ],
)
def test_a_task_the_configuration_lacks_is_one_line_saying_so_whatever_reads_it(config, read, task):
    """With only [grid], every reader of another task says so (no KeyError, no command to
    make a product that no pipeline has), before looking for any result."""
    with pytest.raises(TaskNotConfigured) as caught:
        read({"profile": "tiny", "config": config})
    message = str(caught.value)
    assert f"defines no [{task}] task" in message and "\n" not in message
    assert caught.value._render_traceback_() == [f"TaskNotConfigured: {message}"]
    assert TaskNotConfigured.__name__ == LEFT_OUT, "the notebook job knows it by this name"


SIZES = "[sizes]\nn_prime = [10, 20]\nseeds = [0]\n"
SUBSET = (
    "[subset]\nn_prime = [50]\nlr = 0.01\nbatch_size = 10\niterations = 5\nseeds = [0]\n"
    "fidelity_seeds = []\neval_every = 5\n"
)
SCALING = (
    "[scaling]\nbatch_size = [8]\ntargets = [0.1]\nseeds = [0]\nlr_top = 0.9\nlr_per_octave = 1\n"
    "lr_octaves = 1\nmax_steps = 10\ntrajectory_points = 2\n"
)


@pytest.mark.parametrize(
    ("text", "profile"),
    [(None, None), (None, "small"), (CONFIG, "tiny"), (CONFIG + SIZES + SCALING, None),
     (SUBSET + SIZES, None), (CONFIG + SIZES, "tiny")],
)  # fmt: skip
def test_configured_lists_the_groups_and_predictions_the_pipeline_makes(tmp_path, text, profile):
    path = None
    if text is not None:
        path = tmp_path / "configured.toml"
        path.write_text(text)
    products = [
        p for p in pipeline("mnist", profile, path) if p.group not in ("notebooks", "report")
    ]
    expected = {p.group for p in products} | {p.name for p in products if p.group == "theory"}
    assert configured(profile=profile, config=path) == expected


def test_the_notebooks_readers_do_not_import_the_pipeline():
    """Every notebook imports them: the pipeline's modules (the framework trainers, ...) in
    their code fingerprint would make every notebook stale when any of those changes."""
    assert "linmnist.report.pipeline" not in module_closure(["linmnist.report.inputs"])


def test_a_suggested_command_is_one_the_command_line_accepts(config):
    with pytest.raises(TaskNotConfigured, match=r"\[stability\]"):
        run_command("mnist", "tiny", config, ("theory/stability",))
    with pytest.raises(TaskNotConfigured, match=r"no \[sizes\] and \[edge\] task"):
        run_command("mnist", "tiny", config, ("sizes/n10", "grid/lr0.01_bs10", "edge"))
    with pytest.raises(UsageError, match="dataset must be one of"):
        task_results("grid", dataset="nonsense")
    with pytest.raises(UsageError, match="profile must be one of tiny; got 'huge'"):
        theory_results(("grid",), profile="huge", config=config)
    require_tasks(("grid", "theory/grid", "frameworks"), profile="tiny", config=config)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"build_dir": 7}, "build_dir must be a path (str or os.PathLike) or None, got 7 (int)"),
        ({"build_dir": "/nonexistent"}, "build_dir must be None or an existing directory"),
        ({"profile": [1, 2]}, "profile must be None or a profile name (str), got [1, 2] (list)"),
        ({"profile": "huge"}, "profile must be one of small, fidelity; got 'huge'"),
        ({"dataset": 5}, "dataset must be one of mnist, fashion-mnist; got 5"),
        ({"dataset": "nonsense"}, "dataset must be one of mnist, fashion-mnist; got 'nonsense'"),
        ({"config": 7}, "config must be a path (str or os.PathLike) or None, got 7 (int)"),
        ({"config": "nope.toml"}, "config must be an existing TOML file"),
        ({"index": 60000}, "index must be an integer in [0, 59999], got 60000"),
        ({"index": 1.5}, "index must be an integer in [0, 59999], got 1.5"),
        ({"lr": "0.1"}, "lr must be a finite number > 0, got '0.1' (str)"),
        ({"batch_size": 0}, "batch_size must be an integer in [1, 60000], got 0"),
    ],
)
def test_a_wrong_notebook_parameter_is_one_line_naming_it_and_the_accepted_values(given, message):
    build = {"dataset": "mnist", "profile": "small", "config": None, "build_dir": None}
    with pytest.raises(ParameterError) as caught:
        check_parameters(**{**build, **given})
    assert isinstance(caught.value, UsageError) and str(caught.value).startswith(message)
    assert caught.value._render_traceback_() == [f"ParameterError: {caught.value}"]


def test_right_notebook_parameters_pass(tmp_path):
    check_parameters(dataset="fashion-mnist", profile=None, config=None, build_dir=tmp_path)
    check_parameters(
        dataset="mnist", profile="small", config=None, build_dir=None, index=0, lr=1e-3,
        batch_size=100,
    )  # fmt: skip


def _parameters(cell) -> list[str]:
    return [t.id for node in ast.parse(cell.source).body for t in node.targets]


def _calls(cell) -> list[ast.Call]:
    code = [line for line in cell.source.splitlines() if not line.startswith("%")]
    tree = ast.parse("\n".join(code))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_parameters"
    ]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_checks_all_its_parameters_first(path):
    """The cell after the parameters cell calls check_parameters once, with every parameter."""
    cells = nbformat.read(path, as_version=4).cells
    (i,) = [k for k, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    names = _parameters(cells[i])
    assert set(names) - {"dataset", "profile", "config", "build_dir"} <= set(OWN_PARAMETERS)
    (call,) = _calls(cells[i + 1])
    assert {k.arg: getattr(k.value, "id", None) for k in call.keywords} == {n: n for n in names}
