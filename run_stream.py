#!/usr/bin/env python
"""Run continual-learning agents over a task stream: ``python run_stream.py --help``."""

import atexit
import gc
import os
import sys
import threading
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
    exit_without_teardown(main())


def exit_without_teardown(status: int) -> NoReturn:
    """End the process with ``status``, skipping the interpreter's teardown of its modules.

    That teardown frees the objects of torch, Avalanche and their imports one by one (about
    0.4 s on a 2-core machine) for a process that is about to end anyway. What exiting must
    still do is done first: the exit handlers (wandb removes its temporary folders there,
    ``logging`` flushes its handlers) and the flush of both output streams. A thread that
    would keep the process alive gets the interpreter's ordinary exit, which waits for it.
    """
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if any(not thread.daemon for thread in others):
        sys.exit(status)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    program()
