"""Verified outputs: a product's record vouches for the files its job made, and for itself.

When a product is made, its record stores, for each file of ``product.outputs``, the file's
size, modification time and SHA-256 (``output_digests``), and the record is sealed: it holds
the SHA-256 of its own content (``seal``). ``output_problems`` says, cheaply, whether the
record and the files are still what was made: a file whose size and modification time are
those recorded is taken as unchanged; otherwise its SHA-256 decides (a file touched but not
changed is still good). An edited record, or an output edited, truncated, emptied, replaced
or removed, makes the product stale, with the reason (``output changed: <path>``).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from linmnist.engine.data import file_sha256
from linmnist.experiments.paths import relative_to_root

SEAL = "seal"
OUTPUTS = "outputs"


def file_digest(path: str | Path) -> dict[str, Any]:
    """A file's size (bytes), modification time (ns) and SHA-256."""
    info = os.stat(path)
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": file_sha256(path)}


def output_digests(directory: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``file_digest`` of each file ``names`` in ``directory``, by name."""
    return {name: file_digest(directory / name) for name in names}


def change(path: Path, stored: Any) -> str | None:
    """How the file at ``path`` differs from its ``stored`` digest: ``"removed"``,
    ``"changed"``, ``"not in the record"`` (no digest stored), or None when it is the same.

    The SHA-256 is computed only when the size is the same but the modification time is not.
    """
    try:
        info = os.stat(path)
    except OSError:
        return "removed"
    if not isinstance(stored, dict) or not {"size", "mtime_ns", "sha256"} <= set(stored):
        return "not in the record"
    if not stat.S_ISREG(info.st_mode) or info.st_size != stored["size"]:
        return "changed"
    if info.st_mtime_ns == stored["mtime_ns"]:
        return None
    try:
        same = file_sha256(path) == stored["sha256"]
    except OSError:
        return "changed"
    return None if same else "changed"


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (JSON-ready) with its seal: the SHA-256 of the rest of its content."""
    content = {key: value for key, value in record.items() if key != SEAL}
    return {**content, SEAL: _content_digest(content)}


def intact(record: dict[str, Any]) -> bool:
    """Whether ``record`` (as read from its JSON) carries a seal matching its content."""
    content = {key: value for key, value in record.items() if key != SEAL}
    return record.get(SEAL) == _content_digest(content)


def output_problems(
    record: dict[str, Any], record_path: Path, directory: Path, names: Iterable[str]
) -> list[str]:
    """What no longer matches a product's record: the record itself (``record changed``),
    or, for a made product, each output file that changed or was removed."""
    if not intact(record):
        return [f"record changed: {relative_to_root(record_path)}"]
    if record.get("status") != "ok":
        return []
    stored = record.get(OUTPUTS) or {}
    problems = []
    for name in names:
        path = directory / name
        how = change(path, stored.get(name))
        if how is not None:
            problems.append(f"output {how}: {relative_to_root(path)}")
    return problems


def _content_digest(content: dict[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()
