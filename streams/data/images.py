"""Any folder of images in the layout ``<root>/<class>/<image>``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from streams.base import StreamError
from streams.data.common import IMAGE_SUFFIXES, TensorSplit

__all__ = ["IMAGE_FOLDER_TEST_FRACTION", "load_image_folder"]

IMAGE_FOLDER_TEST_FRACTION = 0.2
"""Fraction of each class's images (the last ones by sorted file name) held out for testing."""


def load_image_folder(root: Path, *, image_size: int = 28, channels: int = 1) -> TensorSplit:
    """Load ``<root>/<class>/<image>`` as a labelled data set.

    Classes are the subfolders holding images, sorted by name (hidden ones skipped). Each
    class's images, sorted by file name, are split the same way every time: the last
    ``round(0.2 * n)`` (at least one) are test, the others training. Images are resized to
    a square (without keeping the aspect ratio) and scaled to ``[0, 1]``.

    Args:
        root: The folder of class folders.
        image_size: Side of the square images after resizing (bilinear).
        channels: 1 for grayscale, 3 for RGB.

    Returns:
        Images as float32, shape ``(N, channels, image_size, image_size)``.

    Raises:
        StreamError: If the folder is missing, has no class folders with images, a class
            has fewer than two images, or an image cannot be decoded.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise StreamError(f"image_size is {image_size!r}; pass a positive integer such as 28")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise StreamError(f"channels is {channels!r}; pass 1 (grayscale) or 3 (RGB)")
    root = Path(root)
    if not root.is_dir():
        raise StreamError(
            f"image folder {str(root)!r} does not exist; pass --data-root pointing at a "
            "folder laid out as <class>/<image>"
        )
    classes = {
        folder.name: files
        for folder in sorted(root.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
        for files in [_images_in(folder)]
        if files
    }
    if not classes:
        raise StreamError(
            f"no class folders with images in {str(root)!r}; lay it out as "
            f"<class>/<image> with one of {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    mode = "L" if channels == 1 else "RGB"
    parts: dict[bool, tuple[list[np.ndarray], list[int]]] = {False: ([], []), True: ([], [])}
    for label, (name, files) in enumerate(classes.items()):
        if len(files) < 2:
            raise StreamError(
                f"class {name!r} in {str(root)!r} has {len(files)} image; each class needs at "
                "least 2 (one for training, one for testing)"
            )
        n_test = max(1, round(IMAGE_FOLDER_TEST_FRACTION * len(files)))
        for index, path in enumerate(files):
            images, labels = parts[index >= len(files) - n_test]
            images.append(_read_image(path, mode, image_size))
            labels.append(label)
    (x_train, y_train), (x_test, y_test) = (_stack(*parts[False]), _stack(*parts[True]))
    return TensorSplit(x_train, y_train, x_test, y_test, tuple(classes))


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not path.name.startswith(".")
    )


def _read_image(path: Path, mode: str, image_size: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            converted = image.convert(mode)
    except (OSError, ValueError) as error:
        raise StreamError(
            f"cannot decode image {str(path)!r} ({error}); replace or remove it"
        ) from error
    if converted.size != (image_size, image_size):
        converted = converted.resize((image_size, image_size), Image.Resampling.BILINEAR)
    array = np.asarray(converted, np.float32) / 255.0
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _stack(images: list[np.ndarray], labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)
