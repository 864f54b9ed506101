"""Divergence: a training loss that becomes NaN or infinite, recorded where it first happens.

A diverged run's numbers are those of a broken network (chance accuracy, often), not of
its method; ``DivergenceWatch`` makes that visible. It is one of every task-sequence job's
plugins: the run record gets ``diverged`` (``None``, or the agent, seed, task, step and
loss of the first non-finite loss), the summary counts the diverged runs, the terminal table
marks the agent and the CLI warns.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from avalanche.core import SupervisedPlugin


class DivergenceWatch(SupervisedPlugin):
    """Watches the training loss after every iteration; keeps the first non-finite one.

    Args:
        agent: The agent's name, for the record and the warning.
        seed: The job's seed.
    """

    def __init__(self, agent: str, seed: int) -> None:
        super().__init__()
        self.agent = agent
        self.seed = seed
        self.first: dict[str, Any] | None = None
        self._step = 0

    def before_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Count the experience's iterations from 0."""
        self._step = 0

    def after_training_iteration(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Record the first non-finite loss."""
        step, self._step = self._step, self._step + 1
        loss = getattr(strategy, "loss", None)
        if self.first is not None or not isinstance(loss, torch.Tensor):
            return
        value = float(loss.detach().float().mean())
        if math.isfinite(value):
            return
        task = int(strategy.experience.current_experience)
        self.first = {"agent": self.agent, "seed": self.seed, "task": task, "step": step,
                      "loss": str(value)}

    def run_report(self) -> dict[str, Any]:
        """``diverged``: the first non-finite loss, or ``None``."""
        return {"diverged": self.first}


def divergence_message(diverged: dict[str, Any]) -> str:
    """One line saying where a run diverged and what to try."""
    return (
        f"{diverged['agent']} seed {diverged['seed']} diverged: training loss "
        f"{diverged['loss']} at task {diverged['task']}, step {diverged['step']}; its results "
        "are not its method's, try a lower --lr"
    )
