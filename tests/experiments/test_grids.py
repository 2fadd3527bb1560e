"""The grid configuration: the study's grids as defined, profiles, and every refusal."""

import ast
import itertools
import re
from pathlib import Path

import numpy as np
import papermill
import pytest

from linmnist.engine.validation import UsageError
from linmnist.experiments.grids import (
    DEFAULT_CONFIG,
    TASKS,
    cell_name,
    check_n_train,
    load_grids,
)

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


GRID = {
    "lr": "[0.01]",
    "batch_size": "[10, 100]",
    "iterations": "5",
    "seeds": "[0, 1]",
    "fidelity_seeds": "[0]",
    "eval_every": "2",
}
SUBSET = {
    "n_prime": "[100]",
    "lr": "0.001",
    "batch_size": "100",
    "iterations": "5",
    "seeds": "[0, 1]",
    "fidelity_seeds": "[0]",
    "eval_every": "2",
}


def write_config(tmp_path: Path, grid=None, subset=None, extra: str = "") -> Path:
    """A small valid configuration with a profile "tiny"; ``grid``/``subset`` map keys to TOML
    values that replace (or add to, or with None remove from) the defaults above."""
    lines = []
    for table, base, changes in (("grid", GRID, grid), ("subset", SUBSET, subset)):
        values = {**base, **(changes or {})}
        lines += [f"[{table}]"] + [f"{k} = {v}" for k, v in values.items() if v is not None]
    lines += ["[profiles.tiny.grid]", "iterations = 3", extra]
    path = tmp_path / "grids.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_default_config_defines_the_studys_grids():
    """Task 3 is 3 lr x 4 batch sizes at 1,000 iterations, Task 5 four N' at batch 100, lr 0.001,
    500 iterations; every cell has >= 5 seeds, seed 0 evaluated after every iteration."""
    grids = load_grids()
    grid = {(c.params["lr"], c.params["batch_size"]) for c in grids["grid"]}
    assert grid == {(lr, b) for lr in (0.1, 0.01, 0.001) for b in (1, 10, 100, 1000)}
    assert [c.params["n_prime"] for c in grids["subset"]] == [100, 500, 1000, 10000]
    assert {c.params["iterations"] for c in grids["grid"]} == {1000}
    assert {
        (c.params["lr"], c.params["batch_size"], c.params["iterations"]) for c in grids["subset"]
    } == {(0.001, 100, 500)}
    for cell in grids["grid"] + grids["subset"]:
        assert len(cell.params["seeds"]) >= 5
        assert cell.params["fidelity_seeds"] == [0]
    assert grids["grid"][0].name == "lr0.1_bs1"
    assert grids["subset"][-1].name == "n10000"


def test_profiles_override_only_their_keys():
    """The small profile shrinks the grids; the fidelity profile keeps one seed at full fidelity."""
    small = load_grids(profile="small")
    assert [c.name for c in small["grid"]] == [
        "lr0.1_bs10",
        "lr0.1_bs100",
        "lr0.001_bs10",
        "lr0.001_bs100",
    ]
    assert [c.name for c in small["subset"]] == ["n100", "n1000"]
    assert all(c.params["iterations"] == 100 for c in small["grid"] + small["subset"])
    fidelity = load_grids(profile="fidelity")
    assert len(fidelity["grid"]) == 12
    assert all(c.params["seeds"] == [0] for c in fidelity["grid"] + fidelity["subset"])
    assert all(c.params["iterations"] == 1000 for c in fidelity["grid"])


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_defaults_are_the_small_build_of_mnist(notebook):
    """The notebooks' stored outputs (nbval) are those of the small MNIST build."""
    defaults = {
        name: ast.literal_eval(p["default"])
        for name, p in papermill.inspect_notebook(str(notebook)).items()
    }
    assert defaults["dataset"] == "mnist" and defaults["profile"] == "small"
    assert defaults["config"] is None and defaults["build_dir"] is None


def test_cell_names():
    """Cell names carry the axis values and nothing else."""
    assert cell_name("grid", lr=0.001, batch_size=100) == "lr0.001_bs100"
    assert cell_name("subset", n_prime=500) == "n500"
    assert cell_name("stability", lr=0.0316, batch_size=1) == "lr0.0316_bs1"
    with pytest.raises(ValueError, match="task must be one of grid, subset, stability"):
        cell_name("grids", n_prime=1)


