"""Command line: ``python -m linmnist {data,run,status,report,bench} ...``.

Each sub-command lives in the module that holds its logic; this file only dispatches.
"""

import importlib
import sys

COMMANDS = {
    "data": ("linmnist.engine.data:main", "acquire and verify a dataset, print its checksums"),
    "run": ("linmnist.cli:run_main", "make the products of a build that are not up to date"),
    "status": ("linmnist.cli:status_main", "every product: up to date, stale, missing, failed"),
    "report": ("linmnist.cli:report_main", "make the report of a build and say where it is"),
    "bench": ("linmnist.engine.bench:main", "the engine against the study's naive algorithm"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        lines = [f"  {name:8s}{help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: python -m linmnist {" + ",".join(COMMANDS) + "} ...", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module, function = COMMANDS[argv[0]][0].split(":")
    return getattr(importlib.import_module(module), function)(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
