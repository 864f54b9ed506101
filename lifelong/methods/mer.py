"""``mer``: Meta-Experience Replay, Avalanche's ``MER``."""

from __future__ import annotations

from dataclasses import dataclass

from avalanche.training.supervised.mer import MER
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.avalanche_fixes import (
    QuietReservoirSamplingBuffer,
)
from lifelong.methods.common import (
    common_arguments,
    memory_size,
    settings,
)
from lifelong.methods.online import SWITCHING


@dataclass(frozen=True)
class MERHParams:
    """Meta-Experience Replay, Avalanche's ``MER`` (Riemer et al. 2019, algorithm 1).

    Values are the MER line of the La-MAML authors' MNIST Rotations script at 200 memories
    (run_experiments.sh in montrealrobotics/La-MAML: ``--model meralg1 --replay_batch_size 10
    --lr 0.1 --beta 0.01 --gamma 1.0 --batches_per_example 5``); the learning rate is the
    run's (0.1 under the GEM protocol). The script's permuted-MNIST line differs (lr 0.03,
    beta 0.03, 10 batches per example); unlike this module's other methods, the rotations
    line is kept, because the permuted one doubles what is already the costliest step here:
    each incoming batch costs ``n_inner_steps`` x (batch + ``memory_batch_size``)
    single-sample SGD steps.
    """

    memory_batch_size: int = 10
    """Replayed samples drawn with every inner batch (``--replay_batch_size 10``)."""
    n_inner_steps: int = 5
    """Inner batches per incoming batch (``--batches_per_example 5``)."""
    beta: float = 0.01
    """Within-batch Reptile step (``--beta 0.01``)."""
    gamma: float = 1.0
    """Across-batch Reptile step (``--gamma 1.0``)."""


@register_agent(
    "mer",
    description="Meta-Experience Replay (Riemer et al. 2019): Reptile over replayed samples.",
    scenarios=ALL_SCENARIOS | SWITCHING,
    uses_memory=True,
    online_strategy=True,
    options=MERHParams,
)
def mer(context: AgentContext) -> SupervisedTemplate:
    """Reptile meta-updates over single-sample SGD steps on incoming and replayed samples.

    The memory is a reservoir of ``memory_size`` samples, filled at the end of each
    experience (Avalanche's ``MER``); the buffer goes through the non-deprecated update.

    References:
        Riemer et al., "Learning to Learn without Forgetting by Maximizing Transfer and
        Minimizing Interference", ICLR 2019.
    """
    hp = settings(context, MERHParams)
    size = memory_size("mer", context)
    strategy = MER(
        **common_arguments(context),
        mem_size=size,
        batch_size_mem=hp.memory_batch_size,
        n_inner_steps=hp.n_inner_steps,
        beta=hp.beta,
        gamma=hp.gamma,
    )
    strategy.buffer.storage_policy = QuietReservoirSamplingBuffer(max_size=size)
    return strategy