@pytest.mark.parametrize(
    ("grid", "subset", "extra", "message"),
    [
        ({"batchsize": "3"}, {}, "", "grid: unknown key 'batchsize' .did you mean 'batch_size'"),
        ({}, {}, "nprime = 3", "profiles.tiny.grid: unknown key 'nprime'; accepted: lr"),
        ({}, {}, "[profiles.tiny.gird]", "profiles.tiny: unknown key 'gird'"),
        ({"lr": "[0.1, 0]"}, {}, "", r"grid.lr must be a finite number > 0, got 0"),
        ({"lr": "[-0.1]"}, {}, "", r"grid.lr must be a finite number > 0, got -0.1"),
        ({"lr": "['0.1']"}, {}, "", r"grid.lr must be a finite number > 0, got '0.1'"),
        ({"lr": "[nan]"}, {}, "", r"grid.lr must be a finite number > 0, got nan"),
        ({}, {"lr": "0.0"}, "", r"subset.lr must be a finite number > 0, got 0.0"),
        ({"batch_size": "[0]"}, {}, "", r"grid.batch_size must be an integer >= 1, got 0"),
        ({"batch_size": "[1.5]"}, {}, "", r"grid.batch_size must be an integer >= 1, got 1.5"),
        ({}, {"n_prime": "[0]"}, "", r"subset.n_prime must be an integer >= 1, got 0"),
        ({"iterations": "0"}, {}, "", r"grid.iterations must be an integer >= 1, got 0"),
        ({"eval_every": "true"}, {}, "", r"grid.eval_every must be an integer >= 1, got True"),
        ({"seeds": "[]"}, {}, "", r"grid.seeds must be a non-empty list of distinct integers"),
        ({"seeds": "[1, 1]"}, {}, "", r"grid.seeds must be a non-empty list of distinct integers"),
        ({}, {"seeds": "[-1]"}, "", r"subset.seeds must be a non-empty list of distinct integers"),
        ({"fidelity_seeds": "[7]"}, {}, "", r"grid.fidelity_seeds must be a subset of grid.seeds"),
        ({"lr": "0.01"}, {}, "", r"grid.lr must be a non-empty list of distinct values"),
        ({"lr": "[0.01, 0.01]"}, {}, "", r"grid.lr must be a non-empty list of distinct values"),
        ({"iterations": None}, {}, "", r"grid: missing parameter.s. iterations"),
    ],
)
def test_wrong_parameters_are_refused_by_name(tmp_path, grid, subset, extra, message):
    """Every wrong value or key is refused with the parameter's name and what is accepted."""
    path = write_config(tmp_path, grid, subset, extra)
    with pytest.raises(ValueError, match=message):
        load_grids(path, profile="tiny")


def test_config_level_refusals(tmp_path):
    """Unknown sections, bad TOML, a missing file and an unknown profile are refused."""
    path = write_config(tmp_path, extra="[gird]\nlr = [1]")
    with pytest.raises(ValueError, match=r"config: unknown key 'gird' .did you mean 'grid'"):
        load_grids(path)
    path.write_text("[grid\n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_grids(path)
    with pytest.raises(ValueError, match="config must be an existing TOML file"):
        load_grids(tmp_path / "absent.toml")
    with pytest.raises(ValueError, match="profile must be one of small, fidelity; got 'big'"):
        load_grids(DEFAULT_CONFIG, profile="big")
    path.write_text("[profiles.small.grid]\nlr = [1.0]\n")
    with pytest.raises(ValueError, match="config must define at least one task among grid, subset"):
        load_grids(path)


CONFIG_READS = {
    "not UTF-8": (b"[grid]\nlr = [0.1] # caf\xe9\n", "is not UTF-8 text (byte 23 is 0xe9)"),
    "UTF-16 with a BOM": (
        "[grid]\nlr = [0.1]\n".encode("utf-16"),
        "is not UTF-8 text (it starts with a UTF-16 byte-order mark)",
    ),
    "UTF-8 with a BOM": (
        b"\xef\xbb\xbf[grid]\nlr = [0.1]\n",
        "starts with a UTF-8 byte-order mark, which TOML does not allow",
    ),
    "nested 5,000 deep": (b"x = " + b"[" * 5000 + b"]" * 5000, "nests arrays or tables too deeply"),
    "over a MiB": (b"# " + b"x" * (1 << 20) + b"\n", "is larger than 1,048,576 bytes"),
}


@pytest.mark.parametrize("case", CONFIG_READS)
def test_a_configuration_that_cannot_be_read_is_refused_naming_the_file_and_why(tmp_path, case):
    content, reason = CONFIG_READS[case]
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(UsageError) as caught:
        load_grids(path)
    message = str(caught.value)
    assert f"config {str(path)!r}" in message and reason in message and "\n" not in message


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/proc/self/mem", "cannot be read: Input/output error"),
        ("/dev/zero", "(special)"),
        (".", "(a directory)"),
    ],
)
def test_a_special_file_or_a_directory_as_configuration_is_refused(path, reason):
    with pytest.raises(UsageError, match=f"{path!r}.*{re.escape(reason)}"):
        load_grids(path)


def test_a_typo_in_an_unused_profile_is_refused(tmp_path):
    """Every profile is checked, not only the one in use."""
    path = write_config(tmp_path, extra="[profiles.other.subset]\nn_primes = [5]")
    with pytest.raises(ValueError, match="profiles.other.subset: unknown key 'n_primes'"):
        load_grids(path)


