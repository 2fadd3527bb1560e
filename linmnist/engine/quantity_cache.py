"""Per-dataset quantities on disk: what an evaluator, a spectrum or a noise-floor model
computes once per data set, kept in ``<data cache>/quantities/<kind>-<key>.npz``, ``key`` the
SHA-256 of the data (``data_key``). Each file holds the digest of the code that computed it
(``code_digest``; other code's is computed again and replaced); its first line is the SHA-256
of the rest (a damaged file is removed, with one warning line). Files are written atomically;
a cache that cannot be written is left alone; data below ``CACHE_FROM`` values is not cached.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from linmnist.engine.data import cache_path, write_atomic

# Values of data below which nothing is cached (a set-up of a few hundredths of a second).
CACHE_FROM = 10**7
# Rows of an array hashed at a time when it is not contiguous (one block copied at a time).
HASH_ROWS = 4096
# The member of a file holding the digest of the code that computed it.
CODE = "code_digest"

Arrays = dict[str, np.ndarray]


def quantities_dir() -> Path:
    """The cache's directory: ``quantities/`` in the data cache."""
    return cache_path().parent / "quantities"


def data_key(*parts: np.ndarray | str) -> str | None:
    """SHA-256 (hex) of ``parts`` (arrays or strings); None below ``CACHE_FROM`` values."""
    arrays = [p for p in parts if isinstance(p, np.ndarray)]
    if sum(a.size for a in arrays) < CACHE_FROM:
        return None
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            h.update(f"str {part}\n".encode())
            continue
        h.update(f"array {part.dtype.str} {part.shape}\n".encode())
        if part.flags.c_contiguous:
            h.update(part.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
            continue
        for j in range(0, len(part), HASH_ROWS):
            rows = np.ascontiguousarray(part[j : j + HASH_ROWS]).reshape(-1)
            h.update(rows.view(np.uint8))  # type: ignore[arg-type]
    return h.hexdigest()


@functools.cache
def code_digest(source: str | os.PathLike) -> str:
    """SHA-256 (hex) of the source file that computes the quantities, and numpy's version."""
    return hashlib.sha256(Path(source).read_bytes() + np.__version__.encode()).hexdigest()


def cached(kind: str, key: str | None, source: str, compute: Callable[[], Arrays]) -> Arrays:
    """``compute()``'s arrays (the code of ``source``) for ``key``'s data, cached unless None."""
    if key is None:
        return compute()
    path = quantities_dir() / f"{kind}-{key}.npz"
    code = code_digest(source)
    arrays = _read(path, code)
    if arrays is None:
        arrays = compute()
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, **{CODE: np.array(code)})  # type: ignore[arg-type]
        payload = buffer.getvalue()
        with contextlib.suppress(OSError):  # read-only, full or not a directory: not stored
            write_atomic(path, hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    return arrays


def _read(path: Path, code: str) -> Arrays | None:
    """The arrays at ``path`` if stored for ``code``; a damaged file is removed, warned."""
    try:
        raw = path.read_bytes()
    except OSError:  # absent, or unreadable: computed (and stored if the cache can be written)
        return None
    head, _, payload = raw.partition(b"\n")
    try:
        if head != hashlib.sha256(payload).hexdigest().encode():
            raise ValueError("its checksum does not match its contents")
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        stored = str(arrays.pop(CODE))
    except Exception as exc:  # any failure to parse the bytes: the file is damaged
        print(
            f"warning: the cached quantities {path} were damaged ({type(exc).__name__}: "
            f"{str(exc)[:80]}); {_discard(path)}, computing them again",
            file=sys.stderr,
        )
        return None
    return arrays if stored == code else None


def _discard(path: Path) -> str:
    """Remove a damaged file; returns what happened, for the warning."""
    try:
        path.unlink()
    except OSError:
        return "not removable"
    return "removed"
