#!/usr/bin/env python
"""Run continual-learning agents over a task stream: ``python run_stream.py --help``."""

import gc
import sys
from typing import NoReturn


def program() -> NoReturn:
    """The ``run_stream.py`` and ``lifelong-run`` program: import, then run and exit."""
    # Importing torch and Avalanche makes objects that live until exit. With the collector
    # on, the import spends about 1 s collecting them again and again, and exit another
    # 1.5 s. So it is off while importing; then they are frozen out of every full
    # collection (the run's, the forked workers', whose pages then stay shared, and exit's).
    # A library caller of ``lifelong.cli.main`` keeps its collector as it is.
    gc.disable()
    from lifelong.cli import main

    gc.freeze()
    gc.enable()
    sys.exit(main())


if __name__ == "__main__":
    program()
