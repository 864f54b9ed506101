"""``replay-coded``: experience replay over a memory of FAISS codes, at the same budget.

The baseline that separates a codec's effect from an agent's: the same replay as ``replay``
(10 stored samples mixed into every batch, a memory balanced over past experiences), but the
samples are kept as FAISS codes (``memory.codec``), so a budget in bytes holds several times
more of them. Under ``--memory-size`` it keeps that many samples, coded, which shows what the
codec's reconstruction error alone costs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import ALL_SCENARIOS, AgentContext, MemoryBudgetError, register_agent
from lifelong.config import ConfigError
from lifelong.methods.common import common_arguments
from memory import ByteBudgetError, EpisodicMemory
from memory.codec import CodecError, SampleCodec
from streams import dataset_tensors


@dataclass(frozen=True)
class ReplayCodedHParams:
    """Experience replay over coded samples.

    References:
        Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", arXiv 2019 (the
        replay). Hayes et al., "REMIND Your Neural Network to Prevent Catastrophic
        Forgetting", ECCV 2020 (a replay memory of quantised codes).
    """

    codec: str = "PQ/4x4"
    """FAISS factory string the samples are kept in (``memory.codec``): by default the codec
    ``lifelong`` uses, a product quantiser over sub-vectors of 4 values, so the two differ
    only in the agent; ``SQ8``, ``SQ4``, ``PQ{M}x{nbits}``, ... work too."""
    codec_fallback: str = "SQ4"
    """The codec the memory moves to the first time ``codec`` needs retraining, if what it
    stores fits (as ``lifelong``'s ``bytes_codec_fallback``), or ``"none"`` to retrain."""
    memory_batch_size: int = 10
    """Replayed samples per step, as ``replay`` (Chaudhry et al. 2019: equal to the stream
    batch of 10)."""

    def __post_init__(self) -> None:
        if self.memory_batch_size < 1:
            raise ValueError(f"memory_batch_size must be at least 1, got {self.memory_batch_size}")


class CodedReplayPlugin(SupervisedPlugin):
    """Mixes decoded stored samples into every training batch; stores each experience's.

    Args:
        memory: A coded ``EpisodicMemory`` (``task_balanced``: balanced over experiences).
        batch_size_mem: Stored samples drawn, uniformly, into every batch.
    """

    def __init__(self, memory: EpisodicMemory, batch_size_mem: int) -> None:
        super().__init__()
        self.memory = memory
        self.batch_size_mem = batch_size_mem
        # Experience index -> its task label, which the replayed samples carry.
        self._task_labels: dict[int, int] = {}

    def before_training_iteration(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Append a replay draw to the incoming mini-batch."""
        if not len(self.memory):
            return
        drawn = self.memory.sample(self.batch_size_mem)
        x, y, t = strategy.mbatch[:3]
        labels = torch.tensor([self._task_labels[int(i)] for i in drawn.task_id])
        strategy.mbatch = [
            torch.cat([x, drawn.x.to(x.device, x.dtype)]),
            torch.cat([y, drawn.y.to(y.device)]),
            torch.cat([t, labels.to(t.device, t.dtype)]),
            *strategy.mbatch[3:],
        ]

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Offer the experience's samples to the memory."""
        experience = strategy.experience
        x, y = dataset_tensors(experience.dataset)
        index = experience.current_experience
        self._task_labels[index] = int(experience.task_label)
        with budget_errors_as_memory_budget():
            self.memory.add_batch(x.cpu(), y.cpu(), index)

    def stored_samples(self) -> int:
        """Samples in the coded memory."""
        return len(self.memory)

    def memory_bytes_by_kind(self) -> dict[str, int]:
        """The codes (``samples``) and the codebook (``index``)."""
        return self.memory.nbytes_by_kind()

    def run_report(self) -> dict[str, Any]:
        """The codec, its retrainings and every experience's reconstruction error."""
        return {"codec": codec_report(self.memory)}


@contextmanager
def budget_errors_as_memory_budget() -> Iterator[None]:
    """Report a byte budget found too small at the first batch as a run's budget error."""
    try:
        yield
    except ByteBudgetError as error:
        raise MemoryBudgetError(f"--memory-bytes: {error}") from error


def codec_report(memory: EpisodicMemory) -> dict[str, Any]:
    """What a run records about a memory's codec.

    Its string, bytes per code, capacity in samples, retrainings, each batch's relative
    reconstruction error, and the seconds spent training, encoding and decoding (measuring
    the errors included).
    """
    return {
        "spec": memory.codec.spec if memory.codec else None,
        "code_bytes": memory.bytes_per_sample,
        "capacity": memory.capacity if len(memory) else None,
        "retrains": memory.retrains,
        "reconstruction_errors": memory.reconstruction_errors,
        "codec_time_s": memory.codec_seconds,
        "fallback_batch": memory.fallback_batch,
    }


def coded_memory(
    agent: str,
    context: AgentContext,
    spec: str,
    extra_per_sample: int = 0,
    policy: str = "task_balanced",
    fallback: str | None = None,
) -> EpisodicMemory:
    """An episodic memory of ``spec`` codes within the run's budget, samples or bytes.

    Args:
        agent: The agent's name, for error messages.
        context: The run's context (budget, input shape, seed).
        spec: The FAISS factory string.
        extra_per_sample: Bytes the agent keeps beside each sample, charged to a byte budget.
        policy: The memory's replacement policy.
        fallback: The factory string of the memory's fallback codec, or ``None``.

    Raises:
        ConfigError: If FAISS refuses ``spec`` for the stream's inputs.
        MemoryBudgetError: If a byte budget holds not one code.
    """
    dim = 1
    for size in context.stream.input_shape:
        dim *= size
    try:
        codec = SampleCodec(spec, dim)
        if fallback is not None:
            SampleCodec(fallback, dim)
    except CodecError as error:
        raise ConfigError(f"agent {agent!r}: {error}") from error
    budget = context.train.memory_bytes
    per_sample = codec.code_size + extra_per_sample
    if budget is not None and budget < per_sample:
        what = f"{spec} codes" + (" and its logits" if extra_per_sample else "")
        raise MemoryBudgetError(
            f"agent {agent!r} keeps each sample in {per_sample} bytes ({what}); "
            f"--memory-bytes {budget} holds none; give at least {per_sample} and the codebook"
        )
    if budget is None:
        return EpisodicMemory(
            context.train.memory_size, policy, codec=spec, fallback_codec=fallback,
            seed=context.seed,
        )
    return EpisodicMemory(
        policy=policy,
        codec=spec,
        fallback_codec=fallback,
        byte_budget=budget,
        extra_bytes_per_sample=extra_per_sample,
        seed=context.seed,
    )


@register_agent(
    "replay-coded",
    description="Experience replay over FAISS-coded samples (PQ): more samples per byte.",
    scenarios=ALL_SCENARIOS,
    uses_memory=True,
    options=ReplayCodedHParams,
)
def replay_coded(context: AgentContext) -> SupervisedTemplate:
    """``replay`` with its samples kept as FAISS codes (``ReplayCodedHParams.codec``)."""
    hp = context.options if context.options is not None else ReplayCodedHParams()
    if context.train.memory_bytes is None and context.train.memory_size < 1:
        raise MemoryBudgetError(
            f"agent 'replay-coded' stores samples but memory_size is "
            f"{context.train.memory_size}; set memory_size to 1 or more"
        )
    fallback = None if hp.codec_fallback == "none" else hp.codec_fallback
    memory = coded_memory("replay-coded", context, hp.codec, fallback=fallback)
    plugin = CodedReplayPlugin(memory, hp.memory_batch_size)
    return SupervisedTemplate(**common_arguments(context, extra_plugins=[plugin]))
