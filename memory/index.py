"""Vectors under stable ids, searchable through a FAISS index that may change kind as it grows.

The layer under both memories. ``VectorIndex`` keeps the vectors themselves in numpy (the
source of truth) and a FAISS index over them (a derived, rebuildable cache):

- ids are the caller's, stable for the life of a vector, whatever index holds it; the FAISS
  index is labelled by *row*, and a dense table maps id to row;
- ``remove`` and ``update`` never edit the FAISS index in place (HNSW cannot remove): the old
  row becomes a tombstone that searches skip, through a FAISS ``IDSelector`` on approximate
  CPU indexes, or by asking for ``k + tombstones`` results and dropping the dead ones on exact
  and GPU indexes; the index is rebuilt from the live rows once tombstones pass
  ``max_dead_fraction`` of the rows (or 256, for the over-fetching kinds);
- kind ``"auto"`` is exact (``flat``) up to ``exact_until`` live vectors and approximate beyond
  (HNSW on CPU, IVF on GPU), rebuilt and trained on the spot when the threshold is crossed;
- when faiss sees a GPU (``faiss.get_num_gpus() > 0``) indexes of a GPU-capable kind live on it.

Similarities: ``cosine`` vectors are L2-normalised on the way in and searched by inner product,
so a similarity is the cosine (higher is closer). ``l2`` similarities are the *negative squared*
Euclidean distance, so for both metrics results are sorted best first, highest first.

Index kinds live in one registry (``register_index_kind``); registering a name twice is an error.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast, get_args

import faiss
import numpy as np
import numpy.typing as npt

from memory._checks import (
    MAX_ID,
    FloatMatrix,
    IdArray,
    UnknownIdError,
    as_ids,
    as_vectors,
    check_k,
    check_positive_int,
    raise_non_finite,
)
from memory.persistence import Manifest, MemoryFormatError, Writer, require_files

Metric = Literal["cosine", "l2"]
METRICS: tuple[str, ...] = get_args(Metric)
AUTO = "auto"
EXACT_KIND = "flat"

BoolArray = npt.NDArray[np.bool_]

# Tombstones an over-fetching search tolerates before the index is rebuilt without them.
_MAX_OVERFETCH = 256


@dataclass(frozen=True)
class IndexConfig:
    """Tuning of a ``VectorIndex``; the defaults suit embeddings of dimension 64 to 1024.

    Attributes:
        exact_until: With kind ``"auto"``, the index stays exact while it holds at most this many
            live vectors and becomes approximate above; it returns to exact only below half of
            it, so a memory hovering at the threshold does not rebuild back and forth.
        approximate_kind: The kind ``"auto"`` moves to; ``None`` picks ``"hnsw"`` on CPU and
            ``"ivf"`` on GPU (faiss has no GPU HNSW).
        hnsw_m: HNSW graph degree ``M``; memory per vector grows by about ``8 * M`` bytes.
        hnsw_ef_construction: HNSW ``efConstruction``: build effort, and graph quality.
        hnsw_ef_search: HNSW ``efSearch``: search effort (raised to ``k`` when ``k`` is larger).
        ivf_nlist: IVF list count; ``None`` trains with ``4 * sqrt(n)`` lists (at most ``n / 39``)
            and retrains as the index grows fourfold.
        ivf_nprobe: IVF lists visited per query.
        max_dead_fraction: Removed and updated vectors stay as skipped tombstones until they
            exceed this fraction of the rows; then the index is rebuilt from the live rows.
        use_gpu: Place GPU-capable kinds on GPU 0; ``None`` does so when faiss sees a GPU.
        blas_min_queries: Searches of at least this many queries compute exact distances with
            BLAS matrix products, below it with faiss's SIMD scan. faiss's own switch (its
            process-wide ``distance_compute_blas_threshold`` on ``queries * dim``, 128000 by
            default) keeps a batch of 256 queries of dimension 128 on the scan, 3 to 6 times
            slower; the switch is set for the duration of such a search, under a lock, and
            restored after. ``None`` leaves faiss's setting alone.
        serial_below_queries: Searches of fewer queries than this run on one OpenMP thread.
            For a single query faiss otherwise splits the database over threads with one BLAS
            call per block, measured 4 to 6 times slower than its serial SIMD scan on 2 cores.
            ``omp_set_num_threads`` applies to the calling thread only. ``None`` disables.
    """

    exact_until: int = 10_000
    approximate_kind: str | None = None
    hnsw_m: int = 32
    hnsw_ef_construction: int = 64
    hnsw_ef_search: int = 64
    ivf_nlist: int | None = None
    ivf_nprobe: int = 32
    max_dead_fraction: float = 0.25
    use_gpu: bool | None = None
    blas_min_queries: int | None = 16
    serial_below_queries: int | None = 2

    def __post_init__(self) -> None:
        for name in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe"):
            check_positive_int(getattr(self, name), name)
        if isinstance(self.exact_until, bool) or not isinstance(self.exact_until, int):
            raise TypeError(f"exact_until must be an int, got {self.exact_until!r}")
        if self.exact_until < 0:
            raise ValueError(f"exact_until must be >= 0, got {self.exact_until}")
        if self.ivf_nlist is not None:
            check_positive_int(self.ivf_nlist, "ivf_nlist")
        for name in ("blas_min_queries", "serial_below_queries"):
            if getattr(self, name) is not None:
                check_positive_int(getattr(self, name), name)
        if not 0.0 < self.max_dead_fraction < 1.0:
            raise ValueError(
                f"max_dead_fraction must lie in (0, 1), got {self.max_dead_fraction}"
            )


IndexBuilder = Callable[[int, Metric, int, IndexConfig], Any]
SearchParamsBuilder = Callable[[Any, IndexConfig, int, Any], Any]
SizeEstimator = Callable[[Any, int], int]


@dataclass(frozen=True)
class IndexKind:
    """One registered kind of FAISS index.

    Attributes:
        name: Registry name (``"flat"``, ``"hnsw"``, ``"ivf"``, ...).
        exact: Whether a search returns the exact nearest neighbours.
        needs_training: Whether the index is trained on the vectors before they are added.
        gpu: Whether ``faiss.index_cpu_to_gpu`` can move it to a GPU.
        build: ``(dim, metric, n_vectors, config) -> faiss.Index``, empty and untrained;
            ``n_vectors`` is how many vectors it is about to receive (sizes IVF lists).
        search_params: ``(index, config, k, selector) -> faiss.SearchParameters | None``;
            ``selector`` is a ``faiss.IDSelector`` of live rows, or ``None`` when all are live.
        nbytes: ``(index, dim) -> int``, the memory the index holds, estimated from its content.
    """

    name: str
    exact: bool
    needs_training: bool
    gpu: bool
    build: IndexBuilder
    search_params: SearchParamsBuilder
    nbytes: SizeEstimator


_INDEX_KINDS: dict[str, IndexKind] = {}


def register_index_kind(kind: IndexKind) -> IndexKind:
    """Add an index kind to the registry.

    Raises:
        ValueError: If the name is taken, or is ``"auto"``.
    """
    if kind.name == AUTO:
        raise ValueError(f"{AUTO!r} is reserved for the automatic choice; pick another name")
    if kind.name in _INDEX_KINDS:
        raise ValueError(
            f"index kind {kind.name!r} is already registered; choose another name"
        )
    _INDEX_KINDS[kind.name] = kind
    return kind


def get_index_kind(name: str) -> IndexKind:
    """Look up a registered index kind by name.

    Raises:
        ValueError: If no kind has that name.
    """
    try:
        return _INDEX_KINDS[name]
    except KeyError:
        raise ValueError(
            f"unknown index kind {name!r}; expected {AUTO!r} or one of {index_kinds()}"
        ) from None


def index_kinds() -> tuple[str, ...]:
    """Names of the registered index kinds, in registration order."""
    return tuple(_INDEX_KINDS)


def _faiss_metric(metric: Metric) -> int:
    return int(faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2)


def _build_flat(dim: int, metric: Metric, n_vectors: int, config: IndexConfig) -> Any:
    return faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)


def _flat_params(index: Any, config: IndexConfig, k: int, selector: Any) -> Any:
    if selector is None:
        return None
    params = faiss.SearchParameters()
    params.sel = selector
    return params


def _flat_nbytes(index: Any, dim: int) -> int:
    return int(index.ntotal) * dim * 4


def _build_hnsw(dim: int, metric: Metric, n_vectors: int, config: IndexConfig) -> Any:
    index = faiss.IndexHNSWFlat(dim, config.hnsw_m, _faiss_metric(metric))
    index.hnsw.efConstruction = config.hnsw_ef_construction
    index.hnsw.efSearch = config.hnsw_ef_search
    return index


def _hnsw_params(index: Any, config: IndexConfig, k: int, selector: Any) -> Any:
    # The faiss type stubs omit the HNSW parameters class.
    params = cast(Any, faiss).SearchParametersHNSW()
    # efSearch bounds how many candidates HNSW keeps, so below k it could not return k results.
    params.efSearch = max(config.hnsw_ef_search, k)
    if selector is not None:
        params.sel = selector
    return params


def _hnsw_nbytes(index: Any, dim: int) -> int:
    hnsw = cast(Any, faiss.downcast_index(index)).hnsw
    links = hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8
    return int(index.ntotal) * dim * 4 + int(links)


def ivf_nlist(n_vectors: int, config: IndexConfig) -> int:
    """IVF list count for ``n_vectors``: ``config.ivf_nlist``, else ``4 * sqrt(n)``.

    Capped so every list gets about 39 training points (faiss's own guidance), and at least 1.
    """
    wanted = config.ivf_nlist if config.ivf_nlist is not None else int(4 * math.sqrt(n_vectors))
    return max(1, min(wanted, n_vectors // 39))


def _build_ivf(dim: int, metric: Metric, n_vectors: int, config: IndexConfig) -> Any:
    quantizer = _build_flat(dim, metric, n_vectors, config)
    index = faiss.IndexIVFFlat(quantizer, dim, ivf_nlist(n_vectors, config), _faiss_metric(metric))
    # nlist is already sized to the data; this silences faiss's "too few points" stderr note.
    index.cp.min_points_per_centroid = 1
    index.nprobe = min(config.ivf_nprobe, index.nlist)
    return index


def _ivf_params(index: Any, config: IndexConfig, k: int, selector: Any) -> Any:
    params = faiss.SearchParametersIVF()
    params.nprobe = min(config.ivf_nprobe, int(index.nlist))
    if selector is not None:
        params.sel = selector
    return params


def _ivf_nbytes(index: Any, dim: int) -> int:
    return int(index.ntotal) * (dim * 4 + 8) + int(index.nlist) * dim * 4


register_index_kind(
    IndexKind("flat", True, False, True, _build_flat, _flat_params, _flat_nbytes)
)
register_index_kind(
    IndexKind("hnsw", False, False, False, _build_hnsw, _hnsw_params, _hnsw_nbytes)
)
register_index_kind(IndexKind("ivf", False, True, True, _build_ivf, _ivf_params, _ivf_nbytes))


def choose_kind(
    requested: str, n_alive: int, current: str | None, config: IndexConfig, on_gpu: bool
) -> str:
    """The kind an index should have now.

    A named kind is kept as asked. ``"auto"`` is exact up to ``config.exact_until`` live vectors
    and approximate above; once approximate it returns to exact only at half the threshold.

    Args:
        requested: The kind asked for, a registered name or ``"auto"``.
        n_alive: Live vectors the index will hold.
        current: The kind built now, or ``None``.
        config: Supplies ``exact_until`` and ``approximate_kind``.
        on_gpu: Whether indexes go to a GPU (where the approximate default is IVF).

    Returns:
        A registered kind name.
    """
    if requested != AUTO:
        return requested
    approximate = config.approximate_kind or ("ivf" if on_gpu else "hnsw")
    if current is None or get_index_kind(current).exact:
        return approximate if n_alive > config.exact_until else EXACT_KIND
    return EXACT_KIND if n_alive <= config.exact_until // 2 else approximate


def normalise_rows(vectors: FloatMatrix, name: str) -> FloatMatrix:
    """L2-normalise each row (for cosine), refusing rows of zero norm.

    Raises:
        ValueError: If a row has zero norm, where cosine similarity is undefined, or holds a NaN
            or infinite value.
    """
    squares = np.einsum("ij,ij->i", vectors, vectors)
    if not _all_positive_finite(squares):
        # float32 squares overflow above ~1e19 and underflow below ~1e-19: decide in float64,
        # where a squared norm is non-finite exactly when its row holds a NaN or infinity.
        squares = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
        if not np.isfinite(squares).all():
            raise_non_finite(vectors, name)
        if not (squares > 0).all():
            row = int(np.flatnonzero(squares <= 0)[0])
            raise ValueError(
                f"{name} row {row} has zero norm; cosine similarity needs non-zero vectors "
                "(use metric='l2' for vectors that may be zero)"
            )
        return (vectors / np.sqrt(squares)[:, None]).astype(np.float32)
    scale = (1.0 / np.sqrt(squares)).astype(np.float32)
    return vectors * scale[:, None]


def _all_positive_finite(values: np.ndarray) -> bool:
    if values.shape[0] == 1:  # a single query: Python floats are cheaper than numpy here
        return 0.0 < float(values[0]) < math.inf
    return bool(((values > 0) & (values < math.inf)).all())


def exact_search(
    vectors: FloatMatrix, queries: FloatMatrix, k: int, metric: Metric
) -> tuple[FloatMatrix, IdArray]:
    """Exact k nearest rows of ``vectors`` by brute force in numpy.

    Args:
        vectors: ``(n, d)`` rows to search (already normalised for cosine).
        queries: ``(q, d)`` queries (already normalised for cosine).
        k: Neighbours per query, at most ``n``.
        metric: ``"cosine"`` (inner product) or ``"l2"``.

    Returns:
        ``(similarities, rows)``, each ``(q, k)``, best first; similarities as ``VectorIndex``
        defines them (cosine, or negative squared distance).
    """
    scores = queries @ vectors.T
    if metric == "l2":
        sq = (queries * queries).sum(1)[:, None] - 2 * scores + (vectors * vectors).sum(1)[None]
        scores = 0.0 - np.maximum(sq, 0)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, 1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    rows = np.take_along_axis(top, order, 1).astype(np.int64)
    return np.take_along_axis(top_scores, order, 1).astype(np.float32), rows


# faiss keeps its BLAS switch in one process-wide variable; searches that change it for their
# duration hold this lock, so concurrent searches cannot restore each other's value.
_BLAS_SWITCH = threading.Lock()


class _SearchScope:
    """Apply ``config.blas_min_queries`` and ``config.serial_below_queries`` to one search.

    A class rather than a generator-based context manager: it runs on every single-query
    search, where microseconds count.
    """

    __slots__ = ("_blas", "_previous", "_serial", "_threads")

    def __init__(self, config: IndexConfig, n_queries: int, dim: int) -> None:
        self._serial = (config.serial_below_queries is not None
                        and n_queries < config.serial_below_queries)
        minimum = config.blas_min_queries
        self._blas = None if minimum is None or n_queries < minimum else minimum * dim
        self._threads = 0
        self._previous = 0

    def __enter__(self) -> None:
        if self._serial:
            self._threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
        if self._blas is not None:
            _BLAS_SWITCH.acquire()
            self._previous = faiss.cvar.distance_compute_blas_threshold
            faiss.cvar.distance_compute_blas_threshold = self._blas

    def __exit__(self, *exc_info: object) -> None:
        if self._blas is not None:
            faiss.cvar.distance_compute_blas_threshold = self._previous
            _BLAS_SWITCH.release()
        if self._serial:
            faiss.omp_set_num_threads(self._threads)


@dataclass(frozen=True)
class IndexState:
    """Everything a ``VectorIndex`` holds, as plain arrays plus an optional CPU faiss index.

    Attributes:
        vectors: ``(rows, dim)`` stored vectors (normalised for cosine), tombstones included.
        row_ids: ``(rows,)`` id of each row.
        alive: ``(rows,)`` whether each row is live.
        built_kind: The kind of ``index`` (or of the index to rebuild), ``None`` when empty.
        trained_on: How many vectors an IVF index was trained on (0 otherwise).
        index: A CPU faiss index over all rows, or ``None`` when the kind is exact and cheap to
            rebuild from ``vectors``.
    """

    vectors: FloatMatrix
    row_ids: IdArray
    alive: BoolArray
    built_kind: str | None
    trained_on: int
    index: Any | None


class VectorIndex:
    """Vectors under stable integer ids, searchable by cosine or L2 through a FAISS index.

    Ids are non-negative ints below ``2**31``; they index a dense table (8 bytes per id up to the
    largest id), so callers should number densely, as both memories do.

    Costs: ``add`` is the index's own add (HNSW: ``O(log n)`` per vector); ``remove`` and
    ``update`` are ``O(1)`` tombstoning, and every so often (see the module docstring) a
    rebuild from the live rows at the next search: a copy for ``flat``, a new graph for
    ``hnsw`` (seconds to minutes at a million vectors), re-adding for ``ivf``. The vectors are
    kept in numpy besides the FAISS index, so memory is about twice the vectors' size for
    ``flat`` and ``ivf``; ``nbytes`` counts both.

    References:
        HNSW: Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search
        using Hierarchical Navigable Small World graphs", TPAMI 2018. IVF: Jégou, Douze &
        Schmid, "Product quantization for nearest neighbor search", TPAMI 2011. FAISS: Johnson,
        Douze & Jégou, "Billion-scale similarity search with GPUs", IEEE TBD 2019.

    Args:
        dim: Vector dimension.
        metric: ``"cosine"`` or ``"l2"``; see the module docstring for the similarities returned.
        kind: ``"auto"`` or a registered kind (``"flat"``, ``"hnsw"``, ``"ivf"``).
        config: Tuning; defaults to ``IndexConfig()``.

    Raises:
        ValueError: On an unknown metric or kind, or ``use_gpu=True`` without a GPU.
    """

    def __init__(
        self,
        dim: int,
        metric: Metric = "cosine",
        kind: str = AUTO,
        config: IndexConfig | None = None,
    ) -> None:
        self._dim = check_positive_int(dim, "dim")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
        if kind != AUTO:
            get_index_kind(kind)
        self._metric: Metric = metric
        self._kind = kind
        self._config = config if config is not None else IndexConfig()
        if self._config.approximate_kind is not None:
            get_index_kind(self._config.approximate_kind)
        gpus = faiss.get_num_gpus()
        if self._config.use_gpu and gpus == 0:
            raise ValueError("use_gpu=True but faiss sees no GPU; pass use_gpu=None or False")
        self._use_gpu = gpus > 0 if self._config.use_gpu is None else self._config.use_gpu
        self._gpu_resources: Any = None
        self._vectors: FloatMatrix = np.empty((0, dim), np.float32)
        self._row_ids: IdArray = np.empty(0, np.int64)
        self._alive: BoolArray = np.empty(0, np.bool_)
        self._n_rows = 0
        self._n_alive = 0
        self._row_of: IdArray = np.empty(0, np.int64)
        self._index: Any = None
        self._built_kind: str | None = None
        self._trained_on = 0
        self._selector: tuple[Any, ...] | None = None

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def metric(self) -> Metric:
        """``"cosine"`` or ``"l2"``."""
        return self._metric

    @property
    def kind(self) -> str:
        """The kind asked for (``"auto"`` or a registered name)."""
        return self._kind

    @property
    def built_kind(self) -> str | None:
        """The kind of the FAISS index built now; ``None`` while nothing has been added."""
        return self._built_kind

    @property
    def config(self) -> IndexConfig:
        """The tuning in force."""
        return self._config

    @property
    def on_gpu(self) -> bool:
        """Whether the FAISS index lives on a GPU now."""
        return self._use_gpu and self._built_kind is not None and get_index_kind(
            self._built_kind
        ).gpu

    def __len__(self) -> int:
        return self._n_alive

    def __contains__(self, item: object) -> bool:
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            return False
        return bool(0 <= item < self._row_of.size and self._row_of[item] >= 0)

    @property
    def n_tombstones(self) -> int:
        """Removed or replaced rows still in the FAISS index, skipped by searches."""
        return self._n_rows - self._n_alive

    def ids(self) -> IdArray:
        """Ids of the live vectors, in storage order."""
        return self._row_ids[: self._n_rows][self._alive[: self._n_rows]].copy()

    @property
    def nbytes(self) -> int:
        """Bytes held: stored rows (vector, id, live flag), the id table and the FAISS index.

        Growth slack in the row buffers (at most half again) is not counted.
        """
        per_row = self._dim * 4 + 8 + 1
        index_bytes = 0
        if self._index is not None and self._built_kind is not None:
            index_bytes = get_index_kind(self._built_kind).nbytes(self._index, self._dim)
        return self._n_rows * per_row + self._row_of.size * 8 + index_bytes

    def set_search_options(
        self, *, ef_search: int | None = None, nprobe: int | None = None
    ) -> None:
        """Change search effort without rebuilding: HNSW ``efSearch`` and IVF ``nprobe``."""
        config = self._config
        if ef_search is not None:
            config = replace(config, hnsw_ef_search=ef_search)
        if nprobe is not None:
            config = replace(config, ivf_nprobe=nprobe)
        self._config = config

    def add(self, ids: Any, vectors: Any) -> None:
        """Add vectors under new ids.

        Args:
            ids: ``(n,)`` ids, none of them held already.
            vectors: ``(n, dim)`` or ``(dim,)`` finite vectors.

        Raises:
            ValueError: On a held or repeated id, a wrong shape, or a NaN or infinite value.
        """
        id_array = as_ids(ids)
        matrix = self._prepare(vectors, "vectors")
        if id_array.size != matrix.shape[0]:
            raise ValueError(
                f"got {id_array.size} ids for {matrix.shape[0]} vectors; pass one id per vector"
            )
        self._check_new(id_array)
        if id_array.size == 0:
            return
        first_row = self._n_rows
        self._append_rows(id_array, matrix)
        target = choose_kind(self._kind, self._n_alive, self._built_kind, self._config,
                             self._use_gpu)
        if self._index is None or target != self._built_kind or self._ivf_outgrown():
            self._rebuild()
            return
        self._index.add(self._vectors[first_row : self._n_rows])

    def remove(self, ids: Any) -> None:
        """Remove vectors by id; all ids are checked before any is removed.

        Raises:
            UnknownIdError: If an id is not held.
            ValueError: If an id repeats.
        """
        rows = self._rows_of(as_ids(ids))
        self._alive[rows] = False
        self._row_of[self._row_ids[rows]] = -1
        self._n_alive -= rows.size
        self._selector = None
        if self._n_alive == 0:
            self._reset()

    def update(self, ids: Any, vectors: Any) -> None:
        """Replace the vectors of held ids; the ids stay the same.

        Raises:
            UnknownIdError: If an id is not held.
            ValueError: On a repeated id, a wrong shape, or a NaN or infinite value.
        """
        id_array = as_ids(ids)
        matrix = self._prepare(vectors, "vectors")
        if id_array.size != matrix.shape[0]:
            raise ValueError(
                f"got {id_array.size} ids for {matrix.shape[0]} vectors; pass one id per vector"
            )
        rows = self._rows_of(id_array)
        self._alive[rows] = False
        self._row_of[id_array] = -1
        self._n_alive -= rows.size
        self._selector = None
        self.add(id_array, matrix)

    def get_vectors(self, ids: Any) -> FloatMatrix:
        """The stored vectors of held ids (unit-normalised when the metric is cosine).

        Raises:
            UnknownIdError: If an id is not held.
        """
        return self._vectors[self._rows_of(as_ids(ids), allow_repeats=True)].copy()

    def search(self, queries: Any, k: int) -> tuple[FloatMatrix, IdArray]:
        """The ``k`` most similar live vectors for each query, best first.

        ``k`` larger than the index returns every live vector; an empty index returns arrays of
        shape ``(q, 0)``. Rows never hold padding: when an approximate index finds fewer than
        ``min(k, len(self))`` results for a query, that query is answered by exact search.

        Args:
            queries: ``(q, dim)`` or ``(dim,)`` finite vectors.
            k: Positive number of neighbours.

        Returns:
            ``(similarities, ids)``, float32 and int64 arrays of shape ``(q, min(k, len))``.

        Raises:
            TypeError: If ``k`` is not an int.
            ValueError: If ``k <= 0``, or on a wrong shape or NaN or infinite value.
        """
        k = check_k(k)
        matrix = self._prepare(queries, "queries")
        n_queries = matrix.shape[0]
        if self._n_alive == 0 or n_queries == 0:
            k_empty = min(k, self._n_alive)
            return (np.empty((n_queries, k_empty), np.float32),
                    np.empty((n_queries, k_empty), np.int64))
        k_eff = min(k, self._n_alive)
        fetch, selector = k_eff, None
        if self._n_rows != self._n_alive:
            if self._needs_compaction():
                self._rebuild()
            if self._overfetches():
                fetch = k_eff + self.n_tombstones
            elif self.n_tombstones:
                selector = self._live_selector()
        kind = get_index_kind(cast(str, self._built_kind))
        params = kind.search_params(self._index, self._config, fetch, selector)
        with _SearchScope(self._config, n_queries, self._dim):
            if params is None:
                distances, rows = self._index.search(matrix, fetch)
            else:
                distances, rows = self._index.search(matrix, fetch, params=params)
        if fetch > k_eff:
            distances, rows = _drop_dead(distances, rows, self._alive, k_eff)
        # 0 - d rather than -d, so an exact match reads 0.0 and not -0.0.
        similarities = distances if self._metric == "cosine" else 0.0 - distances
        short = (rows < 0).any(axis=1) if rows.size and rows.min() < 0 else None
        if short is not None:
            live = np.flatnonzero(self._alive[: self._n_rows])
            sims, local = exact_search(self._vectors[live], matrix[short], k_eff, self._metric)
            similarities[short] = sims
            rows[short] = live[local]
        return (np.ascontiguousarray(similarities, dtype=np.float32),
                self._row_ids[rows])

    def compact(self) -> None:
        """Drop tombstones now by rebuilding the FAISS index from the live rows."""
        if self._n_alive and (self.n_tombstones or self._index is None):
            self._rebuild()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle support (run checkpoints): the FAISS index goes as a CPU index.

        faiss pickles CPU indexes itself, but neither GPU indexes, GPU resources, nor the
        live-row selector (it reads a raw pointer); the selector is rebuilt on demand.
        """
        state = self.__dict__.copy()
        if self.on_gpu and self._index is not None:
            state["_index"] = faiss.index_gpu_to_cpu(self._index)
        state["_gpu_resources"] = None
        state["_selector"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._index is not None and self._built_kind is not None:
            self._index = self._place(self._index, get_index_kind(self._built_kind))

    def state(self) -> IndexState:
        """Everything this index holds, for saving. The arrays are views: do not modify them."""
        index = None
        if self._index is not None and not get_index_kind(cast(str, self._built_kind)).exact:
            index = faiss.index_gpu_to_cpu(self._index) if self.on_gpu else self._index
        return IndexState(
            vectors=self._vectors[: self._n_rows],
            row_ids=self._row_ids[: self._n_rows],
            alive=self._alive[: self._n_rows],
            built_kind=self._built_kind,
            trained_on=self._trained_on,
            index=index,
        )

    @classmethod
    def from_state(
        cls,
        state: IndexState,
        dim: int,
        metric: Metric = "cosine",
        kind: str = AUTO,
        config: IndexConfig | None = None,
    ) -> VectorIndex:
        """Rebuild an index from ``state()``'s content.

        Raises:
            ValueError: If the arrays or faiss index disagree with each other or with ``dim``.
        """
        self = cls(dim, metric, kind, config)
        n_rows = state.row_ids.shape[0]
        if state.vectors.shape != (n_rows, dim) or state.alive.shape != (n_rows,):
            raise ValueError(
                f"index state has vectors {state.vectors.shape}, ids {state.row_ids.shape} and "
                f"live flags {state.alive.shape}; expected ({n_rows}, {dim}), ({n_rows},), "
                f"({n_rows},)"
            )
        live_ids = as_ids(state.row_ids[state.alive], "stored ids")
        if np.unique(live_ids).size != live_ids.size:
            raise ValueError("index state holds the same id on two live rows")
        if not np.isfinite(state.vectors).all():
            raise ValueError("index state holds non-finite vectors")
        self._vectors = np.ascontiguousarray(state.vectors, dtype=np.float32)
        self._row_ids = np.ascontiguousarray(state.row_ids, dtype=np.int64)
        self._alive = np.ascontiguousarray(state.alive, dtype=np.bool_)
        self._n_rows = n_rows
        self._n_alive = int(live_ids.size)
        self._row_of = np.full(int(live_ids.max()) + 1 if live_ids.size else 0, -1, np.int64)
        self._row_of[live_ids] = np.flatnonzero(self._alive)
        if self._n_alive == 0:
            self._reset()
        elif state.index is None:
            self._rebuild()
        else:
            if state.built_kind is None or get_index_kind(state.built_kind).exact:
                raise ValueError(
                    f"index state carries a faiss index for kind {state.built_kind!r}; "
                    "only approximate kinds are stored"
                )
            if state.index.ntotal != n_rows or state.index.d != dim:
                raise ValueError(
                    f"stored faiss index holds {state.index.ntotal} vectors of dimension "
                    f"{state.index.d}; expected {n_rows} of dimension {dim}"
                )
            self._built_kind = state.built_kind
            self._trained_on = state.trained_on
            self._index = self._place(state.index, get_index_kind(state.built_kind))
        return self

    def _prepare(self, values: Any, name: str) -> FloatMatrix:
        if self._metric == "l2":
            return as_vectors(values, self._dim, name)
        return normalise_rows(as_vectors(values, self._dim, name, check_finite=False), name)

    def _check_new(self, ids: IdArray) -> None:
        if np.unique(ids).size != ids.size:
            values, counts = np.unique(ids, return_counts=True)
            raise ValueError(f"id {values[counts > 1][0]} appears twice; ids must be distinct")
        held = ids[ids < self._row_of.size]
        held = held[self._row_of[held] >= 0]
        if held.size:
            raise ValueError(f"id {held[0]} is already held; use update() to replace its vector")

    def _rows_of(self, ids: IdArray, allow_repeats: bool = False) -> IdArray:
        known = ids < self._row_of.size
        rows = np.full(ids.size, -1, np.int64)
        rows[known] = self._row_of[ids[known]]
        if (rows < 0).any():
            missing = ids[rows < 0][0]
            raise UnknownIdError(
                f"id {missing} is not in this memory (it holds {self._n_alive} entries); "
                "expected one of the ids returned by add()"
            )
        if not allow_repeats and np.unique(ids).size != ids.size:
            values, counts = np.unique(ids, return_counts=True)
            raise ValueError(f"id {values[counts > 1][0]} appears twice; ids must be distinct")
        return rows

    def _append_rows(self, ids: IdArray, vectors: FloatMatrix) -> None:
        needed = self._n_rows + ids.size
        if needed > self._vectors.shape[0]:
            # Grow by half again so a stream of single adds costs amortised O(1) copies each.
            capacity = max(needed, int(self._vectors.shape[0] * 1.5), 16)
            self._vectors = _grow(self._vectors, capacity)
            self._row_ids = _grow(self._row_ids, capacity)
            self._alive = _grow(self._alive, capacity)
        top = int(ids.max()) + 1
        if top > self._row_of.size:
            table = np.full(max(top, min(int(self._row_of.size * 1.5), MAX_ID + 1)), -1,
                            np.int64)
            table[: self._row_of.size] = self._row_of
            self._row_of = table
        rows = np.arange(self._n_rows, needed)
        self._vectors[rows] = vectors
        self._row_ids[rows] = ids
        self._alive[rows] = True
        self._row_of[ids] = rows
        self._n_rows = needed
        self._n_alive += ids.size
        self._selector = None

    def _overfetches(self) -> bool:
        """Whether searches skip tombstones by asking for more results and dropping the dead.

        The alternative, a faiss ``IDSelector``, moves exact search off its BLAS path (3 to 6
        times slower for batches) and is not accepted by GPU indexes.
        """
        exact = self._built_kind is not None and get_index_kind(self._built_kind).exact
        return bool(self.n_tombstones) and (exact or self.on_gpu)

    def _needs_compaction(self) -> bool:
        if not self.n_tombstones:
            return False
        if self._overfetches() and self.n_tombstones > _MAX_OVERFETCH:
            return True
        return self.n_tombstones > self._config.max_dead_fraction * self._n_rows

    def _ivf_outgrown(self) -> bool:
        return (
            self._built_kind == "ivf"
            and self._config.ivf_nlist is None
            and self._n_alive >= 4 * max(self._trained_on, 1)
            and ivf_nlist(self._n_alive, self._config) > int(self._index.nlist)
        )

    def _live_selector(self) -> Any:
        if self._selector is None:
            bitmap = np.packbits(self._alive[: self._n_rows], bitorder="little")
            # The selector reads the bitmap through a raw pointer: keep both alive together.
            self._selector = (faiss.IDSelectorBitmap(self._n_rows, faiss.swig_ptr(bitmap)),
                              bitmap)
        return self._selector[0]

    def _reset(self) -> None:
        self._vectors = np.empty((0, self._dim), np.float32)
        self._row_ids = np.empty(0, np.int64)
        self._alive = np.empty(0, np.bool_)
        self._n_rows = 0
        self._n_alive = 0
        self._row_of = np.empty(0, np.int64)
        self._index = None
        self._built_kind = None
        self._trained_on = 0
        self._selector = None

    def _rebuild(self) -> None:
        live = np.flatnonzero(self._alive[: self._n_rows])
        self._vectors = np.ascontiguousarray(self._vectors[live])
        self._row_ids = self._row_ids[live].copy()
        self._alive = np.ones(live.size, np.bool_)
        self._n_rows = self._n_alive = int(live.size)
        self._row_of[:] = -1
        self._row_of[self._row_ids] = np.arange(live.size)
        self._selector = None
        name = choose_kind(self._kind, self._n_alive, self._built_kind, self._config,
                           self._use_gpu)
        kind = get_index_kind(name)
        index = kind.build(self._dim, self._metric, self._n_alive, self._config)
        if kind.needs_training:
            index.train(self._vectors)
        index.add(self._vectors)
        self._index = self._place(index, kind)
        self._built_kind = name
        self._trained_on = self._n_alive if kind.needs_training else 0

    def _place(self, index: Any, kind: IndexKind) -> Any:
        if not (self._use_gpu and kind.gpu):
            return index
        if self._gpu_resources is None:
            self._gpu_resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)


def _drop_dead(
    distances: np.ndarray, rows: np.ndarray, alive: BoolArray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep, per query, the first ``k`` results on live rows; ``-1`` where fewer remain."""
    live = (rows >= 0) & alive[np.maximum(rows, 0)]
    # A stable sort on "is dead" moves live results first and keeps their order.
    order = np.argsort(~live, axis=1, kind="stable")[:, :k]
    kept_rows = np.take_along_axis(rows, order, 1)
    kept_rows[~np.take_along_axis(live, order, 1)] = -1
    return np.take_along_axis(distances, order, 1), kept_rows


def _grow(array: np.ndarray, capacity: int) -> Any:
    grown = np.empty((capacity, *array.shape[1:]), array.dtype)
    grown[: array.shape[0]] = array
    return grown


def save_array(array: np.ndarray) -> Writer:
    """A writer saving ``array`` as ``.npy`` (no pickled objects)."""

    def write(path: Path) -> None:
        with path.open("wb") as handle:
            np.save(handle, array, allow_pickle=False)

    return write


def load_array(manifest: Manifest, name: str) -> np.ndarray:
    """Read one ``.npy`` file of a checked manifest, refusing pickled content.

    Raises:
        MemoryFormatError: If the file is not a plain numpy array.
    """
    require_files(manifest, [name])
    try:
        return cast(np.ndarray, np.load(manifest.directory / name, allow_pickle=False))
    except (OSError, ValueError, EOFError) as error:
        raise MemoryFormatError(
            f"{manifest.directory / name} is not a numpy array: {error}"
        ) from error


def index_state_files(state: IndexState, prefix: str) -> tuple[dict[str, Writer], dict[str, Any]]:
    """Writers and manifest fields that persist an ``IndexState`` under file names ``prefix*``.

    The faiss index is written only for approximate kinds (``state.index`` is ``None`` for exact
    ones, rebuilt from the vectors on load in one copy).
    """
    writers = {
        f"{prefix}vectors.npy": save_array(state.vectors),
        f"{prefix}row_ids.npy": save_array(state.row_ids),
        f"{prefix}alive.npy": save_array(state.alive),
    }
    if state.index is not None:
        index = state.index

        def write_index(path: Path) -> None:
            faiss.write_index(index, str(path))

        writers[f"{prefix}index.faiss"] = write_index
    info = {
        "rows": int(state.row_ids.shape[0]),
        "live": int(state.alive.sum()),
        "built_kind": state.built_kind,
        "trained_on": state.trained_on,
    }
    return writers, info


def read_index_state(manifest: Manifest, prefix: str, info: Mapping[str, Any]) -> IndexState:
    """Read back what ``index_state_files`` wrote.

    Raises:
        MemoryFormatError: If a file is unreadable or disagrees with ``info``.
    """
    vectors = load_array(manifest, f"{prefix}vectors.npy")
    row_ids = load_array(manifest, f"{prefix}row_ids.npy")
    alive = load_array(manifest, f"{prefix}alive.npy")
    rows = info.get("rows")
    if (
        vectors.dtype != np.float32
        or row_ids.dtype != np.int64
        or alive.dtype != np.bool_
        or vectors.ndim != 2
        or row_ids.shape != (rows,)
        or alive.shape != (rows,)
        or vectors.shape[0] != rows
        or int(alive.sum()) != info.get("live")
    ):
        raise MemoryFormatError(
            f"{manifest.directory}: stored vectors {vectors.dtype}{vectors.shape}, ids "
            f"{row_ids.dtype}{row_ids.shape}, live flags {alive.dtype}{alive.shape} disagree "
            f"with the manifest ({rows} rows, {info.get('live')} live)"
        )
    index = None
    name = f"{prefix}index.faiss"
    if name in manifest.files:
        try:
            index = faiss.read_index(str(manifest.directory / name))
        except RuntimeError as error:
            raise MemoryFormatError(
                f"{manifest.directory / name} is not a faiss index: {error}"
            ) from error
    built_kind = info.get("built_kind")
    trained_on = info.get("trained_on")
    if not (built_kind is None or isinstance(built_kind, str)) or not isinstance(trained_on, int):
        raise MemoryFormatError(
            f"{manifest.directory}: index fields built_kind={built_kind!r}, "
            f"trained_on={trained_on!r} are malformed"
        )
    return IndexState(vectors, row_ids, alive, built_kind, trained_on, index)
