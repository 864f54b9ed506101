"""Task memory: one embedding per past task, with that task's record, searchable by similarity.

The agent embeds each arriving task, asks this memory for the ``k`` most similar past tasks,
and reads their records (adapted head parameters, class prototypes, statistics) to initialise
its learner and to choose what to replay.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import numpy as np
import torch

from memory._checks import UnknownIdError, as_ids, as_vectors, to_numpy
from memory.index import (
    AUTO,
    METRICS,
    IndexConfig,
    Metric,
    VectorIndex,
    get_index_kind,
    index_state_files,
    read_index_state,
)
from memory.persistence import (
    Manifest,
    MemoryFormatError,
    Writer,
    info_field,
    read_manifest,
    require_files,
    save_directory,
)

MEMORY_TYPE = "task_memory"
_TENSORS = "tensors.pt"
_METADATA = "metadata.json"
_INDEX_PREFIX = "index_"


def _frozen_copy(tensors: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping of name to tensor, got {type(tensors)}")
    copied: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensor names must be non-empty strings, got {name!r}")
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            raise TypeError(
                f"tensor {name!r} must be a dense torch.Tensor, got {type(tensor).__name__}"
            )
        # A private CPU copy: later in-place edits by the caller must not reach the memory.
        copied[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return MappingProxyType(copied)


def _canonical_metadata(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    for key in metadata:
        if not isinstance(key, str):
            raise TypeError(f"metadata keys must be strings, got {key!r}")
    try:
        text = json.dumps(dict(metadata), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"metadata must be JSON-serialisable (str, int, float, bool, None, lists and dicts "
            f"of them; no NaN): {error}"
        ) from error
    return MappingProxyType(json.loads(text))


@dataclass(frozen=True, eq=False)
class TaskRecord:
    """What the memory keeps about one past task besides its embedding.

    Both mappings are read-only copies taken at construction. ``metadata`` is stored as JSON,
    and normalised through JSON at construction, so what you read back now is what a loaded
    memory returns: tuples become lists and non-string keys of nested dicts become strings.

    Attributes:
        tensors: Named dense tensors (adapted head parameters, class prototypes, statistics),
            copied to CPU.
        metadata: JSON-serialisable plain data (task name, classes, sizes).
    """

    tensors: Mapping[str, torch.Tensor] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tensors", _frozen_copy(self.tensors))
        object.__setattr__(self, "metadata", _canonical_metadata(self.metadata))


class SearchResult(NamedTuple):
    """Nearest stored entries for a batch of queries, best first along the last axis.

    Attributes:
        similarities: ``(q, k')`` float32: cosine similarity, or the negative squared L2
            distance for ``metric="l2"``; higher is more similar either way.
        ids: ``(q, k')`` int64 ids, where ``k' = min(k, len(memory))``.
    """

    similarities: torch.Tensor
    ids: torch.Tensor


class TaskMemory:
    """One embedding per past task, each with a ``TaskRecord``, searchable by similarity.

    Ids are assigned by ``add`` in increasing order and never reused, not even after
    ``remove``; they are stable across index changes, ``update_embedding``, and save/load.

    ``search`` with ``k`` larger than the memory returns every entry; on an empty memory it
    returns tensors of shape ``(q, 0)``. With ``index_kind="auto"`` the index is exact up to
    ``index_config.exact_until`` tasks and approximate beyond (see ``memory.index``).

    Args:
        dim: Embedding dimension.
        metric: ``"cosine"`` (the embedding's direction matters) or ``"l2"``.
        index_kind: ``"auto"``, ``"flat"``, ``"hnsw"``, ``"ivf"`` or another registered kind.
        index_config: Index tuning; ``IndexConfig()`` by default.

    Example:
        >>> memory = TaskMemory(dim=4)
        >>> first = memory.add(torch.tensor([1.0, 0, 0, 0]), TaskRecord(metadata={"name": "a"}))
        >>> result = memory.search(torch.tensor([[0.9, 0.1, 0, 0]]), k=1)
        >>> memory.records(result.ids)[0][0].metadata["name"]
        'a'
    """

    def __init__(
        self,
        dim: int,
        *,
        metric: Metric = "cosine",
        index_kind: str = AUTO,
        index_config: IndexConfig | None = None,
    ) -> None:
        self._index = VectorIndex(dim, metric, index_kind, index_config)
        self._records: dict[int, TaskRecord] = {}
        self._next_id = 0

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._index.dim

    @property
    def metric(self) -> Metric:
        """``"cosine"`` or ``"l2"``."""
        return self._index.metric

    @property
    def index(self) -> VectorIndex:
        """The underlying index, for inspection and search tuning (``set_search_options``)."""
        return self._index

    @property
    def nbytes(self) -> int:
        """Bytes held by the index and the records' tensors (metadata not counted)."""
        tensors = sum(
            t.numel() * t.element_size() for r in self._records.values() for t in r.tensors.values()
        )
        return self._index.nbytes + tensors

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._records

    def __repr__(self) -> str:
        return (
            f"TaskMemory(dim={self.dim}, metric={self.metric!r}, tasks={len(self)}, "
            f"index={self._index.built_kind or self._index.kind!r})"
        )

    def task_ids(self) -> list[int]:
        """Ids of the stored tasks, in increasing order."""
        return sorted(self._records)

    def add(self, embedding: Any, record: TaskRecord | None = None) -> int:
        """Store a task's embedding and record.

        Args:
            embedding: ``(dim,)`` (or ``(1, dim)``) finite vector; non-zero for cosine.
            record: The task's record; an empty one by default.

        Returns:
            The new task's id.

        Raises:
            TypeError: If ``record`` is not a ``TaskRecord``.
            ValueError: On a wrong shape, or a NaN or infinite value.
        """
        vector = self._one_embedding(embedding)
        record = TaskRecord() if record is None else record
        if not isinstance(record, TaskRecord):
            raise TypeError(f"record must be a TaskRecord, got {type(record).__name__}")
        task_id = self._next_id
        self._index.add([task_id], vector)
        self._records[task_id] = record
        self._next_id += 1
        return task_id

    def search(self, embeddings: Any, k: int) -> SearchResult:
        """The ``k`` past tasks most similar to each query embedding, best first.

        Args:
            embeddings: ``(q, dim)`` queries, or one ``(dim,)`` query (read as ``q = 1``).
            k: Positive number of neighbours; more than ``len(self)`` returns all tasks.

        Returns:
            A ``SearchResult`` of ``(q, min(k, len(self)))`` tensors.

        Raises:
            TypeError: If ``k`` is not an int.
            ValueError: If ``k <= 0``, or on a wrong shape or NaN or infinite value.
        """
        similarities, ids = self._index.search(embeddings, k)
        return SearchResult(torch.from_numpy(similarities), torch.from_numpy(ids))

    def records(self, ids: Any) -> list[list[TaskRecord]]:
        """The records of a ``(q, k)`` block of ids, such as ``search(...).ids``.

        A 1-D block is read as one row.

        Raises:
            UnknownIdError: If an id is not stored.
        """
        array = to_numpy(ids, "ids")
        if array.ndim == 1:
            array = array.reshape(1, -1)
        if array.ndim != 2:
            raise ValueError(f"ids must have shape (q, k) or (k,), got {tuple(array.shape)}")
        rows = as_ids(array).reshape(array.shape)
        return [[self.get(int(task_id)) for task_id in row] for row in rows]

    def get(self, task_id: int) -> TaskRecord:
        """The record of a stored task.

        Raises:
            UnknownIdError: If ``task_id`` is not stored.
        """
        self._check_id(task_id)
        return self._records[task_id]

    def embedding(self, task_id: int) -> torch.Tensor:
        """A stored task's embedding (unit-normalised when the metric is cosine).

        Raises:
            UnknownIdError: If ``task_id`` is not stored.
        """
        self._check_id(task_id)
        return torch.from_numpy(self._index.get_vectors([task_id])[0])

    def update_embedding(self, task_id: int, embedding: Any) -> None:
        """Replace a task's embedding, keeping its id and record (re-embedding old tasks).

        Raises:
            UnknownIdError: If ``task_id`` is not stored.
            ValueError: On a wrong shape, or a NaN or infinite value.
        """
        self._check_id(task_id)
        self._index.update([task_id], self._one_embedding(embedding))

    def update_record(self, task_id: int, record: TaskRecord) -> None:
        """Replace a task's record, keeping its id and embedding (a task seen again).

        Raises:
            UnknownIdError: If ``task_id`` is not stored.
            TypeError: If ``record`` is not a ``TaskRecord``.
        """
        self._check_id(task_id)
        if not isinstance(record, TaskRecord):
            raise TypeError(f"record must be a TaskRecord, got {type(record).__name__}")
        self._records[task_id] = record

    def remove(self, task_id: int) -> None:
        """Forget a task: its embedding and record. Its id is not reused.

        Raises:
            UnknownIdError: If ``task_id`` is not stored.
        """
        self._check_id(task_id)
        self._index.remove([task_id])
        del self._records[task_id]

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Save atomically to ``directory`` (see ``memory.persistence`` for the format).

        Raises:
            FileExistsError: If ``directory`` exists and is not a saved memory.
        """
        writers, index_info = index_state_files(self._index.state(), _INDEX_PREFIX)
        tensors = {str(task_id): dict(r.tensors) for task_id, r in self._records.items()}
        metadata = {str(task_id): dict(r.metadata) for task_id, r in self._records.items()}

        def write_tensors(path: Path) -> None:
            torch.save(tensors, path)

        def write_metadata(path: Path) -> None:
            path.write_text(json.dumps(metadata, allow_nan=False), encoding="utf-8")

        files: dict[str, Writer] = {**writers, _TENSORS: write_tensors, _METADATA: write_metadata}
        info = {
            "dim": self.dim,
            "metric": self.metric,
            "index_kind": self._index.kind,
            "index_config": asdict(self._index.config),
            "counts": {"tasks": len(self), "next_id": self._next_id},
            "index": index_info,
        }
        save_directory(directory, MEMORY_TYPE, info, files)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TaskMemory:
        """Load a memory saved by ``save``, checking the manifest and every checksum.

        Raises:
            FileNotFoundError: If ``directory`` does not exist.
            MemoryFormatError: If it is not a task memory, or is corrupt or inconsistent.
        """
        manifest = read_manifest(directory, MEMORY_TYPE)
        require_files(manifest, [_TENSORS, _METADATA])
        dim = info_field(manifest, "dim", int)
        metric = info_field(manifest, "metric", str)
        kind = info_field(manifest, "index_kind", str)
        counts = info_field(manifest, "counts", dict)
        index_info = info_field(manifest, "index", dict)
        config = _load_config(manifest)
        next_id = counts.get("next_id")
        if metric not in METRICS or not isinstance(next_id, int):
            raise MemoryFormatError(
                f"{manifest.directory}: metric {metric!r} or next_id {next_id!r} is invalid"
            )
        try:
            if kind != AUTO:
                get_index_kind(kind)
            index = VectorIndex.from_state(
                read_index_state(manifest, _INDEX_PREFIX, index_info),
                dim, cast(Metric, metric), kind, config,
            )
        except (ValueError, TypeError) as error:
            if isinstance(error, MemoryFormatError):
                raise
            raise MemoryFormatError(f"{manifest.directory}: {error}") from error
        records = _load_records(manifest)
        ids = {int(i) for i in index.ids()}
        if set(records) != ids or counts.get("tasks") != len(ids) or (ids and max(ids) >= next_id):
            raise MemoryFormatError(
                f"{manifest.directory}: records for {len(records)} tasks, embeddings for "
                f"{len(ids)}, manifest counts {counts}; they must agree"
            )
        memory = cls(dim, metric=cast(Metric, metric), index_kind=kind, index_config=config)
        memory._index = index
        memory._records = records
        memory._next_id = next_id
        return memory

    def _one_embedding(self, embedding: Any) -> np.ndarray:
        vector = as_vectors(embedding, self.dim, "embedding")
        if vector.shape[0] != 1:
            raise ValueError(
                f"expected one embedding of shape ({self.dim},), got shape "
                f"{tuple(vector.shape)}; add or update one task at a time"
            )
        return vector

    def _check_id(self, task_id: Any) -> None:
        if isinstance(task_id, bool) or not isinstance(task_id, int | np.integer):
            raise TypeError(f"task_id must be an int, got {task_id!r}")
        if task_id not in self._records:
            shown = self.task_ids()[:10]
            more = ", ..." if len(self) > 10 else ""
            raise UnknownIdError(
                f"task_id {task_id} is not in this memory; it holds {len(self)} tasks "
                f"with ids {shown}{more}"
            )


def _load_config(manifest: Manifest) -> IndexConfig:
    raw = info_field(manifest, "index_config", dict)
    try:
        return IndexConfig(**raw)
    except (TypeError, ValueError) as error:
        raise MemoryFormatError(
            f"{manifest.directory}: index_config {raw!r} is invalid: {error}"
        ) from error


def _load_records(manifest: Manifest) -> dict[int, TaskRecord]:
    try:
        tensors = torch.load(manifest.directory / _TENSORS, map_location="cpu", weights_only=True)
        metadata = json.loads((manifest.directory / _METADATA).read_text(encoding="utf-8"))
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise MemoryFormatError(
            f"{manifest.directory}: cannot read the task records: {error}"
        ) from error
    if not isinstance(tensors, dict) or not isinstance(metadata, dict) or set(tensors) != set(
        metadata
    ):
        raise MemoryFormatError(
            f"{manifest.directory}: {_TENSORS} and {_METADATA} must map the same task ids"
        )
    records: dict[int, TaskRecord] = {}
    for key, named in tensors.items():
        try:
            records[int(key)] = TaskRecord(named, metadata[key])
        except (TypeError, ValueError) as error:
            raise MemoryFormatError(
                f"{manifest.directory}: record of task {key!r} is malformed: {error}"
            ) from error
    return records
