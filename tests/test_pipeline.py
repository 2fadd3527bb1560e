"""The whole pipeline in a temporary copy of the repository: the small build (the repository's
own, copied) is up to date there, one engine module (the framework trainers) is edited,
``status`` names every dependent product stale with the reason, and ``run`` remakes exactly
those."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linmnist.experiments.paths import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
COPIED = ("linmnist", "notebooks", "pyproject.toml", "requirements.lock")


def copy_repository(copy: Path) -> Path:
    """A copy of the repository's package and notebooks at ``copy`` (no results, no caches)."""
    copy.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / name)
    return copy


@pytest.fixture(scope="module")
def repo(tmp_path_factory, small_build) -> Path:
    """A copy of the repository with a copy of its small build: every product of it must be
    found up to date there, as the fingerprints depend on contents, not on places."""
    copy = copy_repository(tmp_path_factory.mktemp("repo"))
    shutil.copytree(small_build, copy / small_build.relative_to(ROOT))
    return copy


def linmnist(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run(
        [sys.executable, "-m", "linmnist", *args, "--profile", "small"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def states(output: str) -> dict[str, str]:
    """``status`` output as product -> the rest of its line."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"^(\S+)\s+(up to date|stale|missing|failed)(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2) + match.group(3)
    return found


def test_an_edited_engine_module_makes_exactly_its_dependents_stale_and_only_they_rerun(repo):
    before = states(linmnist(repo, "status").stdout)
    assert before and set(before.values()) == {"up to date"}, "the copied build is up to date"

    engine = repo / "linmnist" / "engine" / "frameworks.py"  # what the comparison runs
    engine.write_text(engine.read_text() + "\n# an edit\n")
    after = states(linmnist(repo, "status").stdout)
    assert set(after) == set(before)
    stale = {name for name, state in after.items() if state.startswith("stale")}
    assert "code (linmnist.engine.frameworks)" in after["frameworks"]
    assert "code (linmnist.engine.frameworks)" in after["notebooks/06_frameworks"]
    assert "upstream frameworks is stale" in after["notebooks/06_frameworks"]
    assert "report" in stale
    untouched = [n for n in after if n.split("/")[0] in ("grid", "subset", "stability")]
    untouched += ["notebooks/01_data", "notebooks/03_batch_size", "notebooks/07_stability"]
    assert not stale & set(untouched), "products that do not run the edited module stay made"

    planned = linmnist(repo, "run", "--dry-run").stdout
    assert {line.split()[1] for line in planned.splitlines() if line.startswith("make ")} == stale

    remade = linmnist(repo, "run", "--jobs", "2", "--no-progress")
    assert remade.returncode == 0, remade.stdout + remade.stderr
    counts = re.findall(r"(\d+) (ok|skipped|failed)", remade.stdout)
    ok = sum(int(n) for n, s in counts if s == "ok")
    skipped = sum(int(n) for n, s in counts if s == "skipped")
    assert (ok, skipped) == (len(stale), len(after) - len(stale))
    assert (repo / "reports" / "mnist" / "small" / "report.html").is_file()
    assert not (repo / "reports" / "report.html").exists(), "the small build is kept apart"
    assert set(states(linmnist(repo, "status").stdout).values()) == {"up to date"}
