"""Checkpoints inside a task-switching job: the learner and the run's progress, in one folder.

A job of ``lifelong.switching_run`` saves, every ``checkpoint_every_s`` seconds of its own
time, the folder ``checkpoints/<agent>__seed<k>.ckpt/``::

    agent/          the learner, as ``lifelong.saved_agents.save_agent`` writes it (the
                    task memory's FAISS index and the episodic memory's generator included)
    progress.json   steps learned, their accuracies, the accuracy matrix's rows so far, and
                    the job's time so far

The folder is swapped in whole (``lifelong.io.atomic_folder``), so a kill leaves the last
complete checkpoint. A resumed job loads the learner and goes on from the next step; the
saved-agent round trip continues a stream step for step as the saved learner would
(``tests/test_saved_agents.py``), so the finished record equals an uninterrupted job's, wall
time apart. A learner that cannot be saved (a plug-in without ``save_state``) is not
checkpointed midway.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lifelong.checkpoint import CheckpointError
from lifelong.io import atomic_folder
from lifelong.saved_agents import AgentLoadError, SavableLearner, load_agent, save_agent

__all__ = ["OnlineProgress", "load_online_checkpoint", "save_online_checkpoint"]


@dataclass
class OnlineProgress:
    """How far a task-switching job has come.

    Attributes:
        steps_done: Steps predicted and learned.
        accuracies: Their accuracies, in order.
        matrix_rows: The accuracy matrix's rows taken so far (``None`` for no value).
        probe_seconds: Time the matrix's probes took so far.
        wall_time_s: The learner's own time so far (probes and saves left out).
    """

    steps_done: int
    accuracies: list[float]
    matrix_rows: list[list[float | None]]
    probe_seconds: float
    wall_time_s: float


def save_online_checkpoint(
    folder: Path,
    learner: SavableLearner,
    progress: OnlineProgress,
    **agent_facts: Any,
) -> None:
    """Write (or replace) the checkpoint folder atomically.

    Args:
        folder: The checkpoint folder.
        learner: The learner to save.
        progress: The job's progress.
        **agent_facts: ``save_agent``'s keyword arguments (name, seed, encoder width, input
            shape).
    """
    with atomic_folder(folder) as tmp:
        save_agent(learner, tmp / "agent", **agent_facts)
        rows = [
            [None if v is None or math.isnan(v) else v for v in row] for row in progress.matrix_rows
        ]
        state = {**asdict(progress), "matrix_rows": rows}  # JSON has no NaN
        (tmp / "progress.json").write_text(json.dumps(state) + "\n", encoding="utf-8")


def load_online_checkpoint(folder: Path) -> tuple[SavableLearner, OnlineProgress] | None:
    """The learner and progress a checkpoint holds; ``None`` if there is none.

    Raises:
        CheckpointError: If the folder exists but does not load; the message names it.
    """
    if not folder.exists():
        return None
    try:
        learner = load_agent(folder / "agent").learner
        progress = OnlineProgress(**json.loads((folder / "progress.json").read_text()))
    except (AgentLoadError, OSError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {folder} cannot be read ({error}); delete it to rerun the job from "
            "its start"
        ) from error
    return learner, progress
