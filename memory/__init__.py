"""The agent's memory: a FAISS-indexed task memory and an episodic sample memory.

- ``TaskMemory``: one embedding per past task with its ``TaskRecord``; ``search`` returns the
  most similar past tasks.
- ``EpisodicMemory``: a bounded buffer of samples under a replacement policy, with optional
  feature vectors searchable by ``nearest``; bounded in samples or in bytes, its samples kept
  as given or as FAISS codes (``SampleCodec``, searchable by ``nearest_samples``).
- ``VectorIndex``: the layer under both, exact while small and approximate at scale, on GPU
  when faiss sees one.

Both memories save atomically to a checksummed, versioned directory and load only what passes
the checks (``MemoryFormatError`` otherwise). This package does not depend on the agent.

Performance note: torch and faiss each load their own OpenMP runtime. On a machine with few
cores, set ``OMP_WAIT_POLICY=PASSIVE`` in the environment before Python starts: otherwise the
threads of one runtime spin while idle and delay the other's by a scheduler tick or more (on 2
cores, searches of 0.1 ms were measured at 4 to 40 ms). ``benchmarks/memory_bench.py`` sets it.
"""

from memory._checks import UnknownIdError
from memory.codec import CodecError, SampleCodec
from memory.episodic import ByteBudgetError, EpisodicMemory, Neighbours, Samples
from memory.index import (
    AUTO,
    METRICS,
    IndexConfig,
    IndexKind,
    Metric,
    VectorIndex,
    choose_kind,
    get_index_kind,
    index_kinds,
    register_index_kind,
)
from memory.persistence import FORMAT_VERSION, MemoryFormatError
from memory.policies import Policy, PolicyInput, get_policy, policies, register_policy
from memory.task_memory import SearchResult, TaskMemory, TaskRecord

__all__ = [
    "AUTO",
    "FORMAT_VERSION",
    "METRICS",
    "ByteBudgetError",
    "CodecError",
    "EpisodicMemory",
    "IndexConfig",
    "IndexKind",
    "MemoryFormatError",
    "Metric",
    "Neighbours",
    "Policy",
    "PolicyInput",
    "SampleCodec",
    "Samples",
    "SearchResult",
    "TaskMemory",
    "TaskRecord",
    "UnknownIdError",
    "VectorIndex",
    "choose_kind",
    "get_index_kind",
    "get_policy",
    "index_kinds",
    "policies",
    "register_index_kind",
    "register_policy",
]
