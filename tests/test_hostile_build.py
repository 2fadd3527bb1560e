"""A whole build in hostile places, with hostile names: the repository copied into a directory
whose name holds spaces, braces, quotes, ``$``, backticks, a newline and ``<>&``; a relative
``LINMNIST_DATA_DIR`` of the same kind; a configuration file and a profile whose names are HTML
that would run a script. The report is made, and in headless Chromium no script of theirs
runs and the names appear literally."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_pipeline import copy_repository

from linmnist.engine.data import DATA_DIR_ENV, cache_path
from linmnist.experiments.paths import DEFAULT_CONFIG

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]
HOSTILE_DIR = "re po {x} 'q' \"d\" $HOME `id` <i>&amp;\nnl"
# Each would mark the page if it ran as HTML: the test looks for the mark.
CONFIG_NAME = 'cfg <img src=x onerror="document.documentElement.dataset.pwned=1">.toml'
PROFILE = "<img src=y onerror=document.documentElement.dataset.pwned=2> & $x$ `t` *e*"


def _config(directory: Path) -> Path:
    """The default configuration with its small profile renamed to ``PROFILE``."""
    profile = PROFILE.replace("\\", "\\\\").replace('"', '\\"')
    text = DEFAULT_CONFIG.read_text().replace("[profiles.small.", f'[profiles."{profile}".')
    path = directory / CONFIG_NAME
    path.write_text(text)
    return path


def copy_results(build: Path, to: Path, leave_out: tuple[str, ...]) -> None:
    """The results of ``build`` (``results/<task>/``), but those of ``leave_out``, into ``to``."""
    for task in (build / "results").iterdir():
        if task.name not in leave_out:
            shutil.copytree(task, to / "results" / task.name)


@pytest.fixture(scope="module")
def hostile_build(tmp_path_factory, small_build) -> tuple[Path, subprocess.CompletedProcess]:
    """The build, made in the hostile copy: its grid and subset cells, its notebooks and its
    report; the results of the other tasks (the same settings) are the small build's,
    copied, so as not to train them once more (the grid and subset cells take the runner's
    path through the hostile directories)."""
    repo = copy_repository(tmp_path_factory.mktemp("hostile") / HOSTILE_DIR)
    data_dir = "data {d} `x` $y"  # relative: resolved once, used by workers and kernels alike
    (repo / data_dir).mkdir()
    shutil.copy2(cache_path("mnist"), repo / data_dir / "mnist.npz")
    config = _config(repo.parent)
    build = repo / "reports" / "mnist" / f"config-{Path(CONFIG_NAME).stem}" / PROFILE
    copy_results(small_build, build, leave_out=("grid", "subset"))
    env = {**os.environ, "PYTHONPATH": str(repo), DATA_DIR_ENV: data_dir}
    made = subprocess.run(
        [sys.executable, "-m", "linmnist", "report", "--config", str(config), "--profile",
         PROFILE, "--jobs", "2", "--no-progress"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    return build, made


def test_a_build_in_a_hostile_directory_with_hostile_names_is_made(hostile_build):
    build, made = hostile_build
    assert made.returncode == 0, made.stdout + made.stderr
    assert "FAILED" not in made.stdout and "cuts off" not in made.stderr
    assert "[IPKernelApp]" not in made.stderr, "the kernels' log reaches the output"
    for name in ("report.html", "report.pdf", "report.ipynb"):
        assert (build / name).is_file(), name
    assert not any(build.rglob("*.staging")), "no debris"


def test_the_hostile_report_runs_no_script_of_theirs_and_shows_the_names_literally(
    hostile_build,
):
    from playwright.sync_api import sync_playwright
    from report.test_build import CHROMIUM_FLAGS, chromium

    build, made = hostile_build
    assert made.returncode == 0, made.stdout + made.stderr
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto((build / "report.html").resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(1500)  # onerror handlers of broken images fire after load
            pwned = page.evaluate("() => document.documentElement.dataset.pwned || null")
            text = page.evaluate("() => document.body.innerText")
            title = page.title()
        finally:
            browser.close()
    assert pwned is None, f"a script from a name ran (mark {pwned})"
    assert PROFILE in text and PROFILE in title
