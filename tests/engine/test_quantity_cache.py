"""The per-dataset quantities cached on disk: an evaluator, a spectrum or a floor model read
from the cache is the one computed afresh; a damaged file heals with one warning line; other
data, other code or an unwritable cache never give another data set's quantities.

Every test caches small synthetic data (``CACHE_FROM`` lowered to 0) in its own data directory
(``LINMNIST_DATA_DIR``), so the user's cache is never touched."""

import numpy as np
import pytest

from linmnist.engine import evaluation, noise_floor, quantity_cache, spectrum
from linmnist.engine.data import DATA_DIR_ENV
from linmnist.engine.evaluation import Evaluator
from linmnist.engine.quantity_cache import data_key, quantities_dir

EVALUATOR_ARRAYS = ("train_nonzero", "loss_rows", "S", "C", "norms", "labels")
SPECTRUM_FIELDS = ("S", "C", "lam", "V", "W_star", "weights")
SPECTRUM_SCALARS = ("loss_star", "loss_zero", "n_samples", "lambda_max")


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """The quantities directory of a fresh data directory, with every data set cached."""
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(quantity_cache, "CACHE_FROM", 0)
    return quantities_dir()


@pytest.fixture
def data(synthetic):
    (X, Y), (Xt, Yt) = synthetic(300, 100, d=200, seed=3)
    X[:40] = Xt[:40] = 0  # pixels zero everywhere: S and C leave them out
    return X, Y, Xt, Yt


def entries(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def assert_same_evaluator(a: Evaluator, b: Evaluator) -> None:
    for name in EVALUATOR_ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a.yy, a.root_trace, a.root_yy) == (b.yy, b.root_trace, b.root_yy)
    for x, y in zip(a.projection, b.projection, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)


def assert_same_spectrum(a, b) -> None:
    for name in SPECTRUM_FIELDS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for name in SPECTRUM_SCALARS:
        assert getattr(a, name) == getattr(b, name) and type(getattr(a, name)) is type(
            getattr(b, name)
        ), name


def fresh_evaluator(monkeypatch, data, **kw) -> Evaluator:
    with monkeypatch.context() as m:
        m.setattr(quantity_cache, "CACHE_FROM", 10**18)
        return Evaluator(*data, **kw)


def test_an_evaluator_read_from_the_cache_is_the_one_computed_afresh(cache, data, monkeypatch):
    first = Evaluator(*data)
    _ = first.projection
    assert [name.split("-")[0] for name in entries(cache)] == ["evaluator", "projection"]
    # Read back, not computed: computing again would fail.
    with monkeypatch.context() as m:
        m.setattr(evaluation, "_gram", None)
        m.setattr(Evaluator, "_projection", None)
        again = Evaluator(*data)
        assert_same_evaluator(again, first)
    assert_same_evaluator(again, fresh_evaluator(monkeypatch, data))
    W = np.random.default_rng(0).normal(size=(5, 10, data[0].shape[0])).astype(np.float32)
    iterations = np.arange(5)
    assert again.history(W, iterations).equals(
        fresh_evaluator(monkeypatch, data).history(W, iterations)
    )


def test_a_spectrum_read_from_the_cache_is_the_one_computed_afresh(cache, data, monkeypatch):
    first = spectrum.spectrum(*data[:2])
    assert [name.split("-")[0] for name in entries(cache)] == ["spectrum"]
    with monkeypatch.context() as m:
        m.setattr(spectrum, "_decompose", None)
        again = spectrum.spectrum(*data[:2])
    assert_same_spectrum(again, first)
    monkeypatch.setattr(quantity_cache, "CACHE_FROM", 10**18)
    assert_same_spectrum(again, spectrum.spectrum(*data[:2]))


def test_a_floor_model_read_from_the_cache_is_the_one_computed_afresh(cache, data, monkeypatch):
    spec = spectrum.spectrum(*data[:2])
    first = noise_floor.floor_model(spec, *data[:2])
    assert noise_floor.largest_stable_lr(first, batch_size=4) > 0
    assert sorted(name.split("-")[0] for name in entries(cache)) == ["floor", "spectrum"]
    # Read back without the projections: computing Q or sigma* again would need Z2.
    again = noise_floor.floor_model(spec, *data[:2])
    with monkeypatch.context() as m:
        m.setattr(noise_floor.FloorModel, "_compute_fourth_moments", None)
        assert np.array_equal(again.Q, first.Q) and np.array_equal(
            again.sigma_star, first.sigma_star
        )
    assert "Z" not in vars(again)
    monkeypatch.setattr(quantity_cache, "CACHE_FROM", 10**18)
    fresh = noise_floor.floor_model(spec, *data[:2])
    assert np.array_equal(fresh.Q, first.Q) and np.array_equal(fresh.sigma_star, first.sigma_star)
    assert np.array_equal(fresh.residual_star, first.residual_star)


