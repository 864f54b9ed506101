"""Episodic sample memory: a bounded buffer of ``(x, y, task_id)`` samples for replay.

Optionally each sample carries a feature vector, indexed with FAISS so that ``nearest`` finds
the stored samples closest to a query in feature space.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch

from memory._checks import (
    UnknownIdError,
    as_vectors,
    check_positive_int,
    to_numpy,
)
from memory.index import (
    AUTO,
    METRICS,
    IndexConfig,
    Metric,
    VectorIndex,
    get_index_kind,
    index_state_files,
    normalise_rows,
    read_index_state,
)
from memory.persistence import (
    MemoryFormatError,
    Writer,
    info_field,
    read_manifest,
    require_files,
    save_directory,
)
from memory.policies import PolicyInput, get_policy

MEMORY_TYPE = "episodic_memory"
_SAMPLES = "samples.pt"
_FEATURES_PREFIX = "features_"


class Samples(NamedTuple):
    """A batch of stored samples.

    Attributes:
        x: ``(n, *sample_shape)`` inputs.
        y: ``(n,)`` int64 labels.
        task_id: ``(n,)`` int64 task ids.
        slot: ``(n,)`` int64 storage slots, valid until the memory next changes; they let a
            caller keep its own per-sample data (e.g. stored logits) beside the memory.
    """

    x: torch.Tensor
    y: torch.Tensor
    task_id: torch.Tensor
    slot: torch.Tensor


class Neighbours(NamedTuple):
    """Stored samples nearest to each query in feature space, best first along axis 1.

    Attributes:
        similarities: ``(q, k')`` float32: negative squared L2 distance (``metric="l2"``) or
            cosine similarity; higher is closer.
        slots: ``(q, k')`` int64 storage slots of the samples.
        x: ``(q, k', *sample_shape)`` inputs.
        y: ``(q, k')`` labels.
        task_id: ``(q, k')`` task ids.
    """

    similarities: torch.Tensor
    slots: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    task_id: torch.Tensor


_ProbabilityCache = tuple[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]]
"""``(key, (probabilities, stored task ids))`` of ``EpisodicMemory._cached_probabilities``."""


def _int_vector(values: Any, name: str, length: int) -> np.ndarray:
    if isinstance(values, bool):
        raise TypeError(f"{name} must be integers, got {values!r}")
    array = to_numpy(values, name)
    if array.ndim == 0:
        array = np.full(length, array)
    if array.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},) or be one int, got {array.shape}")
    if length and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be integers, got dtype {array.dtype}")
    if length and array.min() < 0:
        raise ValueError(f"{name} must be non-negative, got {array.min()}")
    return array.astype(np.int64)


class EpisodicMemory:
    """A bounded buffer of samples ``(x, y, task_id)``, each optionally with a feature vector.

    Holds at most ``capacity`` samples; ``policy`` decides what stays (see ``memory.policies``:
    ``"reservoir"``, ``"class_balanced"``, ``"task_balanced"``). The sample shape and dtype of
    ``x`` are fixed by the first batch. All randomness (replacement and ``sample``) comes from
    a ``torch.Generator`` seeded with ``seed``, so a run is reproducible, and a saved memory
    resumes the same random sequence after ``load``.

    References:
        Reservoir: Vitter, ACM TOMS 1985. Class-balanced: Chrysakis & Moens, ICML 2020.
        Episodic replay: Chaudhry et al., "On Tiny Episodic Memories in Continual Learning",
        2019.

    Args:
        capacity: Most samples held.
        policy: Name of a registered replacement policy.
        feature_dim: Dimension of per-sample features; ``None`` stores none, and then
            ``nearest`` is unavailable. When set, every batch must bring features.
        metric: Feature metric for ``nearest``: ``"l2"`` or ``"cosine"``.
        index_kind: FAISS index over features: ``"flat"`` (exact, default), ``"auto"``,
            ``"hnsw"``, ``"ivf"``.
        index_config: Index tuning.
        seed: Seed of the memory's generator.

    Raises:
        ValueError: On a non-positive capacity, an unknown policy, metric or index kind.
    """

    def __init__(
        self,
        capacity: int,
        policy: str = "reservoir",
        *,
        feature_dim: int | None = None,
        metric: Metric = "l2",
        index_kind: str = "flat",
        index_config: IndexConfig | None = None,
        seed: int = 0,
    ) -> None:
        self._capacity = check_positive_int(capacity, "capacity")
        self._policy_name = policy
        self._policy = get_policy(policy)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self._seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        self._feature_dim = (
            None if feature_dim is None else check_positive_int(feature_dim, "feature_dim")
        )
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
        if index_kind != AUTO:
            get_index_kind(index_kind)
        self._metric: Metric = metric
        self._index_kind = index_kind
        self._index_config = index_config if index_config is not None else IndexConfig()
        self._features = self._new_feature_index()
        self._x: torch.Tensor | None = None
        self._y = torch.empty(0, dtype=torch.int64)
        self._task = torch.empty(0, dtype=torch.int64)
        self._size = 0
        self._seen = 0
        self._seen_per_class: dict[int, int] = {}
        self._seen_per_task: dict[int, int] = {}
        # Per-slot draw probabilities of the last task weighting, valid while the stored
        # tasks are unchanged: a replaying learner draws with the same weights every step.
        self._probability_cache: _ProbabilityCache | None = None

    @property
    def capacity(self) -> int:
        """Most samples held."""
        return self._capacity

    @property
    def policy(self) -> str:
        """Name of the replacement policy."""
        return self._policy_name

    @property
    def feature_dim(self) -> int | None:
        """Feature dimension, or ``None`` when samples carry no features."""
        return self._feature_dim

    @property
    def seen(self) -> int:
        """Samples offered through ``add_batch`` so far."""
        return self._seen

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        """Shape of one ``x``, fixed by the first batch (``None`` before it)."""
        return None if self._x is None else tuple(self._x.shape[1:])

    @property
    def features(self) -> VectorIndex | None:
        """The feature index, for inspection and search tuning; ``None`` without features."""
        return self._features

    @property
    def nbytes(self) -> int:
        """Bytes held: the sample buffers as allocated, plus the feature index.

        The buffers grow by half again as needed, to at most ``capacity`` rows.
        """
        buffers = sum(t.numel() * t.element_size() for t in (self._x, self._y, self._task)
                      if t is not None)
        return buffers + (self._features.nbytes if self._features is not None else 0)

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (
            f"EpisodicMemory(capacity={self._capacity}, policy={self._policy_name!r}, "
            f"size={self._size}, seen={self._seen})"
        )

    def task_counts(self) -> dict[int, int]:
        """Stored samples per task id."""
        values, counts = np.unique(self._task[: self._size].numpy(), return_counts=True)
        return dict(zip(values.tolist(), counts.tolist(), strict=True))

    def add_batch(
        self, x: Any, y: Any, task_id: Any, features: Any | None = None
    ) -> torch.Tensor:
        """Offer a batch of samples; the policy decides which are kept and where.

        Args:
            x: ``(b, *sample_shape)`` inputs (tensor or array).
            y: ``(b,)`` non-negative integer labels.
            task_id: One non-negative int for the whole batch, or ``(b,)`` ints.
            features: ``(b, feature_dim)`` finite features; required exactly when the memory
                was built with ``feature_dim``.

        Returns:
            ``(b,)`` int64 slot where each sample now lives, ``-1`` for samples not kept (or
            replaced by a later sample of the same batch).

        Raises:
            TypeError: On non-integer labels or task ids, or a dtype of ``x`` other than the
                first batch's.
            ValueError: On inconsistent batch sizes, a sample shape other than the first
                batch's, NaN or infinite values, or features missing or unexpected.
        """
        x_tensor = self._check_x(x)
        batch = x_tensor.shape[0]
        y_array = _int_vector(y, "y", batch)
        task_array = _int_vector(task_id, "task_id", batch)
        feature_matrix = self._check_features(features, batch)
        if batch == 0:
            return torch.empty(0, dtype=torch.int64)
        uniforms = torch.rand((batch, 2), generator=self._generator, dtype=torch.float64)
        slots = self._policy(
            PolicyInput(
                capacity=self._capacity,
                stored_y=self._y[: self._size].numpy(),
                stored_task=self._task[: self._size].numpy(),
                seen=self._seen,
                seen_per_class=self._seen_per_class,
                seen_per_task=self._seen_per_task,
                incoming_y=y_array,
                incoming_task=task_array,
                uniforms=uniforms.numpy(),
            )
        )
        winners, target = self._resolve_slots(np.asarray(slots), batch)
        new_size = max(self._size, int(target.max()) + 1 if target.size else 0)
        self._ensure_rows(new_size, x_tensor)
        assert self._x is not None  # allocated by _ensure_rows
        index = torch.from_numpy(target)
        source = torch.from_numpy(winners)
        self._x[index] = x_tensor[source]
        self._y[index] = torch.from_numpy(y_array[winners])
        self._task[index] = torch.from_numpy(task_array[winners])
        if self._features is not None and feature_matrix is not None:
            old = target < self._size
            if old.any():
                self._features.update(target[old], feature_matrix[winners[old]])
            if (~old).any():
                self._features.add(target[~old], feature_matrix[winners[~old]])
        self._size = new_size
        self._seen += batch
        _count_into(self._seen_per_class, y_array)
        _count_into(self._seen_per_task, task_array)
        reported = np.full(batch, -1, np.int64)
        reported[winners] = target
        return torch.from_numpy(reported)

    def sample(
        self,
        n: int,
        task_weights: Mapping[int, float] | None = None,
        generator: torch.Generator | None = None,
    ) -> Samples:
        """Draw up to ``n`` distinct stored samples (without replacement).

        Without ``task_weights`` every stored sample is equally likely, and ``n`` at or above
        ``len(self)`` returns every sample, in random order. With ``task_weights`` samples are
        drawn with probability ``weight[task] / count[task]``, so while ``n`` is small against
        each task's count a task's expected share is ``weight / sum(weights)``; tasks missing
        from the mapping are never drawn, and at most the samples of weighted tasks return.

        Args:
            n: Positive number of samples.
            task_weights: Non-negative weight per stored task id (positive sum), or ``None``.
            generator: Source of randomness; the memory's own seeded generator by default.

        Returns:
            ``Samples`` with ``min(n, available)`` rows; empty on an empty memory.

        Raises:
            ValueError: If ``n <= 0``, a weight is negative, NaN or infinite, or all are zero.
            UnknownIdError: If a weighted task has no stored samples.
        """
        n = check_positive_int(n, "n")
        generator = self._generator if generator is None else generator
        if self._size == 0:
            return self._take(torch.empty(0, dtype=torch.int64))
        if task_weights is None:
            chosen = torch.randperm(self._size, generator=generator)[:n]
            return self._take(chosen)
        probabilities = self._cached_probabilities(task_weights)
        available = int((probabilities > 0).sum())
        chosen = torch.multinomial(
            probabilities, min(n, available), replacement=False, generator=generator
        )
        return self._take(chosen)

    def stored(self) -> Samples:
        """Every stored sample in slot order: row ``i`` is slot ``i`` (copies, not views)."""
        return self._take(torch.arange(self._size))

    def update_features(self, slots: Any, features: Any) -> None:
        """Replace the features of stored samples, e.g. after the feature extractor changed.

        Args:
            slots: ``(m,)`` distinct slots in ``[0, len(self))``.
            features: ``(m, feature_dim)`` finite features.

        Raises:
            RuntimeError: If the memory stores no features.
            UnknownIdError: If a slot holds no sample.
            ValueError: On a repeated slot, a wrong shape, or a NaN or infinite value.
        """
        if self._features is None:
            raise RuntimeError(
                "this memory stores no features; build it with feature_dim=... to update them"
            )
        self._features.update(slots, features)

    def nearest(self, features: Any, k: int) -> Neighbours:
        """The ``k`` stored samples whose features are closest to each query, best first.

        ``k`` above ``len(self)`` returns every sample; an empty memory returns ``k' = 0``.

        Args:
            features: ``(q, feature_dim)`` queries, or one ``(feature_dim,)`` query.
            k: Positive number of neighbours.

        Returns:
            ``Neighbours`` with ``k' = min(k, len(self))`` per query.

        Raises:
            RuntimeError: If the memory stores no features.
            TypeError: If ``k`` is not an int.
            ValueError: If ``k <= 0``, or on a wrong shape, NaN or infinite value.
        """
        if self._features is None:
            raise RuntimeError(
                "this memory stores no features; build it with feature_dim=... to use nearest()"
            )
        similarities, slots = self._features.search(features, k)
        index = torch.from_numpy(slots)
        if self._x is None:
            x = torch.empty((*slots.shape, 0))
        else:
            x = self._x[index.reshape(-1)].reshape(*slots.shape, *self._x.shape[1:])
        return Neighbours(
            torch.from_numpy(similarities), index, x, self._y[index], self._task[index]
        )

    def remove_task(self, task_id: int) -> int:
        """Drop every stored sample of a task; the others keep their order (slots shift down).

        Returns:
            How many samples were removed.

        Raises:
            UnknownIdError: If no stored sample has this task id.
        """
        if isinstance(task_id, bool) or not isinstance(task_id, int | np.integer):
            raise TypeError(f"task_id must be an int, got {task_id!r}")
        keep = self._task[: self._size] != task_id
        removed = self._size - int(keep.sum())
        if removed == 0:
            raise UnknownIdError(
                f"task_id {task_id} has no samples in this memory; stored tasks are "
                f"{sorted(self.task_counts())}"
            )
        assert self._x is not None  # a stored sample implies allocated buffers
        kept = torch.nonzero(keep).reshape(-1)
        features = None
        if self._features is not None:
            features = self._features.get_vectors(kept.numpy())
        self._x = self._x[kept]
        self._y = self._y[kept]
        self._task = self._task[kept]
        self._size = int(kept.numel())
        self._seen_per_task.pop(int(task_id), None)
        self._features = self._new_feature_index()
        if self._features is not None and features is not None and self._size:
            self._features.add(np.arange(self._size), features)
        return removed

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Save atomically to ``directory`` (see ``memory.persistence``).

        Raises:
            FileExistsError: If ``directory`` exists and is not a saved memory.
        """
        size = self._size
        samples = {
            # clone(): saving a view would write the whole buffer, growth slack included.
            "x": (self._x[:size].clone() if self._x is not None else torch.empty(0)),
            "y": self._y[:size].clone(),
            "task_id": self._task[:size].clone(),
            "generator_state": self._generator.get_state(),
        }

        def write_samples(path: Path) -> None:
            torch.save(samples, path)

        writers: dict[str, Writer] = {_SAMPLES: write_samples}
        index_info = None
        if self._features is not None:
            files, index_info = index_state_files(self._features.state(), _FEATURES_PREFIX)
            writers.update(files)
        info = {
            "capacity": self._capacity,
            "policy": self._policy_name,
            "seed": self._seed,
            "feature_dim": self._feature_dim,
            "dim": self._feature_dim,
            "metric": self._metric,
            "index_kind": self._index_kind,
            "index_config": asdict(self._index_config),
            "counts": {"size": size, "seen": self._seen},
            "seen_per_class": {str(k): v for k, v in self._seen_per_class.items()},
            "seen_per_task": {str(k): v for k, v in self._seen_per_task.items()},
            "sample_shape": None if self._x is None else list(self._x.shape[1:]),
            "x_dtype": None if self._x is None else str(self._x.dtype),
            "features": index_info,
        }
        save_directory(directory, MEMORY_TYPE, info, writers)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> EpisodicMemory:
        """Load a memory saved by ``save``, checking the manifest and every checksum.

        The policy must be registered under its saved name before loading.

        Raises:
            FileNotFoundError: If ``directory`` does not exist.
            MemoryFormatError: If it is not an episodic memory, or is corrupt or inconsistent.
        """
        manifest = read_manifest(directory, MEMORY_TYPE)
        require_files(manifest, [_SAMPLES])
        counts = info_field(manifest, "counts", dict)
        feature_dim = info_field(manifest, "feature_dim", (int, type(None)))
        raw_config = info_field(manifest, "index_config", dict)
        try:
            memory = cls(
                info_field(manifest, "capacity", int),
                info_field(manifest, "policy", str),
                feature_dim=feature_dim,
                metric=cast(Metric, info_field(manifest, "metric", str)),
                index_kind=info_field(manifest, "index_kind", str),
                index_config=IndexConfig(**raw_config),
                seed=info_field(manifest, "seed", int),
            )
            samples = torch.load(
                manifest.directory / _SAMPLES, map_location="cpu", weights_only=True
            )
            seen_per_class = _int_dict(info_field(manifest, "seen_per_class", dict))
            seen_per_task = _int_dict(info_field(manifest, "seen_per_task", dict))
        except MemoryFormatError:
            raise
        except (
            TypeError, ValueError, RuntimeError, OSError, EOFError, pickle.UnpicklingError
        ) as error:
            raise MemoryFormatError(f"{manifest.directory}: {error}") from error
        size, seen = counts.get("size"), counts.get("seen")
        if not _valid_samples(samples, size, manifest.info) or not isinstance(seen, int):
            raise MemoryFormatError(
                f"{manifest.directory}: {_SAMPLES} disagrees with the manifest (size {size}, "
                f"sample shape {manifest.info.get('sample_shape')}, "
                f"dtype {manifest.info.get('x_dtype')})"
            )
        if size > memory.capacity or seen < size:
            raise MemoryFormatError(
                f"{manifest.directory}: size {size} exceeds capacity {memory.capacity} or the "
                f"{seen} samples seen"
            )
        if feature_dim is not None:
            index_info = info_field(manifest, "features", dict)
            try:
                features = VectorIndex.from_state(
                    read_index_state(manifest, _FEATURES_PREFIX, index_info),
                    feature_dim, memory._metric, memory._index_kind, memory._index_config,
                )
            except MemoryFormatError:
                raise
            except (TypeError, ValueError) as error:
                raise MemoryFormatError(f"{manifest.directory}: {error}") from error
            if not np.array_equal(np.sort(features.ids()), np.arange(size)):
                raise MemoryFormatError(
                    f"{manifest.directory}: the feature index holds {len(features)} slots; "
                    f"expected one per stored sample, slots 0..{size - 1}"
                )
            memory._features = features
        if manifest.info.get("x_dtype") is not None:
            memory._x = samples["x"]
            memory._y = samples["y"]
            memory._task = samples["task_id"]
        memory._size = size
        memory._seen = seen
        memory._seen_per_class = seen_per_class
        memory._seen_per_task = seen_per_task
        memory._generator.set_state(samples["generator_state"])
        return memory

    def _new_feature_index(self) -> VectorIndex | None:
        if self._feature_dim is None:
            return None
        return VectorIndex(self._feature_dim, self._metric, self._index_kind, self._index_config)

    def _check_x(self, x: Any) -> torch.Tensor:
        tensor = x if isinstance(x, torch.Tensor) else torch.as_tensor(to_numpy(x, "x"))
        tensor = tensor.detach().cpu()
        if tensor.ndim == 0:
            raise ValueError("x must have a batch dimension, got a scalar")
        if self._x is not None:
            if tuple(tensor.shape[1:]) != tuple(self._x.shape[1:]):
                raise ValueError(
                    f"x has sample shape {tuple(tensor.shape[1:])}; this memory stores samples "
                    f"of shape {tuple(self._x.shape[1:])} (fixed by the first batch)"
                )
            if tensor.dtype != self._x.dtype:
                raise TypeError(
                    f"x has dtype {tensor.dtype}; this memory stores {self._x.dtype} "
                    "(fixed by the first batch); convert it first"
                )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError("x contains NaN or infinite values; every value must be finite")
        return tensor

    def _check_features(self, features: Any | None, batch: int) -> np.ndarray | None:
        if self._feature_dim is None:
            if features is not None:
                raise ValueError(
                    "features given, but this memory stores none; build it with feature_dim"
                )
            return None
        if features is None:
            raise ValueError(
                f"this memory indexes features of dimension {self._feature_dim}; pass "
                "features= with every batch"
            )
        matrix = as_vectors(features, self._feature_dim, "features")
        if matrix.shape[0] != batch:
            raise ValueError(f"got {matrix.shape[0]} feature rows for a batch of {batch}")
        if self._metric == "cosine":
            # Refuse zero rows now: the index would refuse them after the samples were written.
            normalise_rows(matrix, "features")
        return matrix

    def _resolve_slots(self, slots: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Check a policy's slots; return the incoming rows that end up stored, and where."""
        if slots.shape != (batch,) or not np.issubdtype(slots.dtype, np.integer):
            raise ValueError(
                f"policy {self._policy_name!r} returned {slots.dtype} slots of shape "
                f"{slots.shape}; expected ({batch},) integers"
            )
        if slots.size and (slots.min() < -1 or slots.max() >= self._capacity):
            raise ValueError(
                f"policy {self._policy_name!r} returned a slot outside [-1, {self._capacity})"
            )
        appended = slots[slots >= self._size]
        _, first = np.unique(appended, return_index=True)
        if not np.array_equal(appended[np.sort(first)],
                              np.arange(self._size, self._size + first.size)):
            raise ValueError(
                f"policy {self._policy_name!r} appended out of order; new slots must run "
                f"{self._size}, {self._size + 1}, ... in batch order"
            )
        stored = np.flatnonzero(slots >= 0)
        # Last write wins: walk backwards and keep each slot's first (= latest) sample.
        backwards = stored[::-1]
        _, latest = np.unique(slots[backwards], return_index=True)
        winners = np.sort(backwards[latest])
        return winners, slots[winners].astype(np.int64)

    def _ensure_rows(self, rows: int, like: torch.Tensor) -> None:
        if self._x is None:
            self._x = torch.empty((0, *like.shape[1:]), dtype=like.dtype)
        allocated = self._x.shape[0]
        if rows <= allocated:
            return
        # Grow by half again (capped at capacity): amortised O(1) copies per sample.
        new = min(self._capacity, max(rows, int(allocated * 1.5), 16))
        self._x = _grow(self._x, new)
        self._y = _grow(self._y, new)
        self._task = _grow(self._task, new)

    def _cached_probabilities(self, task_weights: Mapping[int, float]) -> torch.Tensor:
        if not isinstance(task_weights, Mapping):
            raise TypeError(f"task_weights must map task id to weight, got {task_weights!r}")
        # The stored task ids themselves are part of the key (a few hundred int64s compare in
        # microseconds), so no mutation of the buffers can leave a stale entry behind.
        stored = self._task[: self._size]
        key = tuple(task_weights.items())
        # getattr: memories pickled before the cache existed lack the attribute.
        cached = getattr(self, "_probability_cache", None)
        if cached is not None and cached[0] == key and torch.equal(cached[1][1], stored):
            return cached[1][0]
        probabilities = self._sample_probabilities(task_weights)
        self._probability_cache = (key, (probabilities, stored.clone()))
        return probabilities

    def _sample_probabilities(self, task_weights: Mapping[int, float]) -> torch.Tensor:
        counts = self.task_counts()
        weights = torch.zeros(max(counts) + 1, dtype=torch.float64)
        for task, weight in task_weights.items():
            if task not in counts:
                raise UnknownIdError(
                    f"task_weights names task {task!r}, which has no stored samples; "
                    f"stored tasks are {sorted(counts)}"
                )
            if not isinstance(weight, int | float) or not np.isfinite(weight) or weight < 0:
                raise ValueError(
                    f"weight of task {task} is {weight!r}; weights must be finite and >= 0"
                )
            weights[task] = weight / counts[task]
        if not (weights > 0).any():
            raise ValueError(f"task_weights {dict(task_weights)} are all zero; give one > 0")
        return weights[self._task[: self._size]]

    def _take(self, chosen: torch.Tensor) -> Samples:
        if self._x is None:
            empty = torch.empty(0, dtype=torch.int64)
            return Samples(torch.empty(0), empty, empty.clone(), empty.clone())
        return Samples(self._x[chosen], self._y[chosen], self._task[chosen], chosen.clone())


def _grow(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    grown = torch.empty((rows, *tensor.shape[1:]), dtype=tensor.dtype)
    grown[: tensor.shape[0]] = tensor
    return grown


def _count_into(counts: dict[int, int], keys: np.ndarray) -> None:
    values, numbers = np.unique(keys, return_counts=True)
    for value, number in zip(values.tolist(), numbers.tolist(), strict=True):
        counts[value] = counts.get(value, 0) + number


def _int_dict(raw: Mapping[str, Any]) -> dict[int, int]:
    result = {int(key): value for key, value in raw.items()}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in result.values()):
        raise ValueError(f"seen counts {dict(raw)} must be integers")
    return result


def _valid_samples(samples: Any, size: Any, info: Mapping[str, Any]) -> bool:
    if not isinstance(samples, dict) or not isinstance(size, int) or size < 0:
        return False
    if set(samples) != {"x", "y", "task_id", "generator_state"}:
        return False
    x, y, task = samples["x"], samples["y"], samples["task_id"]
    if not all(isinstance(t, torch.Tensor) for t in (x, y, task, samples["generator_state"])):
        return False
    if y.shape != (size,) or task.shape != (size,) or y.dtype != torch.int64 or (
        task.dtype != torch.int64
    ):
        return False
    shape, dtype = info.get("sample_shape"), info.get("x_dtype")
    if dtype is None:
        return size == 0
    return isinstance(shape, list) and list(x.shape) == [size, *shape] and str(x.dtype) == dtype
