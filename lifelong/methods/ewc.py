"""``ewc``: Elastic Weight Consolidation, Avalanche's ``EWC``."""

from __future__ import annotations

from dataclasses import dataclass

from avalanche.training.supervised import EWC
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.common import (
    common_arguments,
    parameter_bytes,
    records_within,
    settings,
)


@dataclass(frozen=True)
class EWCHParams:
    """Elastic Weight Consolidation.

    References:
        Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017.
    """

    ewc_lambda: float = 3.0
    """Penalty weight. GEM's run_experiments.sh, MNIST Permutations at lr 0.1 (Lopez-Paz &
    Ranzato 2017), whose EWC keeps one penalty per task as ``mode="separate"`` does. Papers
    disagree: A-GEM's replication script uses 10 at lr 0.03 on permuted MNIST (Chaudhry et
    al. 2019), GEM uses 1000 at lr 0.01 on Rotations."""
    mode: str = "separate"
    """One penalty per past task, as in the paper and in GEM's implementation."""


@register_agent(
    "ewc",
    description="Elastic Weight Consolidation (Kirkpatrick et al. 2017), lambda 3.",
    scenarios=ALL_SCENARIOS,
    options=EWCHParams,
)
def ewc(context: AgentContext) -> SupervisedTemplate:
    """Penalise moving weights important to past tasks (diagonal Fisher, one per task).

    References:
        Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017.
    """
    hp = settings(context, EWCHParams)
    per_task = 2 * parameter_bytes(context)
    needed = per_task * (context.stream.n_tasks if hp.mode == "separate" else 1)
    what = "an importance and an anchor per parameter per task"
    records_within("ewc", context, needed, what)
    return EWC(**common_arguments(context), ewc_lambda=hp.ewc_lambda, mode=hp.mode)
