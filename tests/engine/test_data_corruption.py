"""Randomised corruption of the cache file: whatever is done to a copy of it, ``load_mnist``
never returns altered data. A corrupted copy is either refused (moved aside and the data
acquired again from a source) or, where the bytes changed carry no data (a zip field that no
reader checks), read as the genuine arrays."""

import io
import shutil
import warnings
import zipfile

import numpy as np
import pytest

from engine.test_data import assert_same, facts_of, make_dataset, set_sources
from linmnist.engine import data
from linmnist.engine.data import DataWarning, load_mnist


def _npz_bytes(dataset) -> bytes:
    (x_train, y_train), (x_test, y_test) = dataset
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for key, arr in zip(data.KEYS, (x_train, y_train, x_test, y_test), strict=True):
            member = io.BytesIO()
            np.lib.format.write_array(member, arr, allow_pickle=False)
            archive.writestr(f"{key}.npy", member.getvalue())
    return buffer.getvalue()


def _altered(dataset, rng, how: str):
    """A copy of ``dataset`` whose content differs but keeps shapes, dtypes and label counts."""
    (x_train, y_train), (x_test, y_test) = (
        (a.copy() for a in split) for split in dataset
    )  # fmt: skip
    if how == "swapped pixels":
        flat = x_train.reshape(-1)
        i = int(rng.integers(flat.size))
        j = int(np.flatnonzero(flat != flat[i])[rng.integers(np.count_nonzero(flat != flat[i]))])
        flat[i], flat[j] = flat[j], flat[i]
    else:  # permuted labels, counts kept
        k = int(rng.integers(2, y_train.size + 1))
        idx = rng.choice(y_train.size, size=k, replace=False)
        before = y_train.copy()
        while np.array_equal(y_train, before):
            y_train[idx] = y_train[rng.permutation(idx)]
    return (x_train, y_train), (x_test, y_test)


def _header_edit(raw: bytes, rng) -> bytes:
    """Rewrite one array's npy header to declare another (possibly absurd) shape."""
    member = data.KEYS[int(rng.integers(4))]
    start = raw.index(b"{'descr'", raw.index(f"{member}.npy".encode()))
    end = raw.index(b"}", start) + 1
    shape = rng.choice(["(99999999999, 28, 28)", "(3,)", "(0,)", "(60000, 28, 29)"])
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header = header[: end - start].ljust(end - start)
    return raw[:start] + header + raw[end:]


def corrupt(raw: bytes, dataset, rng) -> tuple[str, bytes]:
    """One random corruption of the cache file's bytes ``raw`` (the file of ``dataset``)."""
    how = rng.choice(
        ["truncation", "byte flip", "swapped pixels", "permuted labels", "header edit", "noise"]
    )
    if how == "truncation":
        return how, raw[: int(rng.integers(len(raw)))]
    if how == "byte flip":
        flipped = bytearray(raw)
        flipped[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        return how, bytes(flipped)
    if how in ("swapped pixels", "permuted labels"):
        return how, _npz_bytes(_altered(dataset, rng, how))
    if how == "header edit":
        return how, _header_edit(raw, rng)
    return how, rng.integers(0, 256, size=int(rng.integers(1, len(raw))), dtype=np.uint8).tobytes()


def _load_corrupted(path, genuine) -> bool:
    """Load the (corrupted) cache at ``path``; True when it was refused and moved aside."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load_mnist(cache_dir=path.parent)
    assert_same(result, genuine)  # never the corrupted content
    refused = any(issubclass(w.category, DataWarning) for w in caught)
    assert refused == any(p.name.startswith("mnist.npz.corrupt-") for p in path.parent.iterdir())
    return refused


def _trial(tmp_path, genuine, raw, rng, index):
    directory = tmp_path / f"case{index}"
    directory.mkdir()
    how, bad = corrupt(raw, genuine, rng)
    (directory / "mnist.npz").write_bytes(bad)
    refused = _load_corrupted(directory / "mnist.npz", genuine)
    # whatever was refused or read, the cache now holds the genuine copy
    assert_same(load_mnist(cache_dir=directory), genuine)
    shutil.rmtree(directory)
    return how, refused


@pytest.mark.slow  # 300 damaged copies: seconds
def test_no_corrupted_copy_of_the_cache_is_ever_returned(monkeypatch, tmp_path):
    genuine = make_dataset(n_train=200, n_test=50)
    monkeypatch.setitem(data.FACTS, "mnist", facts_of(genuine))
    set_sources(monkeypatch, lambda: genuine)
    raw = _npz_bytes(genuine)
    rng = np.random.default_rng(20261202)
    outcomes = [_trial(tmp_path, genuine, raw, rng, i) for i in range(300)]
    refused = {how for how, was_refused in outcomes if was_refused}
    # every kind of damage that alters data was seen and refused at least once
    assert refused >= {"truncation", "swapped pixels", "permuted labels", "header edit", "noise"}
    # content changes are always refused (only flips in unchecked zip fields may pass)
    assert all(r for how, r in outcomes if how not in ("byte flip",))


@pytest.mark.integration
@pytest.mark.slow
def test_no_corrupted_copy_of_the_real_mnist_cache_is_ever_returned(monkeypatch, tmp_path):
    genuine = load_mnist()
    raw = data.cache_path().read_bytes()
    set_sources(monkeypatch, lambda: genuine)
    rng = np.random.default_rng(7)
    outcomes = [_trial(tmp_path, genuine, raw, rng, i) for i in range(24)]
    assert all(r for how, r in outcomes if how != "byte flip")
