"""A build of a configuration that defines only [grid]: the notebooks that read another task
(03 the predicted edges of the stability sweep, 07 the sweep, 08 the scaling law) are made,
each keeping its title and saying in one line, in place of its results, what is left out."""

import shutil

import nbformat
import pytest

from linmnist.cli import main
from linmnist.experiments.paths import build_dir, notebooks_dir
from linmnist.report.build import assemble

pytestmark = [pytest.mark.integration, pytest.mark.slow]
GRID_ONLY = """[grid]
lr = [0.01]
batch_size = [10]
iterations = 5
seeds = [0]
fidelity_seeds = [0]
eval_every = 1
"""
LEFT_OUT = {"03_batch_size": "stability", "07_stability": "stability", "08_scaling_law": "scaling"}


def test_a_section_whose_task_the_configuration_lacks_says_so_in_one_line(tmp_path, capsys):
    config = tmp_path / f"grid-only-{tmp_path.name}.toml"
    config.write_text(GRID_ONLY)
    build = build_dir("mnist", None, config)
    targets = [f"notebooks/{stem}" for stem in LEFT_OUT]
    try:
        assert main(["run", *targets, "--config", str(config), "--jobs", "2", "--no-progress"]) == 0
        executed = {
            stem: nbformat.read(notebooks_dir(build) / f"{stem}.ipynb", as_version=4).cells
            for stem in LEFT_OUT
        }
        report = assemble(list(LEFT_OUT), notebooks_dir(build), dataset="mnist", profile=None)
    finally:
        shutil.rmtree(build.parent, ignore_errors=True)
    for stem, task in LEFT_OUT.items():
        line = f"This build's configuration defines no [{task}] task: the results that need it"
        assert executed[stem][0].source.startswith("# "), "the section keeps its title"
        assert [o.get("text") for o in executed[stem][-1].outputs] == [f"{line} are left out"]
    outputs = [o for cell in report.cells for o in cell.get("outputs", [])]
    assert len(outputs) == len(LEFT_OUT) and {o.output_type for o in outputs} == {"stream"}
