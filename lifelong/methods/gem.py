"""``gem``: Gradient Episodic Memory, Avalanche's ``GEM`` (``memory_size // n_tasks`` per task)."""

from __future__ import annotations

from dataclasses import dataclass

from avalanche.training.supervised import GEM
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.common import (
    common_arguments,
    memory_per_task,
    settings,
)


@dataclass(frozen=True)
class GEMHParams:
    """Gradient Episodic Memory.

    References:
        Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.
    """

    memory_strength: float = 0.5
    """Margin gamma added to the projection; 0.5 in GEM's run_experiments.sh for MNIST
    Rotations, Permutations and CIFAR-100. The paper keeps 256 memories per task; here the
    budget decides (``memory_size // n_tasks``)."""


@register_agent(
    "gem",
    description="Gradient Episodic Memory (Lopez-Paz & Ranzato 2017), gamma 0.5.",
    scenarios=ALL_SCENARIOS,
    uses_memory=True,
    options=GEMHParams,
)
def gem(context: AgentContext) -> SupervisedTemplate:
    """Project each gradient so no past task's memory loss increases (a QP per step).

    References:
        Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.
    """
    hp = settings(context, GEMHParams)
    return GEM(
        **common_arguments(context),
        patterns_per_exp=memory_per_task("gem", context),
        memory_strength=hp.memory_strength,
    )
