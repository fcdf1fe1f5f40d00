"""The `deepattraction` command's entry point: sets how much the libraries say (logs.quiet)
before anything loads TensorFlow, then hands over to the command line (cli.py)."""
from __future__ import annotations

import sys

from deepattraction import logs

VERBOSE = "--verbose"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logs.quiet(verbose=VERBOSE in argv)
    from deepattraction import cli  # loads TensorFlow, TFX and Beam

    return cli.main([a for a in argv if a != VERBOSE])
