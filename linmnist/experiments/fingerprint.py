"""Fingerprints: what a product's result depends on, hashed part by part (``INPUTS``), so that
``status`` can name what changed: ``code``, the source of the linmnist modules it runs (those
its job or notebook names and all they import, function-local imports too); ``notebook``, its
cells' types and sources; ``params``; ``data``, the dataset's checksum; ``dependencies``,
``requirements.lock``; ``upstream``, its upstream products' fingerprints.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat

from linmnist.experiments.paths import LOCK_FILE, PACKAGE

INPUTS = ("code", "notebook", "params", "data", "dependencies", "upstream")


def digest(value: Any) -> str:
    """SHA-256 of a JSON-serialisable value (keys sorted), or of bytes."""
    data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def combine(inputs: Mapping[str, str | None]) -> str:
    """The fingerprint of a product from the digests of its inputs."""
    return digest({key: inputs.get(key) for key in INPUTS})


def module_path(module: str) -> Path | None:
    """The source file of a linmnist module (None when there is none)."""
    parts = module.split(".")
    if parts[0] != "linmnist":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(source: str) -> set[str]:
    """The linmnist modules that Python ``source`` imports (anywhere in it)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from linmnist.report import figures` imports the module linmnist.report.figures
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return {name for name in found if module_path(name) is not None}  # linmnist's alone


@functools.cache
def _module_imports(path: Path, mtime_ns: int) -> frozenset[str]:
    return frozenset(imported_modules(path.read_text(encoding="utf-8")))


def module_closure(modules: Iterable[str]) -> list[str]:
    """``modules`` and every linmnist module they import, directly or not, sorted."""
    todo = [m for m in modules if module_path(m) is not None]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        # importing linmnist.a.b runs linmnist/__init__.py and linmnist/a/__init__.py first
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = module_path(name)
        todo += sorted(_module_imports(path, path.stat().st_mtime_ns) - seen)  # type: ignore[union-attr]
    return sorted(seen)


def code_digest(modules: Iterable[str]) -> str:
    """SHA-256 of the source of ``modules``' closure."""
    closure = module_closure(modules)
    return digest({name: module_path(name).read_bytes().hex() for name in closure})  # type: ignore[union-attr]


def notebook_code(path: str | Path) -> str:
    """The code of a notebook's code cells, joined (IPython magics dropped)."""
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    lines = [line for source in cells for line in source.splitlines()]
    return "\n".join(ln for ln in lines if not ln.lstrip().startswith(("%", "!")))


def notebook_digest(path: str | Path) -> str:
    """SHA-256 of a notebook's cell types and sources (outputs and metadata do not count)."""
    nb = nbformat.read(path, as_version=4)
    return digest([[cell.cell_type, cell.source] for cell in nb.cells])


def notebook_modules(path: str | Path) -> set[str]:
    """The linmnist modules a notebook imports."""
    return imported_modules(notebook_code(path))


@functools.cache
def dependencies_digest() -> str:
    """SHA-256 of ``requirements.lock``; outside a checkout, of the installed distributions."""
    if LOCK_FILE.is_file():
        return digest(LOCK_FILE.read_bytes())
    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())
    return digest(installed)
