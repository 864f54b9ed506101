#!/usr/bin/env python
"""Run continual-learning agents over a task stream: ``python run_stream.py --help``."""

import sys

from lifelong.cli import main

if __name__ == "__main__":
    sys.exit(main())