DAMAGES = {
    "truncated": lambda raw: raw[: len(raw) // 2],
    "random bytes": lambda raw: np.random.default_rng(len(raw)).bytes(len(raw)),
    "appended bytes": lambda raw: raw + b"\x00" * 7,
    "emptied": lambda raw: b"",
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_file_is_removed_with_one_warning_and_computed_again(
    cache, data, monkeypatch, capsys, damage
):
    _ = Evaluator(*data).projection
    spectrum.spectrum(*data[:2])
    files = {p: p.read_bytes() for p in cache.iterdir()}
    for path, raw in files.items():
        path.write_bytes(DAMAGES[damage](raw))
    capsys.readouterr()
    healed = Evaluator(*data)
    _ = healed.projection
    spec = spectrum.spectrum(*data[:2])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3  # one per damaged file
    for path, line in zip(sorted(files), sorted(lines), strict=True):
        assert line.startswith(f"warning: the cached quantities {path} were damaged (")
        assert line.endswith("); removed, computing them again")
    assert sorted(cache.iterdir()) == sorted(files)  # written again
    assert_same_evaluator(healed, fresh_evaluator(monkeypatch, data))
    assert_same_evaluator(Evaluator(*data), healed)  # the new files read cleanly
    assert_same_spectrum(spectrum.spectrum(*data[:2]), spec)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(quantity_cache, "CACHE_FROM", 10**18)
    assert_same_spectrum(spec, spectrum.spectrum(*data[:2]))


def test_other_data_gets_another_entry(cache, data):
    X, Y, Xt, Yt = data
    subset = np.arange(0, X.shape[1], 2)
    Xs, Ys = X[:, subset], Y[:, subset]
    relabelled = Y[::-1].copy()  # the same images, other labels
    builds = [(X, Y, Xt, Yt), (Xs, Ys, Xt, Yt), (X, Y), (X, relabelled, Xt, Yt)]
    gram_S = [Evaluator(*d).S for d in builds]
    gram_S.append(Evaluator(X, Y, Xt, Yt, bias=True).S)
    assert len(entries(cache)) == 5
    assert not np.array_equal(gram_S[0], gram_S[1]) and gram_S[4].shape != gram_S[0].shape
    spectra = [spectrum.spectrum(*d[:2]) for d in builds]
    assert len(entries(cache)) == 5 + 3  # builds 0 and 2 share their training data
    assert spectra[2].n_samples == X.shape[1] and spectra[1].n_samples == len(subset)


def test_a_file_of_other_code_is_computed_again_and_replaced_silently(
    cache, data, monkeypatch, capsys
):
    spectrum.spectrum(*data[:2])
    (path,) = cache.iterdir()
    before = path.read_bytes()
    monkeypatch.setattr(quantity_cache, "code_digest", lambda source: "other code")
    calls = []
    decompose = spectrum._decompose
    monkeypatch.setattr(spectrum, "_decompose", lambda *a: calls.append(1) or decompose(*a))
    spectrum.spectrum(*data[:2])
    assert calls == [1] and entries(cache) == [path.name]
    assert path.read_bytes() != before and capsys.readouterr().err == ""


def test_a_cache_that_cannot_be_written_leaves_the_quantities_computed(
    monkeypatch, tmp_path, data, capsys
):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv(DATA_DIR_ENV, str(blocker))
    monkeypatch.setattr(quantity_cache, "CACHE_FROM", 0)
    assert_same_evaluator(Evaluator(*data), fresh_evaluator(monkeypatch, data))
    assert blocker.read_text() == "" and capsys.readouterr().err == ""


def test_the_key_is_that_of_the_values_whatever_their_layout(monkeypatch, data):
    rows = np.ascontiguousarray(data[0].T)
    monkeypatch.setattr(quantity_cache, "HASH_ROWS", 7)
    monkeypatch.setattr(quantity_cache, "CACHE_FROM", 0)
    key = data_key(rows, "x")
    assert len(key) == 64
    assert key == data_key(np.asfortranarray(rows), "x")  # hashed 7 rows at a time
    assert key != data_key(rows, "y") and key != data_key(rows.astype(np.float64), "x")
    assert key != data_key(rows[:-1], "x")
    monkeypatch.setattr(quantity_cache, "CACHE_FROM", rows.size + 1)
    assert data_key(rows, "x") is None  # small data: not cached
