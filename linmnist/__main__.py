"""``python -m linmnist``: the command line of ``linmnist.cli``."""

import sys

from linmnist.cli import main

if __name__ == "__main__":
    sys.exit(main())
