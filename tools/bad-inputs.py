"""Try bad inputs as a careless or hostile user would and classify what each one got.

    .venv/bin/python tools/bad-inputs.py

Each case is an API call, a command line, a configuration file or a damaged cache file.
Outcomes: "refused" (a ValueError/LinmnistError naming the problem, or exit status 2 with one
line on stderr), "healed" (a bad file moved aside and a verified copy used), "wrong" (anything
else: a result, a traceback, another exit status). Prints one line per case and a table of
counts per category; exits 1 if any case is wrong.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from linmnist.engine import analysis, data, evaluation, frameworks, noise, scaling, sgd, spectrum
from linmnist.engine.validation import LinmnistError

ROOT = Path(__file__).resolve().parents[1]
rng = np.random.default_rng(0)
X = rng.random((784, 50), dtype=np.float32)
Y = np.eye(10, dtype=np.float32)[:, np.arange(50) % 10]


def _with(array, index, value):
    out = array.astype(np.result_type(array, type(value))).copy()
    out[index] = value
    return out


GOOD = {"lr": 0.01, "batch_size": 10, "iterations": 5}
API = {
    "train: NaN in X": lambda: sgd.train(_with(X, (0, 0), np.nan), Y, **GOOD),
    "train: inf in X": lambda: sgd.train(_with(X, (3, 1), np.inf), Y, **GOOD),
    "train: NaN in X_test": lambda: sgd.train(
        X, Y, X_test=_with(X, (0, 0), np.nan), Y_test=Y, **GOOD
    ),
    "train: Y all 0.5": lambda: sgd.train(X, np.full_like(Y, 0.5), **GOOD),
    "train: Y 7 x one-hot": lambda: sgd.train(X, 7 * Y, **GOOD),
    "train: Y_test with 9 classes": lambda: sgd.train(X, Y, X_test=X, Y_test=Y[:9], **GOOD),
    "train: zero features": lambda: sgd.train(X[:0], Y, **GOOD),
    "train: empty data": lambda: sgd.train(X[:, :0], Y[:, :0], **GOOD),
    "train: complex X": lambda: sgd.train(X.astype(np.complex64), Y, **GOOD),
    "train: string X": lambda: sgd.train(X.astype(str), Y, **GOOD),
    "train: dtype banana": lambda: sgd.train(X, Y, dtype="banana", **GOOD),
    "train: dtype int8": lambda: sgd.train(X, Y, dtype=np.int8, **GOOD),
    "train: lr -1": lambda: sgd.train(X, Y, lr=-1, batch_size=10, iterations=5),
    "train: lr nan": lambda: sgd.train(X, Y, lr=float("nan"), batch_size=10, iterations=5),
    "train: batch_size 0": lambda: sgd.train(X, Y, lr=0.01, batch_size=0, iterations=5),
    "train: batch_size 2.5": lambda: sgd.train(X, Y, lr=0.01, batch_size=2.5, iterations=5),
    "train: iterations 10**12": lambda: sgd.train(X, Y, lr=0.01, batch_size=10, iterations=10**12),
    "train: eval_every 0": lambda: sgd.train(X, Y, eval_every=0, **GOOD),
    "train: seed -1": lambda: sgd.train(X, Y, seed=-1, **GOOD),
    "train: X and Y lengths differ": lambda: sgd.train(X, Y[:, :40], **GOOD),
    "prepare: wrong dtype": lambda: data.prepare(np.zeros((5, 28, 28)), np.zeros(5, int)),
    "prepare: label 10": lambda: data.prepare(
        np.zeros((5, 28, 28), np.uint8), np.full(5, 10, np.uint8)
    ),
    "prepare: dtype banana": lambda: data.prepare(
        np.zeros((5, 28, 28), np.uint8), np.zeros(5, np.uint8), dtype="banana"
    ),
    "least_squares: NaN": lambda: analysis.least_squares(_with(X, (0, 0), np.nan), Y),
    "least_squares: non-one-hot Y": lambda: analysis.least_squares(X, 0.5 * Y),
    "stability_threshold: inf": lambda: analysis.stability_threshold(_with(X, (0, 0), np.inf)),
    "stability_threshold: complex": lambda: analysis.stability_threshold(X.astype(complex)),
    "Evaluator: NaN X_test": lambda: evaluation.Evaluator(X, Y, _with(X, (1, 1), np.nan), Y),
    "Evaluator: Y_test 9 classes": lambda: evaluation.Evaluator(X, Y, X, Y[:9]),
    "train_torch: NaN X": lambda: frameworks.train_torch(_with(X, (0, 0), np.nan), Y, **GOOD),
    "train_torch: Y 0.5": lambda: frameworks.train_torch(X, 0.5 * Y, **GOOD),
    "train_keras: inf X": lambda: frameworks.train_keras(_with(X, (0, 0), np.inf), Y, **GOOD),
    "noise_scales: NaN in W": lambda: noise.noise_scales(np.full((10, 784), np.nan), X, Y),
    "noise_scales: Y 0.5": lambda: noise.noise_scales(np.zeros((10, 784)), X, 0.5 * Y),
    "spectrum: inf in X": lambda: spectrum.spectrum(_with(X, (0, 0), np.inf), Y),
    "gd_excess: lr -1": lambda: spectrum.gd_excess(spectrum.spectrum(X, Y), -1, [1]),
    "fit_hyperbola: batch size 0": lambda: scaling.fit_hyperbola([0, 2, 4], [9.0, 5.0, 3.0]),
    "load_mnist: name cifar": lambda: data.load_mnist("cifar"),
    "load_mnist: cache_dir 3": lambda: data.load_mnist(cache_dir=3),
}


def api_outcome(call) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except (ValueError, LinmnistError) as exc:
        return "refused" if str(exc) else "wrong"
    except Exception as exc:  # an unrelated error is not a clear refusal
        return f"wrong ({type(exc).__name__}: {exc})"
    return "wrong (accepted)"


def cli_outcome(args: list[str], cwd: Path = ROOT, env: dict | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "linmnist", *args], cwd=cwd, capture_output=True, text=True,
        env=env, timeout=300,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    if done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr:
        return "refused"
    return f"wrong (exit {done.returncode}: {done.stderr.strip()[-200:]})"


def cli_cases(tmp: Path) -> dict[str, list[str]]:
    configs = {
        "config: not TOML": "[grid\n",
        "config: unknown task": "[gird]\nlr = [1]\n",
        "config: lr as string": "[grid]\nlr = ['a']\nbatch_size = [1]\niterations = 1\n"
        "seeds = [0]\nfidelity_seeds = []\neval_every = 1\n",
        "config: negative iterations": "[grid]\nlr = [0.1]\nbatch_size = [1]\niterations = -1\n"
        "seeds = [0]\nfidelity_seeds = []\neval_every = 1\n",
        "config: profile '../../x'": "[grid]\nlr = [0.1]\nbatch_size = [1]\niterations = 1\n"
        'seeds = [0]\nfidelity_seeds = []\neval_every = 1\n[profiles."../../x".grid]\n'
        "iterations = 2\n",
        "config: n_prime > N": "[subset]\nn_prime = [70000]\nlr = 0.1\nbatch_size = 1\n"
        "iterations = 1\nseeds = [0]\nfidelity_seeds = []\neval_every = 1\n",
        "config: fidelity seed not in seeds": "[grid]\nlr = [0.1]\nbatch_size = [1]\n"
        "iterations = 1\nseeds = [0]\nfidelity_seeds = [3]\neval_every = 1\n",
    }
    cases = {
        "run: --jobs 0": ["run", "--jobs", "0", "--dry-run"],
        "run: --jobs x": ["run", "--jobs", "x"],
        "run: --executor foo": ["run", "--executor", "foo"],
        "run: --scheduler without dask": ["run", "--scheduler", "tcp://x:1"],
        "run: --scheduler garbage": ["run", "--executor", "dask", "--scheduler", "garbage"],
        "run: --dataset cifar": ["run", "--dataset", "cifar"],
        "run: --profile nope": ["run", "--profile", "nope"],
        "run: unknown target": ["run", "gird", "--dry-run"],
        "run: --config missing": ["run", "--config", str(tmp / "absent.toml")],
        "run: --config a directory": ["run", "--config", str(tmp)],
        "status: --profile ''": ["status", "--profile", ""],
        "report: --dataset ''": ["report", "--dataset", ""],
        "bench: --batch-sizes 0": ["bench", "--batch-sizes", "0"],
    }
    for label, text in configs.items():
        path = tmp / f"{label.split(': ')[1].replace(' ', '_').replace('/', '_')}.toml"
        path.write_text(text)
        cases[label] = ["run", "--config", str(path), "--dry-run"]
    return cases


MINI = """[grid]
lr = [0.1]
batch_size = [10]
iterations = 5
seeds = [0]
fidelity_seeds = []
eval_every = 5

