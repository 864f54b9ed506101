"""Memory counted in bytes: what each agent keeps beside its network, by kind, and the budget.

Kinds (``KINDS``), in bytes:

- ``samples``: stored training inputs at the dtype they are kept in: float32 for Avalanche's
  buffers and GEM's memories, FAISS codes for a coded memory (``memory.codec``). Labels and
  task ids are not counted (one integer each per sample), as in the usual budget in samples.
- ``sample_extras``: what is kept per stored sample beside it (DER's and ``lifelong``'s stored
  logits, float32).
- ``records``: per-task records and kept parameter copies: EWC's importances and anchors, SI's,
  LwF's previous model, La-MAML's learned learning rates, the task memory of an agent.
- ``index``: FAISS codebooks and indexes.

``memory_bytes_by_kind(strategy, facts)`` measures a built strategy; a strategy defined
elsewhere reports its own with a ``memory_bytes_by_kind()`` method. Under ``--memory-bytes``
every agent's total is checked after each experience (``ByteBudgetCheck``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import AGEMPlugin, EWCPlugin, GEMPlugin, LwFPlugin
from avalanche.training.storage_policy import ExemplarsBuffer
from avalanche.training.supervised import DER, Cumulative

from lifelong.agents import MemoryBudgetError, StreamFacts

KINDS = ("samples", "sample_extras", "records", "index")
"""The kinds of stored bytes, in the order tables show them."""

FLOAT32_BYTES = 4


def sample_bytes(facts: StreamFacts) -> int:
    """Bytes of one input of the stream at float32, the dtype streams hand out."""
    return math.prod(facts.input_shape) * FLOAT32_BYTES


def samples_within(
    agent: str, budget: int, per_sample: int, fixed: int = 0, what: str = "float32 input"
) -> int:
    """How many samples of ``per_sample`` bytes fit in ``budget`` after ``fixed`` bytes.

    Raises:
        MemoryBudgetError: If not one fits.
    """
    count = (budget - fixed) // per_sample
    if count < 1:
        kept = f" after {fixed} bytes of its own records" if fixed else ""
        raise MemoryBudgetError(
            f"agent {agent!r} keeps each sample in {per_sample} bytes ({what}){kept}; "
            f"--memory-bytes {budget} holds none; give at least {fixed + per_sample}"
        )
    return count


def tensor_bytes(tensors: Iterable[Any]) -> int:
    """Bytes of the tensors (or Avalanche ``ParamData``, through ``.data``) given."""
    total = 0
    for value in tensors:
        tensor = getattr(value, "data", value)
        if isinstance(tensor, torch.Tensor):
            total += tensor.numel() * tensor.element_size()
    return total


def memory_bytes_by_kind(strategy: Any, facts: StreamFacts) -> dict[str, int]:
    """Bytes a strategy keeps beside its network, by kind (``KINDS``).

    Args:
        strategy: A strategy built by a registered agent.
        facts: The stream's facts (input shape, classes), for the nominal size of a sample
            Avalanche keeps as a data set.

    Returns:
        One entry per kind, 0 where the strategy keeps nothing of it.
    """
    own = getattr(strategy, "memory_bytes_by_kind", None)
    if callable(own):
        return {kind: int(own().get(kind, 0)) for kind in KINDS}
    counts = dict.fromkeys(KINDS, 0)
    one = sample_bytes(facts)
    holders = [strategy, *strategy.plugins, getattr(strategy, "buffer", None)]
    for holder in holders:
        reports = getattr(holder, "memory_bytes_by_kind", None)
        if holder is not strategy and callable(reports):
            for kind, value in reports().items():
                counts[kind] += int(value)
        policy = getattr(holder, "storage_policy", None)
        if isinstance(policy, ExemplarsBuffer):
            counts["samples"] += len(policy.buffer) * one
        if isinstance(holder, GEMPlugin):
            counts["samples"] += tensor_bytes(holder.memory_x.values())
        if isinstance(holder, AGEMPlugin):
            counts["samples"] += sum(len(b) for b in holder.buffers) * one
        if isinstance(holder, EWCPlugin):
            for per_task in (*holder.saved_params.values(), *holder.importances.values()):
                counts["records"] += tensor_bytes(per_task.values())
        if isinstance(holder, LwFPlugin) and holder.lwf.prev_model is not None:
            counts["records"] += tensor_bytes(holder.lwf.prev_model.state_dict().values())
        counts["records"] += _synaptic_intelligence_bytes(holder)
    if isinstance(strategy, DER):
        counts["sample_extras"] += len(strategy.storage_policy.buffer) * (
            facts.n_classes * FLOAT32_BYTES
        )
    if isinstance(strategy, Cumulative) and strategy.dataset is not None:
        counts["samples"] += len(strategy.dataset) * one
    alpha = getattr(strategy, "alpha_params", None)  # La-MAML's learned learning rates
    if isinstance(alpha, Mapping | torch.nn.ParameterDict):
        counts["records"] += tensor_bytes(alpha.values())
    return counts


def _synaptic_intelligence_bytes(holder: Any) -> int:
    """SI's importances and anchors, and the task's running path integrals and start."""
    names = ("importance", "anchor", "_omega", "_task_start")
    if not all(isinstance(getattr(holder, name, None), dict) for name in names):
        return 0
    return sum(tensor_bytes(getattr(holder, name).values()) for name in names)


class ByteBudgetCheck(SupervisedPlugin):
    """Measures an agent's stored bytes after every experience and refuses to exceed a budget.

    Args:
        agent: The agent's name, for the error message.
        facts: The stream's facts.
        budget: ``--memory-bytes``; ``None`` only measures.

    Attributes:
        by_experience: The total after each experience, in order.
    """

    def __init__(self, agent: str, facts: StreamFacts, budget: int | None) -> None:
        super().__init__()
        self.agent = agent
        self.facts = facts
        self.budget = budget
        self.by_experience: list[int] = []

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Measure; raise ``MemoryBudgetError`` if the total is over the budget."""
        kinds = memory_bytes_by_kind(strategy, self.facts)
        total = sum(kinds.values())
        self.by_experience.append(total)
        if self.budget is not None and total > self.budget:
            parts = ", ".join(f"{kind} {value}" for kind, value in kinds.items() if value)
            raise MemoryBudgetError(
                f"agent {self.agent!r} keeps {total} bytes after experience "
                f"{len(self.by_experience) - 1} ({parts}), over --memory-bytes {self.budget}; "
                f"raise the budget or leave {self.agent} out"
            )
