"""The compiled-kernel cache heals: a truncated, garbled or extended numba cache file is
removed and the kernel compiled again, with one warning line, and the result is right.

Each case runs in a fresh process (numba reads its disk cache once per process) with its own
cache directory (``NUMBA_CACHE_DIR``), so the package's own cache is never touched. The kernel
is ``rank_gaps``: ``heal_on_damage`` wraps every kernel alike, and it compiles in a quarter
of the time of ``margins`` (1.7 vs 6.7 CPU-s), which five of the cases compile."""

import os
import subprocess
import sys

import numpy as np
import pytest

from linmnist.experiments.paths import ROOT

pytestmark = pytest.mark.slow

# Calls one kernel on a small case whose gap is known, and prints it: W_ref - A Xb^T is
# (-1, -1), the trained weights (0, 0), so the gap is sqrt(2).
SCRIPT = """
import numpy as np
from linmnist.engine.kernels import rank_gaps
print(rank_gaps(np.zeros((1, 1, 2)), np.zeros((1, 2)), np.ones((1, 1, 1)), np.ones((1, 2))))
"""
RIGHT = "[1.41421356]"


def kernels(cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A cache directory holding the compiled kernel, and its files' bytes."""
    directory = tmp_path_factory.mktemp("numba")
    done = kernels(directory)
    assert done.returncode == 0 and done.stdout.strip() == RIGHT, done.stderr
    files = {p: p.read_bytes() for p in directory.rglob("kernels.rank_gaps-*.nb[ic]")}
    assert {p.suffix for p in files} == {".nbi", ".nbc"}
    return directory, files


def restore(files):
    for path, raw in files.items():
        path.write_bytes(raw)


DAMAGES = {
    "truncated": lambda raw: raw[: len(raw) // 2],
    "random bytes": lambda raw: np.random.default_rng(len(raw)).bytes(len(raw)),
    "appended bytes": lambda raw: raw + b"\x80\x04garbage" * 10,
}


@pytest.mark.parametrize("suffix", [".nbi", ".nbc"])
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_kernel_cache_is_removed_and_recompiled_with_one_warning(cached, suffix, damage):
    directory, files = cached
    restore(files)
    for path in files:
        if path.suffix == suffix:
            path.write_bytes(DAMAGES[damage](files[path]))
    done = kernels(directory)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == RIGHT
    lines = done.stderr.strip().splitlines()
    if damage == "appended bytes":  # numba's unpickling stops at the end of its data
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith("warning: the compiled-kernel cache of ")
        assert "rank_gaps was damaged" in lines[0] and "compiling it again" in lines[0]
    again = kernels(directory)  # the new cache loads cleanly
    assert again.returncode == 0 and again.stdout.strip() == RIGHT and again.stderr == ""
