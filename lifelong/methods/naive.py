"""``naive``: plain fine-tuning, the lower bound (no memory, no regularisation)."""

from __future__ import annotations

from avalanche.training.supervised import Naive
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.common import (
    common_arguments,
)


@register_agent(
    "naive",
    description="Fine-tuning with plain SGD: the lower bound (no memory, no regularisation).",
    scenarios=ALL_SCENARIOS,
)
def naive(context: AgentContext) -> SupervisedTemplate:
    """Plain fine-tuning on each experience in turn."""
    return Naive(**common_arguments(context))
