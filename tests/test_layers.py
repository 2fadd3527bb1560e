"""The package's layers: imports point only downward (report -> experiments -> engine), no
module imports itself through a cycle, and no notebook starts runs."""

from pathlib import Path

import nbformat
import pytest

from linmnist.experiments.fingerprint import imported_modules, module_path, notebook_code
from linmnist.experiments.paths import NOTEBOOKS, PACKAGE

LAYERS = ("engine", "experiments", "report")  # lowest first
MODULES = sorted(
    ".".join(("linmnist", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
        ".__init__"
    )
    for path in PACKAGE.rglob("*.py")
)
# Calls that start runs: papermill, the runner, training a grid from a notebook.
RUN_STARTERS = (
    "papermill",
    "linmnist.experiments.runner",
    "linmnist.experiments.cells",
    "linmnist.experiments.notebooks",
    "linmnist.cli",
    "train_seeds",
    "subprocess",
)


def layer(module: str) -> int | None:
    """The layer index of a module, None for the top-level modules (CLI, __main__)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def imports(module: str) -> set[str]:
    return imported_modules(module_path(module).read_text(encoding="utf-8"))


@pytest.mark.parametrize("module", [m for m in MODULES if layer(m) is not None])
def test_a_module_imports_only_its_own_layer_and_those_below(module):
    upward = [m for m in imports(module) if layer(m) is not None and layer(m) > layer(module)]
    top = [m for m in imports(module) if layer(m) is None and m != "linmnist"]
    assert not upward and not top, f"{module} imports {upward + top} from above its layer"


def test_no_import_cycles():
    graph = {m: {i for i in imports(m) if i in MODULES and i != m} for m in MODULES}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError(f"import cycle: {' -> '.join([*stack, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [])


def test_the_cycle_check_finds_a_cycle():
    """The checker above is not vacuous: a two-module cycle in parsed source is an import."""
    assert imported_modules("from linmnist.engine import sgd") == {
        "linmnist.engine",
        "linmnist.engine.sgd",
    }


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_no_notebook_starts_runs(path: Path):
    code = notebook_code(path)
    found = [name for name in RUN_STARTERS if name in code]
    assert not found, f"{path.name} refers to {found}: notebooks read results, they never run"
    nb = nbformat.read(path, as_version=4)
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", []), "the first code cell is parameters"
