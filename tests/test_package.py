"""What importing the package does to the processes it starts."""

import os
import subprocess
import sys

import pytest

SHOW = "import linmnist, os; print(os.environ['NUMPY_MADVISE_HUGEPAGE'])"


@pytest.mark.parametrize(("given", "seen"), [(None, "0"), ("1", "1")])
def test_numpy_huge_page_advice_is_off_unless_the_environment_asks(given, seen):
    """linmnist turns numpy's huge-page advice off for the processes it starts (their first
    large arrays cost seconds of kernel time otherwise) and leaves a value already set."""
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if given is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = given
    done = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == seen