[subset]
n_prime = [100]
lr = 0.001
batch_size = 10
iterations = 5
seeds = [0]
fidelity_seeds = []
eval_every = 5
"""


def filesystem_outcomes(tmp: Path) -> dict[str, str]:
    """Runs of a one-cell-per-task configuration whose build directory is damaged."""
    config = tmp / f"bad-inputs-{tmp.name}.toml"
    config.write_text(MINI)
    build = ROOT / "reports" / "mnist" / f"config-{config.stem}" / "full"
    args = ["run", "grid", "subset", "--config", str(config), "--no-progress"]

    def clean() -> None:
        if build.parent.is_file():
            build.parent.unlink()
        shutil.rmtree(build.parent, ignore_errors=True)

    def damaged(make) -> subprocess.CompletedProcess:
        clean()
        make()
        try:
            return subprocess.run(
                [sys.executable, "-m", "linmnist", *args], cwd=ROOT, capture_output=True,
                text=True, timeout=300,
            )  # fmt: skip
        finally:
            clean()

    def refused(done) -> str:
        one = len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        return "refused" if done.returncode == 2 and one else f"wrong (exit {done.returncode})"

    def only_subset_failed(done) -> str:
        failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
        ok = done.returncode == 1 and failed and all("subset/" in line for line in failed)
        ok = (
            ok
            and "Traceback" not in done.stderr
            and "grid           1 product(s): 1 ok" in (done.stdout)
        )
        return "refused" if ok else f"wrong (exit {done.returncode}: {done.stdout[-300:]})"

    def file_at(path: Path):
        return lambda: (path.parent.mkdir(parents=True, exist_ok=True), path.write_text("x"))

    def dir_at(path: Path):
        return lambda: path.mkdir(parents=True)

    return {
        "build directory is a file": refused(damaged(file_at(build))),
        "build directory under a file": refused(damaged(file_at(build.parent))),
        "task directory is a file": only_subset_failed(
            damaged(file_at(build / "results" / "subset"))
        ),
        "record path is a directory": only_subset_failed(
            damaged(dir_at(build / "results" / "subset" / "n100.json"))
        ),
        "history path is a directory": only_subset_failed(
            damaged(dir_at(build / "results" / "subset" / "n100.history.csv"))
        ),
    }


def cache_outcome(tmp: Path, damage) -> str:
    directory = tmp / f"cache{len(list(tmp.iterdir()))}"
    directory.mkdir()
    path = directory / "mnist.npz"
    path.write_bytes(damage(data.cache_path("mnist").read_bytes()))
    genuine = data.load_mnist()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got = data._read_cache(path, "mnist")
        except Exception as exc:
            return f"wrong ({type(exc).__name__}: {exc})"
    if got is not None:
        same = all(
            np.array_equal(a, b)
            for s, t in zip(got, genuine, strict=True)
            for a, b in zip(s, t, strict=True)
        )
        return "healed (unchanged data)" if same else "wrong (altered data returned)"
    moved = any(p.name.startswith("mnist.npz.corrupt-") for p in directory.iterdir())
    return "healed" if moved and caught else "wrong (not moved aside)"


def _swap_pixels(raw: bytes) -> bytes:
    (x, y), test = data.load_mnist()
    x = x.copy()
    flat = x.reshape(-1)
    i = int(np.flatnonzero(flat)[0])
    j = int(np.flatnonzero(flat != flat[i])[0])
    flat[i], flat[j] = flat[j], flat[i]
    return _npz((x, y), test)


def _permute_labels(raw: bytes) -> bytes:
    (x, y), test = data.load_mnist()
    y = y.copy()
    y[:5000] = y[:5000][np.random.default_rng(1).permutation(5000)]
    return _npz((x, y), test)


def _npz(train, test) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        data._write_npz(path, (train, test))
        return path.read_bytes()


def _absurd_header(raw: bytes) -> bytes:
    """x_train's npy header declaring 60 billion images (the padding keeps its length)."""
    old, new = b"(60000, 28, 28)", b"(60000000000, 28, 28)"
    i = raw.index(old)
    j = raw.index(b"}", i) + 1
    pad = len(new) - len(old)
    return raw[:i] + new + raw[i + len(old) : j] + raw[j + pad :]


