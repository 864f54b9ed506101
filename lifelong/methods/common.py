"""What every baseline in ``lifelong.methods`` shares: constructor arguments and the budget.

Every strategy trains the run's model with ``CrossEntropyLoss`` and SGD at the run's learning
rate, batch size and epochs (``TrainConfig``, through ``common_arguments``); a method whose
paper fixes its own optimiser says so in its module. Memory: one budget,
``TrainConfig.memory_size``, bounds the samples every memory-based method keeps, total over
the stream (``memory_size``); under ``TrainConfig.memory_bytes`` a method stores as many
float32 samples as fit beside what else it keeps, and a method whose own records exceed the
budget is refused (``records_within``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import AGEMPlugin, GEMPlugin
from avalanche.training.storage_policy import (
    ExemplarsBuffer,
)
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from lifelong.agents import AgentContext, MemoryBudgetError
from lifelong.budget import sample_bytes, samples_within, tensor_bytes
from streams import Scenario

SINGLE_HEAD_SCENARIOS = frozenset({Scenario.CLASS_INCREMENTAL, Scenario.DOMAIN_INCREMENTAL})
"""Scenarios whose model has one output head and is called as ``model(x)``."""


def stored_samples(strategy: SupervisedTemplate) -> int | None:
    """Count the training samples a strategy holds in memory right now.

    Knows the memories of the strategies in this module (Avalanche storage policies on the
    strategy or its plugins, GEM's and A-GEM's per-task memories, La-MAML's buffer). A
    strategy defined elsewhere reports its own by defining a ``stored_samples()`` method.

    Args:
        strategy: A strategy built by a registered agent.

    Returns:
        The number of stored samples, or ``None`` if the strategy has no memory this
        function knows of.
    """
    own = getattr(strategy, "stored_samples", None)
    if callable(own):
        return int(own())
    counts: list[int] = [
        int(plugin.stored_samples())
        for plugin in strategy.plugins
        if callable(getattr(plugin, "stored_samples", None))
    ]
    lamaml_buffer = getattr(strategy, "buffer", None)
    holders = [strategy, *strategy.plugins, lamaml_buffer]
    for holder in holders:
        policy = getattr(holder, "storage_policy", None)
        if isinstance(policy, ExemplarsBuffer):
            counts.append(len(policy.buffer))
        if isinstance(holder, GEMPlugin):
            counts.append(sum(len(x) for x in holder.memory_x.values()))
        if isinstance(holder, AGEMPlugin):
            counts.append(sum(len(b) for b in holder.buffers))
    return sum(counts) if counts else None


# --- Shared plumbing. ----------------------------------------------------------------------


def common_arguments(
    context: AgentContext,
    model: nn.Module | None = None,
    extra_plugins: Sequence[SupervisedPlugin] = (),
) -> dict[str, Any]:
    """Constructor arguments every baseline shares: the run's model, SGD, loss, sizes, plugins.

    Args:
        context: The run's context.
        model: The network to train, when not ``context.model`` itself (a wrapper of it).
        extra_plugins: The method's own plugins, after the run's.
    """
    net = context.model if model is None else model
    return {
        "model": net,
        "optimizer": torch.optim.SGD(net.parameters(), lr=context.train.lr),
        "criterion": nn.CrossEntropyLoss(),
        "train_mb_size": context.train.batch_size,
        "train_epochs": context.train.epochs,
        "eval_mb_size": context.train.eval_batch_size,
        "device": context.device,
        "evaluator": context.evaluator,
        "plugins": [*context.plugins, *extra_plugins],
        "eval_every": 0,
    }


def memory_size(
    agent: str, context: AgentContext, extra_per_sample: int = 0, fixed: int = 0
) -> int:
    """The samples an agent may store: ``memory_size``, or as many as ``memory_bytes`` holds.

    Args:
        agent: The agent's name, for error messages.
        context: The run's context.
        extra_per_sample: Bytes the agent keeps beside each sample (DER's logits).
        fixed: Bytes the agent keeps whatever it stores (La-MAML's learning rates).
    """
    budget = context.train.memory_bytes
    if budget is not None:
        per_sample = sample_bytes(context.stream) + extra_per_sample
        what = "float32 input" + (" and its logits" if extra_per_sample else "")
        return samples_within(agent, budget, per_sample, fixed, what)
    size = context.train.memory_size
    if size < 1:
        raise MemoryBudgetError(
            f"agent {agent!r} stores samples but memory_size is {size}; "
            "set memory_size to 1 or more, or pick an agent without memory"
        )
    return size


def memory_per_task(agent: str, context: AgentContext) -> int:
    """The samples per task of a method that splits its memory evenly (GEM, A-GEM)."""
    size, n_tasks = memory_size(agent, context), context.stream.n_tasks
    if size < n_tasks:
        budget = (
            f"memory_size={size}"
            if context.train.memory_bytes is None
            else f"the {size} samples --memory-bytes {context.train.memory_bytes} holds"
        )
        raise MemoryBudgetError(
            f"agent {agent!r} splits {budget} evenly over n_tasks={n_tasks} "
            f"tasks, which leaves no sample per task; set memory_size to {n_tasks} or more"
        )
    return size // n_tasks


def records_within(agent: str, context: AgentContext, needed: int | None, what: str) -> None:
    """Refuse an agent whose own records exceed ``memory_bytes``.

    Args:
        agent: The agent's name.
        context: The run's context.
        needed: The records' bytes; ``None`` when they grow without bound.
        what: What the records are, for the message.
    """
    budget = context.train.memory_bytes
    if budget is None or (needed is not None and needed <= budget):
        return
    size = "an unbounded amount" if needed is None else f"{needed} bytes"
    raise MemoryBudgetError(
        f"agent {agent!r} keeps {size} ({what}), over --memory-bytes {budget}; "
        f"raise the budget or leave {agent} out"
    )


_Settings = TypeVar("_Settings")


def settings(context: AgentContext, kind: type[_Settings]) -> _Settings:
    """The run's settings of a baseline (``--agent-option``), or its published defaults."""
    options = context.options
    if options is None:
        return kind()
    if not isinstance(options, kind):
        raise TypeError(f"expected {kind.__name__} settings, got {type(options).__name__}")
    return options


def parameter_bytes(context: AgentContext) -> int:
    """Bytes of one copy of the run's network, for methods that keep copies or per-weight values."""
    return tensor_bytes(context.model.parameters())
