"""``gdumb``: a class-balanced memory and a network retrained on it alone, Avalanche's GDumb.

After every experience the network is reset to its initial weights and trained from scratch
on the memory alone, with the authors' own optimiser and schedule (``GDumbHParams``), not the
run's: GDumb's claim is that this beats the continual learners it is compared with, so it is
run as published. Two differences from the authors' code, both to fit this harness: they
train once, at the end of the stream, and report the best test accuracy over the passes; here
the network is retrained after every experience (Avalanche's ``GDumbPlugin``), so the
accuracy matrix has every row, and the last pass is the one evaluated (no choice on test
data). The memory is Avalanche's class-balanced buffer (a random sample per class, rebalanced
as classes arrive) rather than the authors' greedy sampler, which stops adding a class's
samples once the memory is full and balanced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, register_agent
from lifelong.methods.avalanche_fixes import QuietGDumbPlugin
from lifelong.methods.common import common_arguments, memory_size, parameter_bytes, settings

__all__ = ["GDumbHParams", "gdumb_learning_rate"]


@dataclass(frozen=True)
class GDumbHParams:
    """GDumb's training on its memory, the authors' MNIST settings.

    Values from drimpossible/GDumb: ``src/opts.py`` defaults, the optimiser and schedule in
    ``src/main.py``, and the MNIST lines of ``scripts/replicate.sh`` (``--num_passes 128``).

    References:
        Prabhu, Torr & Dokania, "GDumb: A Simple Approach that Questions Our Progress in
        Continual Learning", ECCV 2020.
    """

    passes: int = 128
    """Epochs over the memory each time the network is retrained (``--num_passes 128``)."""
    batch_size: int = 16
    """Mini-batch size on the memory (``--batch_size 16``)."""
    max_lr: float = 0.05
    """Learning rate at the top of each cosine cycle (``--maxlr 0.05``)."""
    min_lr: float = 0.0005
    """Learning rate at the bottom of each cycle (``--minlr 0.0005``)."""
    momentum: float = 0.9
    """SGD momentum (``main.py``)."""
    weight_decay: float = 1e-6
    """SGD weight decay (``--weight_decay 1e-6``)."""
    clip: float = 10.0
    """Gradient norm clipped to this before every step (``--clip 10``)."""


def gdumb_learning_rate(epoch: int, max_lr: float, min_lr: float) -> float:
    """The authors' learning rate for an epoch: a warm-up, then cosine with warm restarts.

    Epoch 0 runs at ``max_lr / 10``; from epoch 1 on, cosine annealing from ``max_lr`` to
    ``min_lr`` over cycles of 1, 2, 4, ... epochs (``CosineAnnealingWarmRestarts(T_0=1,
    T_mult=2)`` stepped once per epoch from epoch 2, as ``main.py`` does).

    Args:
        epoch: The epoch within one retraining, from 0.
        max_lr: The top of each cycle.
        min_lr: The bottom of each cycle.
    """
    if epoch == 0:
        return max_lr * 0.1
    scheduler_step = epoch - 1
    cycle = int(math.log2(scheduler_step + 1))
    into_cycle, cycle_length = scheduler_step - (2**cycle - 1), 2**cycle
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * into_cycle / cycle_length)) / 2


class GDumbSchedule(SupervisedPlugin):
    """Sets each epoch's learning rate (``gdumb_learning_rate``) and clips each gradient."""

    def __init__(self, hp: GDumbHParams):
        super().__init__()
        self.hp = hp

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        """Set the learning rate of the epoch about to start."""
        epoch = strategy.clock.train_exp_epochs
        for group in strategy.optimizer.param_groups:
            group["lr"] = gdumb_learning_rate(epoch, self.hp.max_lr, self.hp.min_lr)

    def before_update(self, strategy: Any, **kwargs: Any) -> None:
        """Clip the gradient's norm before the step."""
        torch.nn.utils.clip_grad_norm_(strategy.model.parameters(), self.hp.clip)


@register_agent(
    "gdumb",
    description="GDumb (Prabhu et al. 2020): retrained from scratch on a class-balanced memory.",
    scenarios=ALL_SCENARIOS,
    uses_memory=True,
    options=GDumbHParams,
)
def gdumb(context: AgentContext) -> SupervisedTemplate:
    """Keep a class-balanced memory; after each experience, train a fresh network on it alone.

    Costs ``passes`` epochs over the memory per experience, whatever the stream's size: at
    200 samples, 13 batches of 16 per epoch, 1,664 steps per experience.
    """
    hp = settings(context, GDumbHParams)
    # Its copy of the initial network, to retrain from, is kept beside the memory.
    size = memory_size("gdumb", context, fixed=parameter_bytes(context))
    memory = QuietGDumbPlugin(mem_size=size)
    common = common_arguments(context, extra_plugins=[memory, GDumbSchedule(hp)])
    common["optimizer"] = torch.optim.SGD(
        context.model.parameters(),
        lr=hp.max_lr,
        momentum=hp.momentum,
        weight_decay=hp.weight_decay,
    )
    common["train_mb_size"], common["train_epochs"] = hp.batch_size, hp.passes
    return SupervisedTemplate(**common)
