"""Command line: ``python -m linmnist {data,run,report} ...``.

Each sub-command lives in the module that holds its logic; this file only dispatches.
"""

import importlib
import sys

COMMANDS = {
    "data": ("linmnist.engine.data", "acquire and verify a dataset, print its path and checksums"),
    "run": ("linmnist.experiments.runner", "run the experiment grids with papermill"),
    "report": ("linmnist.report.build", "run the grids and build reports/report.html and .pdf"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        lines = [f"  {name:8s}{help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: python -m linmnist {" + ",".join(COMMANDS) + "} ...", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
