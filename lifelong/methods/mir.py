"""``mir``: Maximally Interfered Retrieval, through ``avalanche_fixes.MIRPluginAllPast``."""

from __future__ import annotations

from dataclasses import dataclass

from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.avalanche_fixes import (
    MIRPluginAllPast,
)
from lifelong.methods.common import (
    common_arguments,
    memory_size,
    settings,
)
from lifelong.methods.online import SWITCHING


@dataclass(frozen=True)
class MIRHParams:
    """Maximally Interfered Retrieval (replay variant, ER-MIR).

    References:
        Aljundi, Caccia, Belilovsky, Caccia, Lin, Charlin & Tuytelaars, "Online Continual
        Learning with Maximally Interfered Retrieval", NeurIPS 2019.
    """

    subsample: int = 50
    """Candidates drawn from memory before picking the most interfered (C = 50 in the
    authors' ER_experiments.sh for Split and Permuted MNIST)."""
    memory_batch_size: int = 10
    """Most-interfered samples replayed per step (``buffer_batch_size`` 10, same source)."""


@register_agent(
    "mir",
    description="Maximally Interfered Retrieval (Aljundi et al. 2019), 10 of 50 candidates.",
    scenarios=ALL_SCENARIOS | SWITCHING,
    uses_memory=True,
    online_strategy=True,
    options=MIRHParams,
)
def mir(context: AgentContext) -> SupervisedTemplate:
    """Replay the memory samples a virtual SGD step would hurt most.

    References:
        Aljundi, Caccia, Belilovsky, Caccia, Lin, Charlin & Tuytelaars, "Online Continual
        Learning with Maximally Interfered Retrieval", NeurIPS 2019.
    """
    hp, size = settings(context, MIRHParams), memory_size("mir", context)
    plugin = MIRPluginAllPast(
        batch_size_mem=hp.memory_batch_size, mem_size=size, subsample=hp.subsample
    )
    return SupervisedTemplate(**common_arguments(context, extra_plugins=[plugin]))