CACHE = {
    "cache: truncated": lambda raw: raw[: len(raw) // 2],
    "cache: empty": lambda raw: b"",
    "cache: one byte flipped in the pixels": lambda raw: (
        raw[:10_000] + bytes([raw[10_000] ^ 1]) + raw[10_001:]
    ),
    "cache: two pixels swapped": _swap_pixels,
    "cache: 5,000 labels permuted (counts kept)": _permute_labels,
    "cache: absurd header shape": _absurd_header,
    "cache: random bytes": lambda raw: np.random.default_rng(2).bytes(1000),
}


def main() -> int:
    results: list[tuple[str, str, str]] = []
    for label, call in API.items():
        results.append(("API arguments", label, api_outcome(call)))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, args in cli_cases(tmp).items():
            kind = "config files" if label.startswith("config") else "CLI options"
            results.append((kind, label, cli_outcome(args)))
        for label, outcome in filesystem_outcomes(tmp).items():
            results.append(("file system", label, outcome))
        caches = tmp / "caches"
        caches.mkdir()
        for label, damage in CACHE.items():
            results.append(("cache files", label, cache_outcome(caches, damage)))
    for kind, label, outcome in results:
        print(f"{kind:14} {label:45} {outcome}")
    counts = Counter((kind, outcome.split(" ")[0]) for kind, _, outcome in results)
    print("\n| inputs | tried | refused clearly | healed | wrong |\n|---|---|---|---|---|")
    for kind in dict.fromkeys(kind for kind, _, _ in results):
        row = [counts[(kind, o)] for o in ("refused", "healed", "wrong")]
        print(f"| {kind} | {sum(row)} | {row[0]} | {row[1]} | {row[2]} |")
    return 1 if any(o.startswith("wrong") for _, _, o in results) else 0


if __name__ == "__main__":
    sys.exit(main())
