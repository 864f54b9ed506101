"""What every loader shares: the data-root rule, the split record, a stratified split."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streams.base import StreamError

__all__ = [
    "DATA_ROOT_ENV",
    "DEFAULT_DATA_ROOT",
    "IMAGE_SUFFIXES",
    "TensorSplit",
    "resolve_data_root",
    "stratified_split",
]

DATA_ROOT_ENV = "LIFELONG_DATA_ROOT"
"""Environment variable naming the data root when a stream is given none."""

DEFAULT_DATA_ROOT = Path("data")
"""Data root, relative to the working directory, when neither the spec nor the environment
names one."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
"""File suffixes (lower case) read as images."""


@dataclass(frozen=True)
class TensorSplit:
    """One labelled data set as tensors, split into a training and a test part.

    Attributes:
        x_train: Training inputs, float32, shape ``(N, *input_shape)``.
        y_train: Training labels, int64, shape ``(N,)``, in ``[0, n_classes)``.
        x_test: Test inputs, float32, shape ``(M, *input_shape)``.
        y_test: Test labels, int64, shape ``(M,)``.
        class_names: Name of each class, indexed by label.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, without the batch dimension."""
        return tuple(self.x_train.shape[1:])


def resolve_data_root(data_root: Path | str | None) -> Path:
    """Pick the folder a stream reads its data from.

    Args:
        data_root: The folder the user named, or ``None``.

    Returns:
        ``data_root`` if given; else the folder in the environment variable
        ``LIFELONG_DATA_ROOT`` if set and non-empty; else ``./data``.
    """
    if data_root is not None:
        return Path(data_root).expanduser()
    from_environment = os.environ.get(DATA_ROOT_ENV, "")
    if from_environment:
        return Path(from_environment).expanduser()
    return DEFAULT_DATA_ROOT


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split example indices into a training and a test part with the same class mix.

    The test part holds ``round(test_fraction * len(labels))`` examples, shared among the
    classes in proportion to their counts (largest remainders get the leftover examples,
    ties to the smaller label). Which examples go to test is drawn from ``seed`` alone.

    Args:
        labels: Integer labels, shape ``(N,)``.
        test_fraction: Fraction of examples in the test part, in ``(0, 1)``.
        seed: Seed of the draw; the same seed gives the same split.

    Returns:
        Sorted training indices and sorted test indices; together they cover
        ``range(N)`` once.

    Raises:
        StreamError: If ``test_fraction`` is not in ``(0, 1)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise StreamError(f"test_fraction is {test_fraction}; pass a number in (0, 1)")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    n_test = round(test_fraction * len(labels))
    quotas = counts * (n_test / len(labels)) if len(labels) else counts * 0.0
    per_class = np.floor(quotas).astype(np.int64)
    leftover = n_test - int(per_class.sum())
    # Stable sort on the negated remainders: largest first, ties to the smaller label.
    for position in np.argsort(-(quotas - per_class), kind="stable")[:leftover]:
        per_class[position] += 1
    rng = np.random.default_rng(seed)
    test_parts = []
    for label, quota in zip(classes, per_class, strict=True):
        members = np.flatnonzero(labels == label)
        test_parts.append(rng.permutation(members)[:quota])
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(len(labels)), test, assume_unique=True)
    return train.astype(np.int64), test.astype(np.int64)
