"""Loaders of real data for the built-in streams: pure functions returning tensors.

Every loader returns a ``TensorSplit`` (training and test tensors plus class names) and
raises ``StreamError`` with a one-line message naming the path and the fix when data are
missing or malformed. None of them downloads unless asked (``download=True``).

Where data live: a stream's ``StreamSpec.data_root`` when given; else the folder in the
environment variable ``LIFELONG_DATA_ROOT``; else ``./data`` (see ``resolve_data_root``).
"""

from streams.data.bundled import load_digits, load_mnist1d
from streams.data.common import (
    DATA_ROOT_ENV,
    IMAGE_SUFFIXES,
    TensorSplit,
    resolve_data_root,
    stratified_split,
)
from streams.data.images import load_image_folder
from streams.data.mnist import MnistFiles, find_mnist_files, load_mnist, read_idx
from streams.data.omniglot import OmniglotSource, alphabet_classes, find_omniglot, load_omniglot

__all__ = [
    "DATA_ROOT_ENV",
    "IMAGE_SUFFIXES",
    "MnistFiles",
    "OmniglotSource",
    "TensorSplit",
    "alphabet_classes",
    "find_mnist_files",
    "find_omniglot",
    "load_digits",
    "load_image_folder",
    "load_mnist",
    "load_mnist1d",
    "load_omniglot",
    "read_idx",
    "resolve_data_root",
    "stratified_split",
]
