"""Sample codecs: FAISS vector codes that store a sample in fewer bytes than its floats.

A ``SampleCodec`` wraps one FAISS index built from a factory string (``"SQ8"``, ``"SQ4"``,
``"PQ98x8"``, or anything ``faiss.index_factory`` takes whose index has a standalone codec;
``"PQ/4x4"`` names a product quantiser by its sub-vectors' width instead, ``resolve_spec``):
``encode`` turns float rows into ``code_size`` bytes each (``sa_encode``), ``decode`` turns them
back (``sa_decode``), and ``search`` finds the nearest stored codes to float queries without
decoding them (FAISS's asymmetric distance over the codes).

The codec is trained on the first data it is given. ``needs_retraining`` is the rule for
training it again: when new data reconstruct with a relative error (squared error over the
data's own variance) more than ``RETRAIN_FACTOR`` times ``trained_error``, and above
``RETRAIN_FLOOR``. ``trained_error`` is the error, right after training, of the data the
training was for: the first batch, or at a retraining the new batch alone (not the decoded
samples retrained on with it, which re-encode almost exactly: measured on those, the bar fell
so low that every task of permuted MNIST retrained the codec, and each retraining on decoded
values narrowed a scalar quantiser's ranges a little more). A scalar quantiser trained on one
task clips values a later task reaches (a rotated digit lights pixels the upright ones never
do); a product quantiser's centroids fit only the distribution they were trained on (a new
pixel permutation). What a memory does then, retrain or move to a cheaper codec, is
``memory.EpisodicMemory``'s choice.

References:
    Jégou, Douze & Schmid, "Product Quantization for Nearest Neighbor Search", TPAMI 2011.
    Hayes et al., "REMIND Your Neural Network to Prevent Catastrophic Forgetting", ECCV 2020
    (a replay memory of product-quantised codes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import faiss
import numpy as np

from memory._checks import FloatMatrix, as_vectors, check_positive_int

RETRAIN_FACTOR = 2.0
"""New data whose relative error exceeds this multiple of the training data's retrain the codec."""
RETRAIN_FLOOR = 1e-3
"""Relative errors below this (0.1% of the data's variance) never retrain the codec."""
PQ_KMEANS_ITERATIONS = 10
"""k-means iterations that train each product quantiser's sub-quantisers."""
PQ_ROWS_PER_CENTROID = 64
"""Rows per centroid a product quantiser trains on, at most (FAISS samples down to it)."""


_T = TypeVar("_T")


class CodecError(ValueError):
    """A codec string FAISS refuses, or one whose index has no standalone codec."""


