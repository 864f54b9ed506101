"""``si``: Synaptic Intelligence, through ``avalanche_fixes.SynapticIntelligencePenalty``."""

from __future__ import annotations

from dataclasses import dataclass

from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.avalanche_fixes import (
    SynapticIntelligencePenalty,
)
from lifelong.methods.common import (
    common_arguments,
    parameter_bytes,
    records_within,
    settings,
)


@dataclass(frozen=True)
class SIHParams:
    """Synaptic Intelligence.

    References:
        Zenke, Poole & Ganguli, "Continual Learning Through Synaptic Intelligence", ICML 2017.
    """

    si_lambda: float = 0.1
    """Strength c for permuted MNIST (Zenke et al. 2017); A-GEM's replication script also
    uses 0.1 for SI ("PI") on permuted MNIST. Applied as in the paper, without Avalanche's
    halving and clipping (see ``SynapticIntelligencePenalty``)."""
    eps: float = 0.1
    """Damping xi for permuted MNIST (the authors' pathint notebook). Split MNIST in the
    paper uses 1e-3; Avalanche's default is 1e-7."""


@register_agent(
    "si",
    description="Synaptic Intelligence (Zenke et al. 2017), c 0.1, xi 0.1.",
    scenarios=ALL_SCENARIOS,
    options=SIHParams,
)
def si(context: AgentContext) -> SupervisedTemplate:
    """Penalise moving weights by their path-integral importance.

    References:
        Zenke, Poole & Ganguli, "Continual Learning Through Synaptic Intelligence", ICML 2017.
    """
    hp = settings(context, SIHParams)
    records_within(
        "si",
        context,
        4 * parameter_bytes(context),
        "importances, anchors, path integrals and start weights, one per parameter",
    )
    penalty = SynapticIntelligencePenalty(strength=hp.si_lambda, damping=hp.eps)
    return SupervisedTemplate(**common_arguments(context, extra_plugins=[penalty]))
