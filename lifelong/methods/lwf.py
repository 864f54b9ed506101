"""``lwf``: Learning without Forgetting, Avalanche's ``LwF``."""

from __future__ import annotations

from dataclasses import dataclass

from avalanche.training.supervised import LwF
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.common import (
    common_arguments,
    parameter_bytes,
    records_within,
    settings,
)


@dataclass(frozen=True)
class LwFHParams:
    """Learning without Forgetting.

    References:
        Li & Hoiem, "Learning without Forgetting", ECCV 2016 / TPAMI 2017.
    """

    alpha: float = 1.0
    """Distillation loss weight lambda_o, 1 in the paper's experiments."""
    temperature: float = 2.0
    """Softmax temperature T = 2, as in the paper (after Hinton et al. 2015)."""


@register_agent(
    "lwf",
    description="Learning without Forgetting (Li & Hoiem 2016), alpha 1, temperature 2.",
    scenarios=ALL_SCENARIOS,
    options=LwFHParams,
)
def lwf(context: AgentContext) -> SupervisedTemplate:
    """Distil the previous model's outputs on the new data.

    References:
        Li & Hoiem, "Learning without Forgetting", ECCV 2016.
    """
    hp = settings(context, LwFHParams)
    records_within("lwf", context, parameter_bytes(context), "a copy of the previous model")
    return LwF(**common_arguments(context), alpha=hp.alpha, temperature=hp.temperature)