class SampleCodec:
    """A FAISS codec for ``dim``-dimensional float rows, built from a factory string.

    Args:
        spec: A ``faiss.index_factory`` string: ``"SQ8"`` (one byte per value), ``"SQ4"``
            (half a byte), ``"PQ{M}x{nbits}"`` (``M`` sub-vectors of ``nbits`` bits; ``M`` must
            divide ``dim``), ...; or ``"PQ/{s}x{nbits}"``, a product quantiser over sub-vectors
            of ``s`` values whatever ``dim`` is (``resolve_spec``).
        dim: Length of one row (a flattened sample).

    Raises:
        CodecError: If FAISS refuses ``spec`` for ``dim``, or its index cannot encode.
    """

    def __init__(self, spec: str, dim: int) -> None:
        self._dim = check_positive_int(dim, "dim")
        if not isinstance(spec, str) or not spec.strip():
            raise CodecError(f"codec must be a FAISS factory string such as 'SQ8', got {spec!r}")
        self._spec = spec
        self._index = _build(resolve_spec(spec, self._dim), self._dim)
        self._trained_error: float | None = None
        self._seconds = 0.0

    @property
    def spec(self) -> str:
        """The factory string."""
        return self._spec

    @property
    def dim(self) -> int:
        """Length of one row."""
        return self._dim

    @property
    def code_size(self) -> int:
        """Bytes of one encoded row."""
        return int(self._index.sa_code_size())

    @property
    def is_trained(self) -> bool:
        """Whether the codec can encode (it has been trained, or needs no training)."""
        return bool(self._index.is_trained)

    @property
    def codebook_bytes(self) -> int:
        """Bytes of the trained codec itself (scales, centroids), as FAISS serialises it."""
        return int(faiss.serialize_index(self._index).size)

    @property
    def seconds(self) -> float:
        """Wall time spent training, encoding and decoding so far, for throughput figures."""
        return self._seconds

    @property
    def trained_error(self) -> float | None:
        """Relative reconstruction error on the data the codec was last trained on."""
        return self._trained_error

    def train(self, rows: Any, reference: Any | None = None) -> float:
        """Train the codec on ``rows`` (from scratch, also when it was trained before).

        Args:
            rows: The training rows.
            reference: The rows whose error after training sets ``trained_error``; ``rows``
                by default. A retraining passes the new data alone: rows that were decoded
                from codes re-encode almost exactly and would make the bar too low.

        Returns:
            The relative reconstruction error on ``reference`` after training.

        Raises:
            CodecError: If FAISS cannot train on these rows (too few for its centroids).
        """
        matrix = self._rows(rows)
        fresh = _build(resolve_spec(self._spec, self._dim), self._dim)
        try:
            self._timed(lambda: fresh.train(matrix))
        except RuntimeError as error:
            raise CodecError(
                f"codec {self._spec!r} could not train on {len(matrix)} rows: "
                f"{_first_line(error)}; give it more rows or choose a smaller codebook"
            ) from error
        self._index = fresh
        self._trained_error = self.relative_error(matrix if reference is None else reference)
        return self._trained_error

    def encode(self, rows: Any) -> np.ndarray:
        """``(n, code_size)`` uint8 codes of ``(n, dim)`` float rows."""
        self._require_trained()
        matrix = self._rows(rows)
        return np.asarray(self._timed(lambda: self._index.sa_encode(matrix)), dtype=np.uint8)

    def decode(self, codes: np.ndarray) -> FloatMatrix:
        """``(n, dim)`` float32 rows of ``(n, code_size)`` codes."""
        self._require_trained()
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.ndim != 2 or codes.shape[1] != self.code_size:
            raise ValueError(
                f"codes have shape {codes.shape}; expected (n, {self.code_size}) for codec "
                f"{self._spec!r}"
            )
        return np.asarray(self._timed(lambda: self._index.sa_decode(codes)), dtype=np.float32)

    def relative_error(self, rows: Any) -> float:
        """Squared reconstruction error of ``rows`` over their variance about their mean."""
        return self.encode_measured(rows)[1]

    def encode_measured(self, rows: Any) -> tuple[np.ndarray, float]:
        """``encode(rows)`` and ``relative_error(rows)`` from a single encoding."""
        matrix = self._rows(rows)
        if not len(matrix):
            return np.empty((0, self.code_size), dtype=np.uint8), 0.0
        codes = self.encode(matrix)
        decoded = self.decode(codes)
        spread = float(((matrix - matrix.mean(axis=0)) ** 2).sum())
        error = float(((matrix - decoded) ** 2).sum())
        relative = error / spread if spread > 0 else (0.0 if error == 0 else float("inf"))
        return codes, relative

    def needs_retraining(self, error: float) -> bool:
        """Whether new data reconstructing with relative ``error`` should retrain the codec."""
        trained = self._trained_error if self._trained_error is not None else 0.0
        return error > max(RETRAIN_FACTOR * trained, RETRAIN_FLOOR)

    def search(self, codes: np.ndarray, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` codes nearest each query row (squared L2, asymmetric: queries stay floats).

        Returns:
            ``(distances, rows)``, each ``(n_queries, min(k, len(codes)))``; ``rows`` index
            ``codes``.
        """
        self._require_trained()
        k = check_positive_int(k, "k")
        queries = self._rows(queries)
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        searcher = faiss.clone_index(self._index)
        if not isinstance(searcher, faiss.IndexFlatCodes):
            raise CodecError(f"codec {self._spec!r} keeps codes FAISS cannot search in place")
        faiss.copy_array_to_vector(codes.ravel(), searcher.codes)
        searcher.ntotal = len(codes)
        distances, rows = searcher.search(queries, min(k, len(codes)))
        return distances, rows.astype(np.int64)

    def to_bytes(self) -> np.ndarray:
        """The trained codec as FAISS serialises it (uint8), for saving."""
        return np.asarray(faiss.serialize_index(self._index), dtype=np.uint8)

    @classmethod
    def from_bytes(
        cls, spec: str, dim: int, data: np.ndarray, trained_error: float | None
    ) -> SampleCodec:
        """Rebuild a codec saved with ``to_bytes``.

        Raises:
            CodecError: If ``data`` is not a codec of ``spec`` for ``dim``.
        """
        codec = cls(spec, dim)
        try:
            index = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
        except RuntimeError as error:
            raise CodecError(f"saved codec {spec!r} is unreadable: {_first_line(error)}") from error
        if index.d != dim or index.sa_code_size() != codec.code_size:
            raise CodecError(
                f"saved codec holds {index.d}-dimensional codes of {index.sa_code_size()} "
                f"bytes; {spec!r} for dim {dim} makes {codec.code_size}"
            )
        codec._index = index
        codec._trained_error = trained_error
        return codec

    def __getstate__(self) -> dict[str, Any]:
        # A FAISS index does not pickle; its serialised bytes do (checkpoints pickle memories).
        return {
            "spec": self._spec,
            "dim": self._dim,
            "index": self.to_bytes(),
            "trained_error": self._trained_error,
            "seconds": self._seconds,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._spec, self._dim = state["spec"], state["dim"]
        self._index = faiss.deserialize_index(state["index"])
        self._trained_error = state["trained_error"]
        self._seconds = state.get("seconds", 0.0)

    def _timed(self, work: Callable[[], _T]) -> _T:
        start = time.perf_counter()
        try:
            return work()
        finally:
            self._seconds += time.perf_counter() - start

    def _rows(self, rows: Any) -> FloatMatrix:
        return np.ascontiguousarray(as_vectors(rows, self._dim, "rows"), dtype=np.float32)

    def _require_trained(self) -> None:
        if not self.is_trained:
            raise RuntimeError(f"codec {self._spec!r} is not trained yet; call train() first")


def resolve_spec(spec: str, dim: int) -> str:
    """The factory string for ``dim``: ``"PQ/{s}x{nbits}"`` becomes ``"PQ{M}x{nbits}"``.

    ``M`` is the largest number of sub-vectors of at least ``s`` values each that divides
    ``dim`` (784 values, ``"PQ/4x4"``: ``"PQ196x4"``; 64 values: ``"PQ16x4"``). Any other
    string is returned as it is.

    Raises:
        CodecError: On a ``"PQ/..."`` string with a sub-vector wider than ``dim``.
    """
    relative = re.fullmatch(r"PQ/(\d+)x(\d+)", spec.strip())
    if relative is None:
        return spec
    width, nbits = int(relative.group(1)), int(relative.group(2))
    if not 1 <= width <= dim:
        raise CodecError(
            f"codec {spec!r} asks for sub-vectors of {width} values; rows have {dim}: give "
            f"a width from 1 to {dim}"
        )
    parts = next(m for m in range(dim // width, 0, -1) if dim % m == 0)
    return f"PQ{parts}x{nbits}"


def _build(spec: str, dim: int) -> Any:
    try:
        index = faiss.index_factory(dim, spec)
    except RuntimeError as error:
        raise CodecError(
            f"FAISS refuses codec {spec!r} for {dim}-dimensional samples "
            f"({_first_line(error)}); try 'SQ8', 'SQ4', 'PQ/4x4' or 'PQ{{M}}x{{nbits}}' with M "
            f"dividing {dim}"
        ) from error
    try:
        index.sa_code_size()
    except RuntimeError as error:
        raise CodecError(
            f"codec {spec!r} builds a {type(index).__name__}, which has no standalone codec; "
            "use a scalar or product quantiser ('SQ8', 'SQ4', 'PQ{M}x{nbits}')"
        ) from error
    if isinstance(index, faiss.IndexPQ):
        # index_factory turns on polysemous training for "PQ..." (unless the string ends in
        # "np"): it reorders the centroids so that Hamming distances between codes rank like
        # L2 distances, which only polysemous search uses. Codes decoded or searched with
        # asymmetric distances are the same without it, and training is far faster
        # (PQ196x4 on 1,000 MNIST rows, one thread: 18.4 s against 0.24 s).
        index.do_polysemous_training = False  # type: ignore[attr-defined]  # not in the stubs
        # Fewer k-means iterations than FAISS's 25, on at most 64 rows a centroid instead of
        # 256, bound the cost of a training (a memory that retrains or falls back trains more
        # than once a run, on all it stores) for 3% more reconstruction error (PQ196x4, 1,000
        # MNIST rows, 10 iterations: 0.0516 of the variance on held-out rows against 0.0499).
        index.pq.cp.niter = PQ_KMEANS_ITERATIONS
        index.pq.cp.max_points_per_centroid = PQ_ROWS_PER_CENTROID
        # FAISS warns on stderr below 39 rows a centroid; k-means needs only one, and a
        # memory trains on the first data it gets, however little.
        index.pq.cp.min_points_per_centroid = 1
    return index


def _first_line(error: BaseException) -> str:
    """What went wrong, without the C++ location FAISS puts before it."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "Error: " in text:
        return text.split("Error: ")[-1].strip()
    located = re.search(r"\.\w+:\d+: (.*)$", text)
    return located.group(1).strip() if located else text
