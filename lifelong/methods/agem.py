"""``agem``: Averaged GEM, Avalanche's ``AGEM`` (``memory_size // n_tasks`` per task)."""

from __future__ import annotations

from dataclasses import dataclass

from avalanche.training.supervised import AGEM
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.common import (
    common_arguments,
    memory_per_task,
    settings,
)


@dataclass(frozen=True)
class AGEMHParams:
    """Averaged Gradient Episodic Memory.

    References:
        Chaudhry, Ranzato, Rohrbach & Elhoseiny, "Efficient Lifelong Learning with A-GEM",
        ICLR 2019.
    """

    sample_size: int = 256
    """Episodic-memory samples per reference gradient: ``EPS_MEM_BATCH_SIZE = 256`` in the
    authors' permuted-MNIST script (fc_permute_mnist.py). Avalanche's default is 64."""


@register_agent(
    "agem",
    description="Averaged GEM (Chaudhry et al. 2019), 256 memory samples per reference gradient.",
    scenarios=ALL_SCENARIOS,
    uses_memory=True,
    options=AGEMHParams,
)
def agem(context: AgentContext) -> SupervisedTemplate:
    """Project each gradient against the average gradient of a memory sample.

    References:
        Chaudhry, Ranzato, Rohrbach & Elhoseiny, "Efficient Lifelong Learning with A-GEM",
        ICLR 2019.
    """
    hp = settings(context, AGEMHParams)
    return AGEM(
        **common_arguments(context),
        patterns_per_exp=memory_per_task("agem", context),
        sample_size=hp.sample_size,
    )
