"""Episodic sample memory: a bounded buffer of ``(x, y, task_id)`` samples for replay.

Optionally each sample carries a feature vector, indexed with FAISS so that ``nearest`` finds
the stored samples closest to a query in feature space. Optionally the samples themselves are
kept as FAISS codes (``codec="SQ4"``, ``"PQ/4x4"``, see ``memory.codec``): fewer bytes each,
decoded when drawn, searchable by ``nearest_samples`` without decoding; and the memory can be
bounded in bytes (``byte_budget``) rather than in samples.
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
from memory.codec import SampleCodec
from memory.index import (
    AUTO,
    METRICS,
    IndexConfig,
    Metric,
    VectorIndex,
    exact_search,
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
_CODEC = "codec.faiss"
_FEATURES_PREFIX = "features_"


class ByteBudgetError(ValueError):
    """A byte budget too small for a single sample (with the codec's own bytes)."""


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
        capacity: Most samples held; ``None`` when ``byte_budget`` bounds the memory instead.
        policy: Name of a registered replacement policy.
        feature_dim: Dimension of per-sample features; ``None`` stores none, and then
            ``nearest`` is unavailable. When set, every batch must bring features.
        metric: Feature metric for ``nearest``: ``"l2"`` or ``"cosine"``.
        index_kind: FAISS index over features: ``"flat"`` (exact, default), ``"auto"``,
            ``"hnsw"``, ``"ivf"``.
        index_config: Index tuning.
        seed: Seed of the memory's generator.
        codec: A FAISS factory string (``"SQ8"``, ``"SQ4"``, ``"PQ{M}x{nbits}"``, ...) to keep
            samples as codes of ``SampleCodec.code_size`` bytes; ``None`` keeps them as given.
            The codec trains on the first batch; a later batch that reconstructs much worse
            than the training data did retrains it on the decoded stored samples plus that
            batch, and the stored samples are re-encoded (``SampleCodec.needs_retraining``).
        fallback_codec: A second factory string (``"SQ4"``, say) for a ``codec`` that is costly
            to retrain, such as a product quantiser: the first time the codec needs retraining,
            the memory moves to this codec instead (trained the same way, the stored samples
            re-encoded in it, a byte budget's capacity recomputed for it) if the stored samples
            fit that capacity; otherwise, and at every later need, the codec retrains.
            ``None`` always retrains.
        byte_budget: Bound the memory in bytes instead of samples: the capacity becomes as
            many samples as fit, after the codec's own bytes, at ``code_size`` (or the first
            batch's bytes per sample) plus ``extra_bytes_per_sample``. It is fixed when the
            first batch arrives.
        extra_bytes_per_sample: Bytes the caller keeps beside each stored sample (its logits,
            say), charged to ``byte_budget``.

    Raises:
        ValueError: On a non-positive capacity, an unknown policy, metric or index kind, or
            neither or both of ``capacity`` and ``byte_budget``.
        memory.codec.CodecError: On a codec string FAISS refuses.
    """

    def __init__(
        self,
        capacity: int | None = None,
        policy: str = "reservoir",
        *,
        feature_dim: int | None = None,
        metric: Metric = "l2",
        index_kind: str = "flat",
        index_config: IndexConfig | None = None,
        seed: int = 0,
        codec: str | None = None,
        fallback_codec: str | None = None,
        byte_budget: int | None = None,
        extra_bytes_per_sample: int = 0,
    ) -> None:
        if fallback_codec is not None and codec is None:
            raise ValueError(
                f"fallback_codec {fallback_codec!r} needs a codec to fall back from; "
                "give codec too, or drop fallback_codec"
            )
        if (capacity is None) == (byte_budget is None):
            raise ValueError(
                f"give exactly one of capacity (samples) and byte_budget (bytes); got "
                f"capacity={capacity!r}, byte_budget={byte_budget!r}"
            )
        self._capacity = None if capacity is None else check_positive_int(capacity, "capacity")
        self._byte_budget = (
            None if byte_budget is None else check_positive_int(byte_budget, "byte_budget")
        )
        if isinstance(extra_bytes_per_sample, bool) or not isinstance(
            extra_bytes_per_sample, int
        ) or extra_bytes_per_sample < 0:
            raise ValueError(
                f"extra_bytes_per_sample must be an int >= 0, got {extra_bytes_per_sample!r}"
            )
        self._extra_bytes = extra_bytes_per_sample
        self._codec_spec = codec
        # Built at the first batch, which gives the dimension; a caller that knows the
        # dimension sooner checks the string with ``SampleCodec(codec, dim)``.
        self._codec: SampleCodec | None = None
        self._sample_shape: tuple[int, ...] | None = None
        self._reconstruction_errors: list[float] = []
        self._retrains = 0
        self._fallback_spec = fallback_codec
        # Which offered batch moved the memory to its fallback codec, and the seconds the
        # codec it replaced had spent (throughput figures count both codecs).
        self._fallback_batch: int | None = None
        self._retired_codec_seconds = 0.0
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
        """Most samples held.

        Raises:
            RuntimeError: For a byte-budgeted memory before its first batch, which fixes it.
        """
        if self._capacity is None:
            raise RuntimeError(
                "this memory is bounded in bytes; its capacity in samples is fixed by the "
                "first batch (add_batch) and unknown before it"
            )
        return self._capacity

    @property
    def byte_budget(self) -> int | None:
        """The bound in bytes, or ``None`` for a memory bounded in samples."""
        return self._byte_budget

    @property
    def codec(self) -> SampleCodec | None:
        """The codec samples are kept in (``None``: kept as given, or not trained yet)."""
        return self._codec

    @property
    def bytes_per_sample(self) -> int | None:
        """Bytes one stored input occupies (its code, or its tensor); ``None`` before data."""
        if self._x is None:
            return None
        return int(self._x[0].numel() * self._x.element_size())

    @property
    def reconstruction_errors(self) -> list[float]:
        """Relative reconstruction error of every batch offered to a coded memory.

        In order, each measured (``SampleCodec.relative_error``) with the codec the batch was
        stored with, after any retraining it caused.
        """
        return list(self._reconstruction_errors)

    @property
    def retrains(self) -> int:
        """Times the codec was retrained after its first training."""
        return self._retrains

    @property
    def fallback_batch(self) -> int | None:
        """Which offered batch (0-based) moved the memory to its fallback codec, if one did."""
        return getattr(self, "_fallback_batch", None)

    @property
    def codec_seconds(self) -> float:
        """Seconds spent training, encoding and decoding, in every codec this memory used."""
        current = self._codec.seconds if self._codec is not None else 0.0
        return getattr(self, "_retired_codec_seconds", 0.0) + current

    def nbytes_by_kind(self) -> dict[str, int]:
        """Bytes of what is stored, by kind, as a memory budget counts them.

        ``samples``: the stored inputs at the dtype they are kept in (codes, or the tensors'
        own dtype); ``index``: the codec's codebook and the feature index. Labels and task ids
        (one integer each per sample) are not counted, as in the usual budget in samples.
        """
        per_sample = self.bytes_per_sample or 0
        codebook = self._codec.codebook_bytes if self._codec is not None else 0
        features = self._features.nbytes if self._features is not None else 0
        return {"samples": self._size * per_sample, "index": codebook + features}

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
        return self._sample_shape

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
        codebook = self._codec.codebook_bytes if self._codec is not None else 0
        return buffers + codebook + (self._features.nbytes if self._features is not None else 0)

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        coded = "" if self._codec_spec is None else f", codec={self._codec_spec!r}"
        return (
            f"EpisodicMemory(capacity={self._capacity}, policy={self._policy_name!r}, "
            f"size={self._size}, seen={self._seen}{coded})"
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
            ByteBudgetError: If a byte-budgeted memory's first batch shows that not one
                sample fits (the codec's own bytes are known only once it is trained).
        """
        x_tensor = self._check_x(x)
        batch = x_tensor.shape[0]
        y_array = _int_vector(y, "y", batch)
        task_array = _int_vector(task_id, "task_id", batch)
        feature_matrix = self._check_features(features, batch)
        if batch == 0:
            return torch.empty(0, dtype=torch.int64)
        codes = self._prepare_codec(x_tensor) if self._codec_spec is not None else None
        self._resolve_capacity(x_tensor)
        uniforms = torch.rand((batch, 2), generator=self._generator, dtype=torch.float64)
        slots = self._policy(
            PolicyInput(
                capacity=self.capacity,
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
        stored = x_tensor if codes is None else codes
        self._ensure_rows(new_size, stored)
        assert self._x is not None  # allocated by _ensure_rows
        index = torch.from_numpy(target)
        source = torch.from_numpy(winners)
        self._x[index] = stored[source]
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

    def nearest_samples(self, x: Any, k: int) -> tuple[torch.Tensor, Samples]:
        """The ``k`` stored samples nearest each query in input space (squared L2).

        A coded memory searches its codes with FAISS's asymmetric distance (queries stay
        float, codes are not decoded); a plain one searches its inputs exactly.

        Args:
            x: ``(n, *sample_shape)`` queries.
            k: Neighbours per query (at most the stored count).

        Returns:
            ``(distances, samples)``: distances ``(n, k')`` and the neighbours as ``Samples``
            with ``n * k'`` rows, query by query.

        Raises:
            ValueError: If the memory is empty, or the queries' shape is not the samples'.
        """
        k = check_positive_int(k, "k")
        if self._size == 0 or self._sample_shape is None:
            raise ValueError("the memory is empty; add samples before searching it")
        queries = self._check_x(x).reshape(len(x), -1).float().numpy()
        if self._codec is not None:
            assert self._x is not None
            distances, rows = self._codec.search(self._x[: self._size].numpy(), queries, k)
        else:
            stored = self._take(torch.arange(self._size)).x.reshape(self._size, -1)
            scores, rows = exact_search(
                np.ascontiguousarray(stored.float().numpy()), queries, min(k, self._size), "l2"
            )
            distances = -scores
        return torch.from_numpy(distances), self._take(torch.from_numpy(rows.reshape(-1)))

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
        codec_info = None
        if self._codec is not None:
            codec_bytes = self._codec.to_bytes()

            def write_codec(path: Path) -> None:
                path.write_bytes(codec_bytes.tobytes())

            writers[_CODEC] = write_codec
            codec_info = {
                "spec": self._codec.spec,
                "dim": self._codec.dim,
                "trained_error": self._codec.trained_error,
                "retrains": self._retrains,
                "reconstruction_errors": self._reconstruction_errors,
                "fallback_batch": self.fallback_batch,
                "retired_seconds": getattr(self, "_retired_codec_seconds", 0.0),
            }
        index_info = None
        if self._features is not None:
            files, index_info = index_state_files(self._features.state(), _FEATURES_PREFIX)
            writers.update(files)
        info = {
            "capacity": self._capacity,
            "byte_budget": self._byte_budget,
            "extra_bytes_per_sample": self._extra_bytes,
            "codec_spec": self._codec_spec,
            "fallback_codec": getattr(self, "_fallback_spec", None),
            "codec": codec_info,
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
            "sample_shape": None if self._sample_shape is None else list(self._sample_shape),
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
        # Memories saved before byte budgets and codecs lack these keys.
        codec_spec = manifest.info.get("codec_spec")
        byte_budget = manifest.info.get("byte_budget")
        capacity = cast(int | None, manifest.info.get("capacity"))
        try:
            memory = cls(
                capacity if byte_budget is None else None,
                info_field(manifest, "policy", str),
                codec=codec_spec,
                fallback_codec=manifest.info.get("fallback_codec"),
                byte_budget=byte_budget,
                extra_bytes_per_sample=manifest.info.get("extra_bytes_per_sample", 0),
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
        if (memory._capacity is not None and size > memory._capacity) or seen < size:
            raise MemoryFormatError(
                f"{manifest.directory}: size {size} exceeds capacity {memory._capacity} or the "
                f"{seen} samples seen"
            )
        memory._capacity = capacity
        if codec_spec is not None and manifest.info.get("x_dtype") is not None:
            memory._codec = _load_codec(manifest)
            codec_info = info_field(manifest, "codec", dict)
            memory._retrains = int(codec_info.get("retrains", 0))
            memory._reconstruction_errors = [
                float(e) for e in codec_info.get("reconstruction_errors", [])
            ]
            memory._fallback_batch = codec_info.get("fallback_batch")
            memory._retired_codec_seconds = float(codec_info.get("retired_seconds", 0.0))
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
        shape = manifest.info.get("sample_shape")
        memory._sample_shape = None if shape is None else tuple(shape)
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
        if self._codec_spec is not None and not tensor.is_floating_point():
            raise TypeError(
                f"x has dtype {tensor.dtype}; a coded memory encodes floating-point samples"
            )
        if self._sample_shape is not None:
            if tuple(tensor.shape[1:]) != self._sample_shape:
                raise ValueError(
                    f"x has sample shape {tuple(tensor.shape[1:])}; this memory stores samples "
                    f"of shape {self._sample_shape} (fixed by the first batch)"
                )
            if self._x is not None and self._codec is None and tensor.dtype != self._x.dtype:
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
        if slots.size and (slots.min() < -1 or slots.max() >= self.capacity):
            raise ValueError(
                f"policy {self._policy_name!r} returned a slot outside [-1, {self.capacity})"
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
        new = min(self.capacity, max(rows, int(allocated * 1.5), 16))
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
        x = self._x[chosen]
        if self._codec is not None:
            assert self._sample_shape is not None
            decoded = self._codec.decode(x.numpy())
            x = torch.from_numpy(decoded).reshape(len(chosen), *self._sample_shape)
        return Samples(x, self._y[chosen], self._task[chosen], chosen.clone())

    # --- codes and byte budgets ---------------------------------------------------------

    def _prepare_codec(self, x: torch.Tensor) -> torch.Tensor:
        """The batch as codes; trains, retrains or replaces the codec first where it must.

        The first batch trains the codec. A later batch that reconstructs too badly
        (``SampleCodec.needs_retraining``) moves the memory to its fallback codec, or
        retrains the codec (see the class's ``fallback_codec``).
        """
        rows = np.ascontiguousarray(x.reshape(len(x), -1).float().numpy())
        if self._codec is None:
            assert self._codec_spec is not None
            codec = SampleCodec(self._codec_spec, rows.shape[1])
            self._reconstruction_errors.append(codec.train(rows))
            self._codec = codec
            self._sample_shape = tuple(x.shape[1:])
            return self._encode(rows)
        # The error check's codes are the batch's codes unless the codec changes.
        codes, error = self._codec.encode_measured(rows)
        if self._codec.needs_retraining(error):
            stored = self._stored_rows()
            moved = self._fall_back(rows, stored)
            error = self._retrain(rows, stored) if moved is None else moved
            codes = self._codec.encode(rows)
        self._reconstruction_errors.append(error)
        return torch.from_numpy(codes)

    def _stored_rows(self) -> np.ndarray:
        """The stored samples, decoded, as float32 rows."""
        return self._take(torch.arange(self._size)).x.reshape(self._size, -1).numpy()

    def _retrain(self, rows: np.ndarray, stored: np.ndarray) -> float:
        """Retrain on the decoded ``stored`` samples plus ``rows``; re-encode the stored ones.

        Returns:
            The relative error of ``rows`` under the retrained codec.
        """
        assert self._codec is not None
        error = self._codec.train(np.concatenate([stored, rows]), reference=rows)
        if self._size:
            assert self._x is not None
            self._x[: self._size] = torch.from_numpy(self._codec.encode(stored))
        self._retrains += 1
        return error

    def _fall_back(self, rows: np.ndarray, stored: np.ndarray) -> float | None:
        """Move to the fallback codec, trained as a retraining would be, if what is stored fits.

        The stored samples are re-encoded in it and a byte budget's capacity is recomputed.
        The fallback is offered once: whether or not it is taken, later needs retrain.

        Returns:
            The relative error of ``rows`` under the fallback, or ``None`` when the memory
            has no fallback or its stored samples exceed the fallback's capacity.
        """
        spec = getattr(self, "_fallback_spec", None)
        if spec is None:
            return None
        self._fallback_spec = None
        assert self._codec is not None
        fallback = SampleCodec(spec, rows.shape[1])
        error = fallback.train(np.concatenate([stored, rows]), reference=rows)
        capacity = (
            self.capacity if self._byte_budget is None
            else self._byte_capacity(fallback.code_size, fallback.codebook_bytes)
        )
        if capacity < self._size:
            self._retired_codec_seconds += fallback.seconds
            return None
        self._retired_codec_seconds += self._codec.seconds
        self._codec, self._codec_spec, self._capacity = fallback, spec, capacity
        self._x = torch.from_numpy(fallback.encode(stored))
        self._y = self._y[: self._size].clone()
        self._task = self._task[: self._size].clone()
        self._fallback_batch = len(self._reconstruction_errors)
        return error

    def _encode(self, rows: np.ndarray) -> torch.Tensor:
        assert self._codec is not None
        return torch.from_numpy(self._codec.encode(rows))

    def _resolve_capacity(self, x: torch.Tensor) -> None:
        """Fix the sample shape and, for a byte budget, the capacity, at the first batch."""
        if self._sample_shape is None:
            self._sample_shape = tuple(x.shape[1:])
        if self._capacity is not None:
            return
        assert self._byte_budget is not None
        if self._codec is not None:
            per_sample, fixed = self._codec.code_size, self._codec.codebook_bytes
        else:
            per_sample, fixed = int(x[0].numel() * x.element_size()), 0
        capacity = self._byte_capacity(per_sample, fixed)
        per_sample += self._extra_bytes
        if capacity < 1:
            raise ByteBudgetError(
                f"byte_budget {self._byte_budget} holds no sample: each costs {per_sample} "
                f"bytes and the codec {fixed}; raise it to at least {fixed + per_sample}"
            )
        self._capacity = capacity

    def _byte_capacity(self, bytes_per_code: int, codebook_bytes: int) -> int:
        """Samples a byte budget holds at ``bytes_per_code`` each, after the codebook."""
        assert self._byte_budget is not None
        return (self._byte_budget - codebook_bytes) // (bytes_per_code + self._extra_bytes)


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


def _load_codec(manifest: Any) -> SampleCodec:
    require_files(manifest, [_CODEC])
    info = info_field(manifest, "codec", dict)
    try:
        data = np.frombuffer((manifest.directory / _CODEC).read_bytes(), dtype=np.uint8)
        return SampleCodec.from_bytes(info["spec"], info["dim"], data, info["trained_error"])
    except (KeyError, TypeError, ValueError, OSError) as error:
        raise MemoryFormatError(f"{manifest.directory}: unreadable codec: {error}") from error


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
    if not isinstance(shape, list):
        return False
    if info.get("codec_spec") is not None:
        # Codes: one uint8 row per sample.
        return x.dtype == torch.uint8 and x.ndim == 2 and x.shape[0] == size
    return list(x.shape) == [size, *shape] and str(x.dtype) == dtype
