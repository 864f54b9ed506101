#!/usr/bin/env python
"""Run continual-learning agents over a task stream: ``python run_stream.py --help``."""

from lifelong.cli import program

if __name__ == "__main__":
    program()
