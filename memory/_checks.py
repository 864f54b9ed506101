"""Validation at the package boundary: turn user input into checked numpy arrays.

Every public entry point of ``memory`` funnels its vectors, ids and ``k`` through these
helpers, so a bad value is refused once, with a message naming it and the fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

FloatMatrix = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

#: Ids index a dense row table (8 bytes per id up to the largest one), so they are bounded.
MAX_ID = 2**31 - 1


class UnknownIdError(KeyError):
    """An id that the memory does not hold.

    A ``KeyError`` whose message reads as written (``KeyError`` would quote it).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def to_numpy(values: Any, name: str) -> np.ndarray:
    """Convert a tensor, array or nested sequence to a numpy array without copying if possible.

    Args:
        values: A ``torch.Tensor``, ``numpy.ndarray`` or nested sequence of numbers.
        name: What the value is called in error messages.

    Returns:
        The values as a numpy array.

    Raises:
        TypeError: If ``values`` cannot be read as numbers.
    """
    if type(values) is np.ndarray and values.dtype.kind == "f":
        return values  # the common case, kept cheap: single queries are timed in microseconds
    if isinstance(values, torch.Tensor):
        tensor = values.detach()
        if tensor.is_complex():
            raise TypeError(f"{name} must be real, got a tensor of dtype {tensor.dtype}")
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()
        return np.asarray(tensor.cpu().numpy())
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be numeric (a tensor or array), got {values!r}") from error
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must be numeric (a tensor or array), got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be real, got dtype {array.dtype}")
    return array


def as_vectors(values: Any, dim: int, name: str, check_finite: bool = True) -> FloatMatrix:
    """Check and convert vectors to a C-contiguous float32 matrix of shape ``(n, dim)``.

    A single vector of shape ``(dim,)`` is read as one row.

    Args:
        values: The vectors, as a tensor, array or nested sequence.
        dim: The dimension every vector must have.
        name: What the vectors are called in error messages.
        check_finite: Refuse NaN and infinite values; a caller that detects them more cheaply
            itself (through row norms) passes ``False`` and calls ``raise_non_finite``.

    Returns:
        A float32 array of shape ``(n, dim)``.

    Raises:
        TypeError: If ``values`` is not numeric.
        ValueError: If the shape is wrong or a value is NaN or infinite.
    """
    array = to_numpy(values, name)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must have shape ({dim},) or (n, {dim}), got shape {tuple(array.shape)}"
        )
    if array.shape[1] != dim:
        raise ValueError(
            f"{name} have dimension {array.shape[1]}, this memory expects dimension {dim}"
        )
    matrix = np.ascontiguousarray(array, dtype=np.float32)
    if check_finite and not np.isfinite(matrix).all():
        raise_non_finite(matrix, name)
    return matrix


def raise_non_finite(matrix: np.ndarray, name: str) -> None:
    """Raise the error for a matrix known to hold a NaN or infinite value, naming where.

    Raises:
        ValueError: Always.
    """
    row, col = np.argwhere(~np.isfinite(matrix))[0]
    raise ValueError(
        f"{name} contain a non-finite value ({matrix[row, col]}) at row {row}, column {col}; "
        "every value must be finite"
    )


def as_ids(values: Any, name: str = "ids") -> IdArray:
    """Check and convert ids to a 1-D int64 array of values in ``[0, MAX_ID]``.

    Args:
        values: An int, or a tensor, array or sequence of ints.
        name: What the ids are called in error messages.

    Returns:
        A 1-D int64 array.

    Raises:
        TypeError: If the ids are not integers.
        ValueError: If an id is negative or above ``MAX_ID``.
    """
    if isinstance(values, bool | np.bool_):
        raise TypeError(f"{name} must be integers, got the bool {values!r}")
    array = to_numpy(values, name).reshape(-1)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be integers, got dtype {array.dtype}")
    ids = array.astype(np.int64, copy=False)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_ID):
        bad = ids[(ids < 0) | (ids > MAX_ID)][0]
        raise ValueError(f"{name} must lie in [0, {MAX_ID}], got {bad}")
    return ids


def check_k(k: Any) -> int:
    """Check that ``k``, a number of neighbours, is a positive integer.

    Raises:
        TypeError: If ``k`` is not an integer.
        ValueError: If ``k <= 0``.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be a positive integer, got {k!r} of type {type(k).__name__}")
    if k <= 0:
        raise ValueError(f"k must be a positive integer, got k={k}")
    return int(k)


def check_positive_int(value: Any, name: str) -> int:
    """Check that ``value`` is an integer greater than zero and return it.

    Raises:
        TypeError: If ``value`` is not an integer.
        ValueError: If ``value <= 0``.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {name}={value}")
    return int(value)
