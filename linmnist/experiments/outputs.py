"""Verified outputs: a product's record vouches for the files its job made, and for itself.

A record stores each output's size, modification time and SHA-256 (``output_digests``) and is
sealed with the SHA-256 of its content (``seal``); ``output_problems`` names what changed (a
file touched but not changed is still good).
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
    """How ``path`` differs from its ``stored`` digest (a word), or None when it does not."""
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
    return record.get(SEAL) == seal(record)[SEAL]


def output_problems(
    record: dict[str, Any], record_path: Path, directory: Path, names: Iterable[str]
) -> list[str]:
    """What no longer matches a product's record: the record, or its output files."""
    if not intact(record):
        return [f"record changed: {relative_to_root(record_path)}"]
    if record.get("status") != "ok":
        return []
    stored = record.get(OUTPUTS) or {}
    changes = {directory / name: change(directory / name, stored.get(name)) for name in names}
    return [f"output {how}: {relative_to_root(path)}" for path, how in changes.items() if how]


def _content_digest(content: dict[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()
