"""tools/bad-inputs.py in the test suite, so in CI (`make test`): every one of its bad inputs
gets a clear refusal, a heal or a correct result (its exit status is 1 otherwise)."""

import subprocess
import sys

import pytest

from linmnist.experiments.paths import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_every_bad_input_is_refused_healed_or_answered_right():
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bad-inputs.py")], cwd=ROOT, capture_output=True,
        text=True, timeout=3600,
    )  # fmt: skip
    # its exit status is the verdict; the lines naming "wrong" (a label may too) say why
    wrong = [line for line in done.stdout.splitlines() if " wrong" in line]
    assert done.returncode == 0, "\n".join(wrong) + done.stderr[-2000:]
