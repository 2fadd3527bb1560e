"""tools/bad-inputs.py in the test suite, so in CI (`make test`): every one of its bad inputs
gets a clear refusal, a heal or a correct result. One case per family, so that the workers of
pytest-xdist share them out; each family runs in this process, in a temporary directory of
its own, as the script's ``main`` runs it. The families that another test makes already
(``TESTED_ELSEWHERE``) are left to it."""

import importlib.util

import pytest

from linmnist.experiments.paths import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _load_script():
    spec = importlib.util.spec_from_file_location("bad_inputs", ROOT / "tools" / "bad-inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BAD_INPUTS = _load_script()
# Families whose cases another test makes, with stricter assertions: not made twice.
TESTED_ELSEWHERE = {
    "kernel cache": "tests/engine/test_kernel_cache.py (the same three damages of each file)",
    "partial notebooks": "tests/report/test_partial_config.py (the same three notebooks)",
    "dask cluster": "tests/experiments/test_dask_executor.py (an external cluster: a worker "
    "process killed alone, a worker machine lost, a product's worker killed twice, the "
    "scheduler killed)",
}


@pytest.mark.parametrize("family", [f for f in BAD_INPUTS.FAMILIES if f not in TESTED_ELSEWHERE])
def test_every_bad_input_is_refused_healed_or_answered_right(family):
    results = BAD_INPUTS.family_outcomes(family)
    wrong = [f"{label}: {outcome}" for label, outcome in results if outcome.startswith("wrong")]
    assert results and not wrong, "\n".join(wrong)
