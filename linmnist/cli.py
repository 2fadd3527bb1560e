"""The pipeline's commands: ``run``, ``status`` and ``report`` (``python -m linmnist ...``).

Exit status: 0 when everything is made (or up to date), 1 when a product failed (after the
others finished) or the run was cut short (its Dask scheduler lost: one line on stderr), 2 on
a usage or configuration error (one line on stderr, nothing run), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence

from linmnist.engine.data import DATA_DIR_ENV, DATASETS
from linmnist.engine.validation import ArgumentParser, LinmnistError, UsageError, check_int
from linmnist.experiments.jobs import RunAborted, job_limit
from linmnist.experiments.paths import build_dir, relative_to_root
from linmnist.experiments.runner import EXECUTORS, STATES, ProductState, assess, run, select
from linmnist.report.pipeline import pipeline


def _parser(command: str, description: str) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=f"python -m linmnist {command}", description=description)
    parser.add_argument(
        "targets",
        nargs="*",
        help="products to bring up to date: a group (grid, subset, stability, edge, frameworks, "
        "scaling, theory, sizes, notebooks, report) or a product name; default: all",
    )
    parser.add_argument("--dataset", default="mnist", help=f"{', '.join(DATASETS)} (default mnist)")
    parser.add_argument("--profile", help="a profile of the configuration, e.g. small")
    parser.add_argument(
        "--config", help="grid configuration (default linmnist/experiments/grids.toml)"
    )
    return parser


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=1, help="products made at once (default 1)")
    parser.add_argument(
        "--executor", default="local", help=f"{' or '.join(EXECUTORS)} (default local)"
    )
    parser.add_argument("--scheduler", help="with --executor dask: tcp://HOST:PORT of a scheduler")
    parser.add_argument("--force", action="store_true", help="remake up-to-date products too")
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be made; make nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_run_arguments(args: argparse.Namespace) -> None:
    check_int("jobs", args.jobs, low=1)
    if args.scheduler is not None and args.executor != "dask":
        raise UsageError(f"--scheduler needs --executor dask; got --executor {args.executor}")
    if args.scheduler is not None:
        protocol, _, rest = args.scheduler.partition("://")
        if not (protocol.isalnum() and rest):
            raise UsageError(
                f"scheduler must be an address such as tcp://HOST:PORT; got {args.scheduler!r}"
            )
    if args.scheduler is None:  # workers on this machine
        args.jobs, note = job_limit(args.jobs)
        if note is not None:
            print(f"note: {note}", file=sys.stderr)


def resolve_data_dir() -> None:
    """Make a relative ``$LINMNIST_DATA_DIR`` absolute, once: the workers and the notebook
    kernels (which run in ``notebooks/``) then all use the same data file."""
    value = os.environ.get(DATA_DIR_ENV)
    if value:  # absolute, links kept: a symlink loop is reported when the data is read
        os.environ[DATA_DIR_ENV] = os.path.abspath(os.path.expanduser(value))


def _print_plan(states: list[ProductState]) -> None:
    if not states:
        print("everything is up to date")
    for state in states:
        print(f"make {state.format()}")


def _main(command: str, argv: Sequence[str]) -> int:
    descriptions = {
        "run": "Make every product of a build that is not up to date (grid cells, framework "
        "comparison, task notebooks, report), in dependency order, in parallel.",
        "status": "List every product of a build as up to date, stale (and why), missing or "
        "failed; run nothing.",
        "report": "Make the report of a build (and whatever it needs) and say where it is.",
    }
    parser = _parser(command, descriptions[command])
    if command != "status":
        _run_options(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    resolve_data_dir()
    try:
        products = pipeline(args.dataset, args.profile, args.config)
        targets = args.targets or (["report"] if command == "report" else None)
        products = select(products, targets)
        build = build_dir(args.dataset, args.profile, args.config)
        if command == "status":
            states = assess(products)
            for product in products:
                print(states[product.name].format())
            counts = Counter(state.state for state in states.values())
            print("total: " + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s]))
            return 0
        _check_run_arguments(args)
        summary = run(
            products,
            lock_dir=build,
            jobs=args.jobs,
            force=args.force,
            dry_run=args.dry_run,
            progress=not args.no_progress,
            executor=args.executor,
            scheduler=args.scheduler,
            on_plan=_print_plan if args.dry_run else None,
        )
    except RunAborted as exc:  # the run started and was cut short
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (LinmnistError, ValueError, RuntimeError) as exc:  # usage, configuration, data
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished products are kept, the others are made next time",
            file=sys.stderr,
        )
        return 130
    if args.dry_run:
        return 0
    print(summary.format())
    if any(p.name == "report" for p in products):
        html, pdf = (relative_to_root(build / f"report.{kind}") for kind in ("html", "pdf"))
        print(f"report: {html}, {pdf}")
    return 0 if summary.ok else 1


def run_main(argv: Sequence[str] | None = None) -> int:
    """``python -m linmnist run``."""
    return _main("run", sys.argv[1:] if argv is None else argv)


def status_main(argv: Sequence[str] | None = None) -> int:
    """``python -m linmnist status``."""
    return _main("status", sys.argv[1:] if argv is None else argv)


def report_main(argv: Sequence[str] | None = None) -> int:
    """``python -m linmnist report``."""
    return _main("report", sys.argv[1:] if argv is None else argv)
