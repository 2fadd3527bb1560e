"""A compiled-kernel cache that heals: a truncated or garbled numba cache file (``.nbi``/``.nbc``)
is removed with one warning line (``heal_on_damage``) and the kernel compiled afresh.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def heal_on_damage(*kernels: Any) -> None:
    """Make each numba dispatcher in ``kernels`` recompile when its disk cache fails to load."""
    for kernel in kernels:
        cache = kernel._cache  # numba's FunctionCache (a NullCache without cache=True)
        load = cache.load_overload

        def load_or_heal(sig, target_context, *, _load=load, _cache=cache, _name=kernel.__name__):
            try:
                return _load(sig, target_context)
            except Exception as exc:  # anything a damaged file gives: heal, compile again
                removed = remove_cache_files(_cache)
                message = " ".join(str(exc).split())  # one line, whatever the exception says
                print(
                    f"warning: the compiled-kernel cache of {_name} was damaged "
                    f"({type(exc).__name__}: {message[:80]}); removed {len(removed)} "
                    "file(s), compiling it again",
                    file=sys.stderr,
                )
                return None

        def save_or_skip(sig, data, *, _save=cache.save_overload):
            try:
                _save(sig, data)
            except Exception:  # a cache that cannot be written: the compiled kernel still runs
                return

        cache.load_overload = load_or_heal
        cache.save_overload = save_or_skip


def remove_cache_files(cache: Any) -> list[Path]:
    """Delete the index and data files of one numba function cache; returns those removed."""
    cache_file = cache._cache_file
    directory = Path(cache_file._cache_path)
    stem = cache_file._index_name.removesuffix(".nbi")
    removed = []
    for path in [directory / cache_file._index_name, *directory.glob(f"{stem}.*.nbc")]:
        try:
            path.unlink()
        except OSError:  # absent, or not removable (numba then fails to load it, and recompiles)
            continue
        removed.append(path)
    return removed
