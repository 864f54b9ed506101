"""Data sets that need no data root: scikit-learn's 8x8 digits and generated MNIST-1D."""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from streams.data.common import TensorSplit, stratified_split

__all__ = [
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_FRACTION",
    "MNIST1D_SAMPLES",
    "MNIST1D_SEED",
    "load_digits",
    "load_mnist1d",
]

DIGITS_SPLIT_SEED = 1_797
"""Fixed seed of the stratified train/test split of the digits."""
DIGITS_TEST_FRACTION = 0.2
"""Fraction of the 1,797 digits held out for testing (359)."""
MNIST1D_SAMPLES = 5_000
"""Examples generated for MNIST-1D: 4,000 training and 1,000 test (mnist1d's 80/20 split)."""
MNIST1D_SEED = 42
"""Seed of MNIST-1D's generator (mnist1d's own default, so the data match the paper's)."""


def load_digits() -> TensorSplit:
    """Load scikit-learn's bundled 8x8 handwritten digits (no file, no network).

    Returns:
        1,438 training and 359 test images, float32 in ``[0, 1]`` (the 0-16 grey levels
        divided by 16), shape ``(N, 1, 8, 8)``; labels 0-9. The split is stratified by
        class with the fixed seed ``DIGITS_SPLIT_SEED``.
    """
    images, labels = _digits_arrays()
    train, test = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    # Fancy indexing copies, so the cached read-only arrays are never handed out.
    return TensorSplit(
        torch.from_numpy(images[train]),
        torch.from_numpy(labels[train]),
        torch.from_numpy(images[test]),
        torch.from_numpy(labels[test]),
        _DIGIT_NAMES,
    )


def load_mnist1d() -> TensorSplit:
    """Generate MNIST-1D locally with the ``mnist1d`` package (never its download path).

    The data are mnist1d's defaults (5,000 examples, seed 42, 80/20 split), so they are
    the same in every run and match the published data set's recipe. mnist1d seeds
    NumPy's and Python's global generators; their states are restored afterwards.

    Returns:
        4,000 training and 1,000 test signals, float32, shape ``(N, 1, 40)``, standardised
        by mnist1d (mean 0, standard deviation 1 over the data set); labels 0-9.
    """
    x_train, y_train, x_test, y_test = _mnist1d_arrays()
    return TensorSplit(
        torch.from_numpy(x_train.copy()),
        torch.from_numpy(y_train.copy()),
        torch.from_numpy(x_test.copy()),
        torch.from_numpy(y_test.copy()),
        _DIGIT_NAMES,
    )


_DIGIT_NAMES = tuple(str(digit) for digit in range(10))


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = (np.asarray(bunch.images, np.float32) / 16.0)[:, None]
    labels = np.asarray(bunch.target, np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = MNIST1D_SAMPLES
    args.seed = MNIST1D_SEED
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    arrays = (
        np.asarray(data["x"], np.float32)[:, None],
        np.asarray(data["y"], np.int64),
        np.asarray(data["x_test"], np.float32)[:, None],
        np.asarray(data["y_test"], np.int64),
    )
    for array in arrays:
        array.flags.writeable = False
    return arrays
