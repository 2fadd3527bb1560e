"""MathJax 3's ``es5/tex-svg.js`` for the HTML report, from the npm release at ``VERSION``,
fetched once into the data cache and checked against ``SHA256`` on every read.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from functools import cache
from pathlib import Path

from linmnist.engine.data import VerificationError, cache_path, download, move_aside

VERSION = "3.2.2"
URL = f"https://registry.npmjs.org/mathjax/-/mathjax-{VERSION}.tgz"
# SHA-256 of the tarball (npm publishes its SHA-512: sha512-Bt+SSVU8eBG27zCh...W0OhGw==).
SHA256 = "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
BUNDLE = "package/es5/tex-svg.js"
LICENSE = "package/LICENSE"


def tarball_path() -> Path:
    """Where the tarball is cached."""
    return cache_path().parent / f"mathjax-{VERSION}.tgz"


@cache
def _tarball() -> bytes:
    path = tarball_path()
    if path.is_file():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == SHA256:
            return data
        print(  # one line; the file is kept for inspection, and fetched again
            f"warning: the cached MathJax tarball {path} failed its SHA-256 check; "
            f"{move_aside(path)}, fetching it again",
            file=sys.stderr,
        )
    try:
        return download(URL, SHA256, path.parent).read_bytes()
    except VerificationError:
        raise RuntimeError(
            f"the MathJax tarball from {URL} does not have the SHA-256 {SHA256}: check the "
            "network, or what answers at that address"
        ) from None
    except Exception as exc:  # no connection, an HTTP error, a timeout
        raise RuntimeError(
            f"MathJax {VERSION} is not cached at {path} and cannot be fetched from {URL}: {exc}"
        ) from None


def _member(name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(_tarball()), mode="r:gz") as archive:
        return archive.extractfile(name).read().decode("utf-8")  # type: ignore[union-attr]


def script() -> str:
    """MathJax's ``tex-svg.js`` bundle (one self-contained script)."""
    return _member(BUNDLE)


def license() -> str:
    """MathJax's licence (Apache-2.0), from the same tarball."""
    return _member(LICENSE)
