"""The command line, one argparse tree: ``python -m linmnist {data,run,status,report,bench}``.

Exit status: 0 done; 1 a failure after a valid start (a product failed, ``RunFailedError``, the
bench's engine differs); 2 a usage error, one line and nothing run (``UsageError``, a
``DataCacheError``); 130 interrupted. Each command imports what it runs when it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NoReturn

from linmnist.engine.data import DATA_DIR_ENV, DATASETS
from linmnist.engine.validation import LinmnistError, UsageError, check_choice, check_int

BUILD_COMMANDS = {
    "run": "Make every product of a build that is not up to date (grid cells, framework "
    "comparison, task notebooks, report), in dependency order, in parallel.",
    "status": "List every product of a build as up to date, stale (and why), missing or "
    "failed; run nothing.",
    "report": "Make the report of a build (and whatever it needs) and say where it is.",
}
TARGETS = "grid, subset, stability, edge, frameworks, scaling, theory, sizes, notebooks, report"


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line (exit status 2), not the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def resolve_data_dir() -> None:
    """Make a relative ``$LINMNIST_DATA_DIR`` absolute, once, for workers and kernels."""
    value = os.environ.get(DATA_DIR_ENV)
    if value:  # absolute, links kept: a symlink loop is reported when the data is read
        os.environ[DATA_DIR_ENV] = os.path.abspath(os.path.expanduser(value))


def data_command(args: argparse.Namespace) -> int:
    """``data``: acquire and verify a dataset, print its cache path and SHA-256 checksums."""
    from linmnist.engine.data import by_key, cache_path, file_sha256, load_mnist

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    arrays = by_key(load_mnist(args.name, args.cache_dir))
    path = cache_path(args.name, args.cache_dir)
    print(f"{args.name}: verified copy at {path}")
    print(f"  train {arrays['x_train'].shape}, test {arrays['x_test'].shape}, uint8")
    print(f"  sha256 {path.name:<9} {file_sha256(path)}")
    for key, array in arrays.items():
        print(f"  sha256 {key:<9} {hashlib.sha256(array.tobytes()).hexdigest()}")
    return 0


def status_command(args: argparse.Namespace) -> int:
    """``status``: every product of a build as up to date, stale (and why), missing or failed."""
    from linmnist.experiments.runner import STATES, assess

    products = _products(args)
    states = assess(products)
    for product in products:
        print(states[product.name].format())
    counts = Counter(state.state for state in states.values())
    print("total: " + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s]))
    return 0


def run_command(args: argparse.Namespace) -> int:
    """``run`` and ``report``: make what is not up to date; 1 when a product failed."""
    from linmnist.experiments.paths import build_dir, relative_to_root
    from linmnist.experiments.runner import plan, run

    products = _products(args)
    build = build_dir(args.dataset, args.profile, args.config)
    _check_run_arguments(args)
    if args.dry_run:
        states = plan(products, lock_dir=build, force=args.force)
        print("\n".join(f"make {s.format()}" for s in states) or "everything is up to date")
        return 0
    options = {key: getattr(args, key) for key in ("jobs", "force", "executor", "scheduler")}
    summary = run(products, lock_dir=build, progress=not args.no_progress, **options)
    print(summary.format())
    if any(p.name == "report" for p in products):
        html, pdf = (relative_to_root(build / f"report.{kind}") for kind in ("html", "pdf"))
        print(f"report: {html}, {pdf}")
    return 0 if summary.ok else 1


def bench_command(args: argparse.Namespace) -> int:
    """``bench``: the engine against the study's naive algorithm; 1 when a run differs."""
    from linmnist.engine.bench import WARM_UP, bench

    check_int("--iterations", args.iterations, low=WARM_UP)
    for batch_size in args.batch_sizes:
        check_int("--batch-sizes", batch_size, low=1)
    return 0 if bench(args.iterations, args.batch_sizes, with_torch=not args.no_torch) else 1


def _products(args: argparse.Namespace) -> list:
    """The products of the build the options name, narrowed to the targets."""
    from linmnist.experiments.runner import select
    from linmnist.report.pipeline import pipeline

    products = pipeline(args.dataset, args.profile, args.config)
    return select(products, args.targets or (["report"] if args.command == "report" else None))


def _check_run_arguments(args: argparse.Namespace) -> None:
    from linmnist.experiments.jobs import job_limit
    from linmnist.experiments.runner import EXECUTORS

    check_int("jobs", args.jobs, low=1)
    check_choice("executor", args.executor, EXECUTORS)
    if args.scheduler is None:  # workers on this machine
        args.jobs, note = job_limit(args.jobs)
        if note is not None:
            print(f"note: {note}", file=sys.stderr)
        return
    protocol, _, rest = args.scheduler.partition("://")
    if args.executor != "dask":
        raise UsageError(f"--scheduler needs --executor dask; got --executor {args.executor}")
    if not (protocol.isalnum() and rest):
        raise UsageError(
            f"scheduler must be an address such as tcp://HOST:PORT; got {args.scheduler!r}"
        )


def _build_options(parser: argparse.ArgumentParser, *, run: bool) -> None:
    targets = f"products: a group ({TARGETS}) or a product name; default: all"
    parser.add_argument("targets", nargs="*", help=targets)
    parser.add_argument("--dataset", default="mnist", help=f"{', '.join(DATASETS)} (default mnist)")
    parser.add_argument("--profile", help="a profile of the configuration, e.g. small")
    config = "grid configuration (default linmnist/experiments/grids.toml)"
    parser.add_argument("--config", help=config)
    if not run:
        return
    parser.add_argument("--jobs", type=int, default=1, help="products made at once (default 1)")
    parser.add_argument("--executor", default="local", help="local (default) or dask")
    parser.add_argument("--scheduler", help="with --executor dask: tcp://HOST:PORT of a scheduler")
    for flag, help_ in (
        ("--force", "remake up-to-date products too"),
        ("--dry-run", "say what would be made; make nothing"),
        ("--no-progress", "no progress bar"),
    ):
        parser.add_argument(flag, action="store_true", help=help_)


def parser() -> ArgumentParser:
    """The argparse tree of every sub-command; each sets ``command`` and ``handler``."""
    top = ArgumentParser(prog="python -m linmnist", description="linmnist's commands.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_: str):
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.set_defaults(handler=handler)
        return sub

    data = command("data", data_command, "Acquire and verify a dataset; print its checksums.")
    data.add_argument("--name", choices=DATASETS, default="mnist")
    data.add_argument("--cache-dir", help=f"default: ${DATA_DIR_ENV} or ~/.cache/linmnist")
    for name, help_ in BUILD_COMMANDS.items():
        handler = status_command if name == "status" else run_command
        _build_options(command(name, handler, help_), run=name != "status")
    bench = command("bench", bench_command, "The engine against the study's naive algorithm.")
    bench.add_argument("--iterations", type=int, default=1000)
    bench.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 10, 100, 1000])
    bench.add_argument("--no-torch", action="store_true", help="leave out the PyTorch loop")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m linmnist ...``: parse, run the command, map its errors to the exit status."""
    try:
        args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help (0) or a usage error, already printed (2)
        return exc.code if isinstance(exc.code, int) else 2
    resolve_data_dir()
    try:
        return args.handler(args)
    except (UsageError, ValueError) as exc:  # usage, configuration, a data cache
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (LinmnistError, RuntimeError, OSError) as exc:  # a run that could not complete
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        interrupted = "interrupted: finished products are kept, the others are made next time"
        print(interrupted, file=sys.stderr)
        return 130
