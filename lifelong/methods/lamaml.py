"""``lamaml``: La-MAML, Avalanche's ``lamaml_v2``."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

from avalanche.models.utils import is_multi_task_module
from avalanche.training.supervised.lamaml_v2 import LaMAML
from avalanche.training.templates import SupervisedTemplate
from avalanche.training.templates.base import PositionalArgumentsDeprecatedWarning

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.avalanche_fixes import (
    IgnoreTaskLabels,
    QuietReservoirSamplingBuffer,
)
from lifelong.methods.common import (
    common_arguments,
    memory_size,
    parameter_bytes,
    settings,
)
from lifelong.methods.online import SWITCHING
from streams import Scenario


@dataclass(frozen=True)
class LaMAMLHParams:
    """Look-ahead MAML, Avalanche's ``lamaml_v2`` (``torch.func``, no ``higher``).

    Values are the authors' La-MAML runs for MNIST Rotations and Permutations
    (run_experiments.sh and parser.py in montrealrobotics/La-MAML). Their MNIST code takes one
    inner step per incoming sample, so ``n_inner_updates`` is the run's batch size. Their
    "glances" (5 passes over each incoming batch) have no counterpart in ``lamaml_v2``; the
    run's ``epochs`` apply as for every agent.

    References:
        Gupta, Yadav & Paull, "La-MAML: Look-ahead Meta Learning for Continual Learning",
        NeurIPS 2020.
    """

    alpha_init: float = 0.15
    """Initial value of every per-parameter learning rate (``--alpha_init 0.15``)."""
    lr_alpha: float = 0.3
    """Learning rate of the learning rates (``--opt_lr 0.3``)."""
    second_order: bool = False
    """First-order meta-gradient: the MNIST runs do not pass ``--second_order``."""
    grad_clip_norm: float = 2.0
    """The authors' default, not overridden for MNIST (Avalanche's default is 1.0)."""
    memory_batch_size: int = 10
    """Replayed samples per meta-update (``--replay_batch_size 10``)."""


@register_agent(
    "lamaml",
    description="La-MAML (Gupta et al. 2020): meta-learned per-parameter learning rates.",
    scenarios=ALL_SCENARIOS | SWITCHING,
    uses_memory=True,
    online_strategy=True,
    options=LaMAMLHParams,
)
def lamaml(context: AgentContext) -> SupervisedTemplate:
    """Meta-learn weights and per-parameter learning rates on current and replayed data.

    The run's ``lr`` is unused: the weights move by the learned learning rates. Avalanche's
    ``lamaml_v2`` re-initialises the model (Kaiming normal) when built; the run's own
    initialisation is put back, so every agent starts from the same weights.

    References:
        Gupta, Yadav & Paull, "La-MAML: Look-ahead Meta Learning for Continual Learning",
        NeurIPS 2020.
    """
    # Its learned learning rates: one per weight, kept beside the memory.
    hp = settings(context, LaMAMLHParams)
    size = memory_size("lamaml", context, fixed=parameter_bytes(context))
    net = context.model if is_multi_task_module(context.model) else IgnoreTaskLabels(context.model)
    initial_weights = copy.deepcopy(net.state_dict())
    with warnings.catch_warnings():
        # lamaml_v2 passes its own base class positional arguments; nothing a user can change.
        warnings.simplefilter("ignore", PositionalArgumentsDeprecatedWarning)
        strategy = LaMAML(
            **common_arguments(context, model=net),
            n_inner_updates=_inner_updates(context),
            second_order=hp.second_order,
            grad_clip_norm=hp.grad_clip_norm,
            learn_lr=True,
            lr_alpha=hp.lr_alpha,
            sync_update=False,
            alpha_init=hp.alpha_init,
            max_buffer_size=size,
            buffer_mb_size=hp.memory_batch_size,
        )
    net.load_state_dict(initial_weights)
    strategy.buffer.storage_policy = QuietReservoirSamplingBuffer(max_size=size)
    return strategy


def _inner_updates(context: AgentContext) -> int:
    """Inner steps per batch: one per sample of a mini-batch, as in the paper's online runs.

    A task-switching step can hold fewer samples than ``batch_size`` (5 on a 5-way 1-shot
    stream), and La-MAML splits the batch into that many chunks: there one inner step per
    label, so that no chunk is empty.
    """
    if context.stream.scenario is Scenario.TASK_SWITCHING:
        return min(context.train.batch_size, context.stream.n_classes)
    return context.train.batch_size
