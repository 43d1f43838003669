"""``python -m generative``: the ``sdeflow`` command-line tool (`generative.cli.main`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