def test_subset_larger_than_the_training_set_is_refused(tmp_path):
    """N' above the training-set size is refused, naming the size."""
    grids = load_grids(write_config(tmp_path))
    check_n_train(grids, 100, "mnist")
    with pytest.raises(ValueError, match=r"subset.n_prime must be in \[1, 99\] .* got 100"):
        check_n_train(grids, 99, "mnist")


def test_the_stability_sweep_is_a_log_grid():
    """The sweep: >= 12 lr from 1e-4 to 0.2 in (nearly) constant ratios, holding the study's
    three; the study's batch sizes; >= 3 seeds, thinned evaluation. The small profile shrinks
    it to a few short cells."""
    assert set(TASKS) == {"grid", "subset", "stability", "edge"}
    cells = load_grids()["stability"]
    lrs = sorted({c.params["lr"] for c in cells})
    assert len(lrs) >= 12 and (lrs[0], lrs[-1]) == (0.0001, 0.2)
    ratios = np.diff(np.log10(lrs))
    assert ratios.min() > 0.1 and ratios.max() < 0.2
    assert {0.001, 0.01, 0.1} <= set(lrs)
    assert {c.params["batch_size"] for c in cells} == {1, 10, 100, 1000}
    assert len(cells) == 4 * len(lrs)
    for cell in cells:
        assert len(cell.params["seeds"]) >= 3 and cell.params["fidelity_seeds"] == []
        assert cell.params["eval_every"] > 1 and cell.params["iterations"] == 1000
    small = load_grids(profile="small")["stability"]
    assert [c.name for c in small] == ["lr0.01_bs1", "lr0.01_bs100", "lr0.1_bs1", "lr0.1_bs100"]
    assert {c.params["iterations"] for c in small} == {100}


@pytest.mark.parametrize("name", ["..", ".", "../../etc", "a/b", "a\\b", "full", "tab\there"])
def test_a_profile_name_that_is_not_one_directory_name_is_refused(tmp_path, name):
    """A profile names its build directory: a name reaching elsewhere is refused by name."""
    path = write_config(tmp_path, extra=f"[profiles.{_toml_key(name)}.grid]\niterations = 2")
    with pytest.raises(ValueError, match=r"profile names must be a single printable directory"):
        load_grids(path)


def test_a_profile_name_with_markup_characters_is_accepted(tmp_path):
    """Characters that are only hostile in HTML or a shell are accepted (and escaped later)."""
    name = "<b>&'$`{}"
    path = write_config(tmp_path, extra=f"[profiles.{_toml_key(name)}.grid]\niterations = 2")
    assert load_grids(path, profile=name)["grid"][0].params["iterations"] == 2


def _toml_key(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'


def test_the_edge_sweep_is_a_few_close_multiples_of_the_predicted_edge():
    """Multiples of eta*(B) at most 10 % apart around 1, 20 seeds, named by multiple and B."""
    cells = load_grids()["edge"]
    factors = sorted({c.params["edge_factor"] for c in cells})
    assert factors[0] < 1 < factors[-1] and 1.0 in factors
    assert max(b / a for a, b in itertools.pairwise(factors)) <= 1.1
    assert all(len(c.params["seeds"]) >= 20 and "lr" not in c.params for c in cells)
    assert cells[0].name == f"x{factors[0]:g}_bs1"


def _seed_list(n: int) -> str:
    return "[" + ", ".join(map(str, range(n))) + "]"


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"batch_size": "[10000000]"}, r"grid.batch_size must be an integer in \[1, 65536\], "
         r"got 10000000: a batch of 10000000 samples needs 113.3 GB"),
        ({"iterations": "1000000000000"}, r"grid.iterations must be an integer in "
         r"\[1, 100,000,000\], got 1,000,000,000,000: a longer run takes hours"),
        ({"seeds": _seed_list(1001)}, "grid.seeds must hold at most 1,000 seeds, got 1,001: "
         "each seed is one run"),
        ({"lr": f"[{', '.join(str(0.1 + i) for i in range(1001))}]",
          "batch_size": f"[{', '.join(map(str, range(1, 101)))}]"},
         r"config has 100,101 cells \(grid 100,100, subset 1\); at most 100,000"),
    ],
    ids=["batch size", "iterations", "seeds", "cells"],
)  # fmt: skip
def test_work_beyond_the_limits_is_refused_naming_the_key_the_limit_and_why(
    tmp_path, grid, message
):
    with pytest.raises(UsageError, match=message):
        load_grids(write_config(tmp_path, grid))


def test_a_profile_beyond_the_limits_is_refused_too(tmp_path):
    path = write_config(tmp_path, extra="batch_size = [100000]")
    with pytest.raises(UsageError, match="grid.batch_size must be an integer in"):
        load_grids(path)
