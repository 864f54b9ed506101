"""``replay``: experience replay over a buffer balanced per experience."""

from __future__ import annotations

from dataclasses import dataclass

from avalanche.training.plugins import ReplayPlugin
from avalanche.training.storage_policy import ExemplarsBuffer
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.avalanche_fixes import (
    QuietExperienceBalancedBuffer,
    QuietReservoirSamplingBuffer,
)
from lifelong.methods.common import (
    common_arguments,
    memory_size,
    settings,
)
from lifelong.methods.online import SWITCHING
from streams import Scenario


@dataclass(frozen=True)
class ReplayHParams:
    """Experience replay with a buffer balanced over experiences (Avalanche's ReplayPlugin).

    References:
        Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", arXiv 2019.
    """

    memory_batch_size: int = 10
    """Replayed samples per step: 10, equal to the stream batch of 10, as in the paper.
    The paper fills its memory by reservoir sampling; Avalanche's default buffer, kept here,
    splits it evenly over the experiences seen."""


@register_agent(
    "replay",
    description="Experience replay (Chaudhry et al. 2019): memory_size samples, 10 per step.",
    scenarios=ALL_SCENARIOS | SWITCHING,
    uses_memory=True,
    online_strategy=True,
    options=ReplayHParams,
)
def replay(context: AgentContext) -> SupervisedTemplate:
    """Mix samples from a buffer balanced over past experiences into every batch.

    References:
        Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", arXiv 2019.
    """
    hp, size = settings(context, ReplayHParams), memory_size("replay", context)
    storage: ExemplarsBuffer = QuietExperienceBalancedBuffer(max_size=size, adaptive_size=True)
    if context.stream.scenario is Scenario.TASK_SWITCHING:
        # There every step is an experience: a buffer split over experiences would keep
        # nothing once the steps outnumber its slots. The paper's reservoir instead.
        storage = QuietReservoirSamplingBuffer(max_size=size)
    plugin = ReplayPlugin(
        mem_size=size, batch_size_mem=hp.memory_batch_size, storage_policy=storage
    )
    return SupervisedTemplate(**common_arguments(context, extra_plugins=[plugin]))
