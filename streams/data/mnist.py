"""MNIST from IDX files: the official train/test split, or the test split alone."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streams.base import StreamError
from streams.data.common import TensorSplit, stratified_split

__all__ = [
    "HELD_OUT_FRACTION",
    "HELD_OUT_SEED",
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "MnistFiles",
    "find_mnist_files",
    "load_mnist",
    "read_idx",
]

IMAGES_MAGIC = 2051
"""Magic number of an IDX file of uint8 images (``idx3``)."""
LABELS_MAGIC = 2049
"""Magic number of an IDX file of uint8 labels (``idx1``)."""

HELD_OUT_SEED = 20_170_626
"""Seed of the split of the test-only MNIST into a training pool and a held-out test part.

Fixed, and independent of any run's seed, so every run tests on the same images."""
HELD_OUT_FRACTION = 0.2
"""Fraction of the test-only MNIST held out for testing (2,000 of 10,000 images)."""

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class MnistFiles:
    """Where the IDX files of one MNIST copy are.

    Attributes:
        test_images: ``t10k-images-idx3-ubyte`` (gzipped or not).
        test_labels: ``t10k-labels-idx1-ubyte``.
        train_images: ``train-images-idx3-ubyte``, or ``None`` if the copy has no train split.
        train_labels: ``train-labels-idx1-ubyte``, or ``None`` alike.
    """

    test_images: Path
    test_labels: Path
    train_images: Path | None
    train_labels: Path | None


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file of MNIST images or labels, gzipped or not.

    Args:
        path: The file.

    Returns:
        uint8 array: ``(N, rows, cols)`` for images (magic 2051), ``(N,)`` for labels
        (magic 2049).

    Raises:
        StreamError: If the file cannot be read or decompressed, has another magic number,
            or its size does not match its header.
    """
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise StreamError(
            f"cannot read MNIST IDX file {str(path)!r} ({error}); replace it with an intact copy"
        ) from error
    if len(raw) < 8:
        raise StreamError(
            f"MNIST IDX file {str(path)!r} has {len(raw)} bytes, too short for a header; "
            "replace it with an intact copy"
        )
    magic = int.from_bytes(raw[:4], "big")
    if magic == IMAGES_MAGIC:
        if len(raw) < 16:
            raise StreamError(
                f"MNIST image file {str(path)!r} has a truncated header; "
                "replace it with an intact copy"
            )
        count, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
        shape: tuple[int, ...] = (count, rows, cols)
        offset = 16
    elif magic == LABELS_MAGIC:
        shape = (int.from_bytes(raw[4:8], "big"),)
        offset = 8
    else:
        raise StreamError(
            f"{str(path)!r} is not an MNIST IDX file: magic number {magic}, expected "
            f"{IMAGES_MAGIC} (images) or {LABELS_MAGIC} (labels)"
        )
    expected = offset + int(np.prod(shape))
    if len(raw) != expected:
        raise StreamError(
            f"MNIST IDX file {str(path)!r} has {len(raw)} bytes, its header {shape} says "
            f"{expected}; replace it with an intact copy"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def find_mnist_files(data_root: Path) -> MnistFiles | None:
    """Find MNIST's IDX files under ``data_root``.

    Looks in ``data_root`` itself, in torchvision's ``data_root/MNIST/raw/``, in
    ``data_root/mnist/`` and in ``data_root/mnist/MNIST/raw/``, and takes the first folder
    holding ``t10k-images-idx3-ubyte`` (or ``.gz``).

    Args:
        data_root: The folder to search.

    Returns:
        The files found, or ``None`` if no folder holds the test images.

    Raises:
        StreamError: If a folder holds only part of a split (images without labels, or the
            other way round).
    """
    for folder in _candidate_folders(data_root):
        test_images = _idx_file(folder, "t10k-images-idx3-ubyte")
        if test_images is None:
            continue
        test_labels = _require_pair(folder, test_images, "t10k-labels-idx1-ubyte")
        train_images = _idx_file(folder, "train-images-idx3-ubyte")
        train_labels = _idx_file(folder, "train-labels-idx1-ubyte")
        if train_images is not None:
            train_labels = _require_pair(folder, train_images, "train-labels-idx1-ubyte")
        elif train_labels is not None:
            _require_pair(folder, train_labels, "train-images-idx3-ubyte")
        return MnistFiles(test_images, test_labels, train_images, train_labels)
    return None


def load_mnist(data_root: Path, *, download: bool = False) -> TensorSplit:
    """Load MNIST as tensors.

    With the official train split present, it is the training part and ``t10k`` the test
    part. With only ``t10k`` present, its 10,000 images are split, stratified by class with
    the fixed seed ``HELD_OUT_SEED``, into a training pool of 8,000 and a held-out test part
    of 2,000; the split is the same in every run, whatever the run's seed.

    Args:
        data_root: Folder holding the IDX files (see ``find_mnist_files`` for where it looks).
        download: If the files are missing, let torchvision fetch the full data set into
            ``data_root/MNIST/raw/`` (needs a network).

    Returns:
        Images as float32 in ``[0, 1]``, shape ``(N, 1, 28, 28)``; labels int64 in 0-9.

    Raises:
        StreamError: If no files are found (and ``download`` is off or fails), or a file is
            malformed.
    """
    data_root = Path(data_root)
    files = find_mnist_files(data_root)
    if files is None and download:
        _download(data_root)
        files = find_mnist_files(data_root)
    if files is None:
        raise StreamError(
            f"no MNIST IDX files under {str(data_root)!r} (looked for "
            "t10k-images-idx3-ubyte[.gz] in it, in MNIST/raw/ and in mnist/); pass --data-root "
            "pointing at them (e.g. ../shared/data/mnist) or --download"
        )
    x_test, y_test = _read_pair(files.test_images, files.test_labels)
    if files.train_images is not None and files.train_labels is not None:
        x_train, y_train = _read_pair(files.train_images, files.train_labels)
        if x_train.shape[1:] != x_test.shape[1:]:
            raise StreamError(
                f"MNIST train images are {x_train.shape[1:]} but test images are "
                f"{x_test.shape[1:]}; use files from one copy of the data set"
            )
    else:
        train_index, test_index = stratified_split(y_test.numpy(), HELD_OUT_FRACTION, HELD_OUT_SEED)
        pool_index, held_index = torch.from_numpy(train_index), torch.from_numpy(test_index)
        x_train, y_train = x_test[pool_index], y_test[pool_index]
        x_test, y_test = x_test[held_index], y_test[held_index]
    return TensorSplit(x_train, y_train, x_test, y_test, tuple(str(d) for d in range(10)))


def _candidate_folders(data_root: Path) -> tuple[Path, ...]:
    return (
        data_root,
        data_root / "MNIST" / "raw",
        data_root / "mnist",
        data_root / "mnist" / "MNIST" / "raw",
    )


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _require_pair(folder: Path, found: Path, stem: str) -> Path:
    partner = _idx_file(folder, stem)
    if partner is None:
        raise StreamError(
            f"found {str(found)!r} but no {stem}[.gz] beside it in {str(folder)!r}; "
            "put both files of the split in the same folder"
        )
    return partner


def _read_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise StreamError(
            f"{str(images_path)!r} holds labels (magic {LABELS_MAGIC}), not images; "
            "check the file names"
        )
    if labels.ndim != 1:
        raise StreamError(
            f"{str(labels_path)!r} holds images (magic {IMAGES_MAGIC}), not labels; "
            "check the file names"
        )
    if len(images) != len(labels):
        raise StreamError(
            f"{str(images_path)!r} has {len(images)} images but {str(labels_path)!r} has "
            f"{len(labels)} labels; use files from one copy of the data set"
        )
    if len(labels) and int(labels.max()) > 9:
        raise StreamError(
            f"{str(labels_path)!r} has label {int(labels.max())}; MNIST labels are 0-9"
        )
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def _download(data_root: Path) -> None:
    from torchvision.datasets import MNIST

    try:
        for train in (True, False):
            MNIST(str(data_root), train=train, download=True)
    except (OSError, RuntimeError) as error:
        raise StreamError(
            f"could not download MNIST into {str(data_root)!r} ({error}); check the network, "
            "or fetch the IDX files yourself and pass --data-root"
        ) from error
