"""``cumulative``: retrains on all the data seen so far, the upper bound.

Avalanche's ``JointTraining`` trains once on the whole concatenated stream, so it is
evaluated before training and once after: two rows, not the (T+1) x T accuracy matrix that
BWT, forgetting and FWT need (checked with avalanche-lib 0.6.0, ``eval_every=0``).
``cumulative``'s last row is the nearest single number: it too ends trained on all the
data, though early tasks get more passes.
"""

from __future__ import annotations

from avalanche.training.supervised import Cumulative
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.common import (
    common_arguments,
    records_within,
)


@register_agent(
    "cumulative",
    description=(
        "Upper bound: retrains on all the data seen so far at every experience "
        "(unbounded memory; not comparable at equal memory)."
    ),
    scenarios=ALL_SCENARIOS,
)
def cumulative(context: AgentContext) -> SupervisedTemplate:
    """Train on the union of every experience seen so far; the run's upper bound."""
    records_within("cumulative", context, None, "every sample seen")
    return Cumulative(**common_arguments(context))
