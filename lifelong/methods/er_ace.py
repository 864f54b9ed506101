"""``er-ace``: experience replay with asymmetric cross-entropy, Avalanche's ``ER_ACE``."""

from __future__ import annotations

from dataclasses import dataclass

from avalanche.training.supervised import ER_ACE
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.avalanche_fixes import (
    QuietClassBalancedBuffer,
)
from lifelong.methods.common import (
    common_arguments,
    memory_size,
    settings,
)
from lifelong.methods.online import SWITCHING


@dataclass(frozen=True)
class ERACEHParams:
    """Experience replay with asymmetric cross-entropy.

    References:
        Caccia, Aljundi, Asadi, Tuytelaars, Pineau & Belilovsky, "New Insights on Reducing
        Abrupt Representation Change in Online Continual Learning", ICLR 2022.
    """

    memory_batch_size: int = 10
    """Replayed samples per step: 10, "fixed across all settings" with stream batch 10 in the
    authors' code (pclucas14/AML main.py). The method has no other hyperparameter."""


@register_agent(
    "er-ace",
    description="ER with asymmetric cross-entropy (Caccia et al. 2022), 10 replayed per step.",
    scenarios=ALL_SCENARIOS | SWITCHING,
    uses_memory=True,
    online_strategy=True,
    options=ERACEHParams,
)
def er_ace(context: AgentContext) -> SupervisedTemplate:
    """Replay with the incoming batch's loss restricted to its own classes.

    References:
        Caccia, Aljundi, Asadi, Tuytelaars, Pineau & Belilovsky, "New Insights on Reducing
        Abrupt Representation Change in Online Continual Learning", ICLR 2022.
    """
    hp, size = settings(context, ERACEHParams), memory_size("er-ace", context)
    strategy = ER_ACE(
        **common_arguments(context), mem_size=size, batch_size_mem=hp.memory_batch_size
    )
    strategy.storage_policy = QuietClassBalancedBuffer(max_size=size, adaptive_size=True)
    return strategy
