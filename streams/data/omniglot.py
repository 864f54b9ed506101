"""Omniglot from a zip file or a folder of ``<Alphabet>/<character>/<drawing>.png``."""

from __future__ import annotations

import functools
import io
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from streams.base import StreamError
from streams.data.common import TensorSplit

__all__ = [
    "OMNIGLOT_TEST_DRAWINGS",
    "OmniglotSource",
    "alphabet_classes",
    "drawing_array",
    "find_omniglot",
    "load_omniglot",
]

OMNIGLOT_TEST_DRAWINGS = 5
"""Drawings per character held out for testing: the last 5 of 20 by sorted file name."""


@dataclass(frozen=True)
class OmniglotSource:
    """Where an Omniglot copy is.

    Attributes:
        path: A zip file, or a folder whose subfolders are alphabets.
        is_zip: Whether ``path`` is a zip file.
    """

    path: Path
    is_zip: bool


def find_omniglot(data_root: Path) -> OmniglotSource | None:
    """Find an Omniglot copy under ``data_root``.

    ``data_root`` may be the zip file itself; a folder of alphabets; a folder holding
    torchvision's ``omniglot-py/images_background/``, an extracted ``images_background*/``
    folder, or exactly one zip file; or a parent folder holding any of those in
    ``omniglot/``. An extracted folder wins over a zip beside it.

    Args:
        data_root: Where to look.

    Returns:
        The copy found, or ``None``.

    Raises:
        StreamError: If a folder holds several zip files and no extracted copy, so the
            choice would be a guess.
    """
    data_root = Path(data_root)
    if data_root.is_file() and data_root.suffix.lower() == ".zip":
        return OmniglotSource(data_root, is_zip=True)
    for base in (data_root, data_root / "omniglot"):
        if not base.is_dir():
            continue
        folders = [base, base / "omniglot-py" / "images_background"]
        folders += sorted(path for path in base.glob("images_background*") if path.is_dir())
        for folder in folders:
            if _has_alphabets(folder):
                return OmniglotSource(folder, is_zip=False)
        zips = sorted(path for path in base.glob("*.zip") if path.is_file())
        if len(zips) == 1:
            return OmniglotSource(zips[0], is_zip=True)
        if len(zips) > 1:
            names = ", ".join(path.name for path in zips)
            raise StreamError(
                f"{str(base)!r} holds several zip files ({names}); pass the one to use "
                "as the data root"
            )
    return None


def load_omniglot(
    data_root: Path,
    *,
    image_size: int = 28,
    invert: bool = True,
    download: bool = False,
) -> TensorSplit:
    """Load Omniglot's characters as classes.

    Classes are the characters, ordered by alphabet then character folder name; class
    ``c`` is named ``"<Alphabet>/<character>"``. The drawings of each character, sorted by
    file name, are split the same way every time: the last ``OMNIGLOT_TEST_DRAWINGS`` (5
    of 20) are test, the others (15) training. Decoded images are kept in memory for the
    rest of the process, keyed by the source's path, size and time stamp.

    Args:
        data_root: The copy or a folder holding it (see ``find_omniglot``).
        image_size: Side of the square images after resizing from 105x105 (box filter).
        invert: If true, strokes are 1 and the background 0 (like MNIST); if false,
            the files' own black-on-white (strokes 0, background 1).
        download: If nothing is found, let torchvision fetch the background set into
            ``data_root/omniglot-py/`` (needs a network).

    Returns:
        Images as float32 in ``[0, 1]``, shape ``(N, 1, image_size, image_size)``.

    Raises:
        StreamError: If no copy is found, a file is not a readable image, or a character
            has too few drawings for the split.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise StreamError(f"image_size is {image_size!r}; pass a positive integer such as 28")
    data_root = Path(data_root)
    source = find_omniglot(data_root)
    if source is None and download:
        _download(data_root)
        source = find_omniglot(data_root)
    if source is None:
        raise StreamError(
            f"no Omniglot under {str(data_root)!r} (looked for a zip file, "
            "<Alphabet>/<character>/*.png folders, omniglot-py/images_background/ and "
            "omniglot/ in it); pass --data-root pointing at them "
            "(e.g. ../shared/data/omniglot) or --download"
        )
    stat = source.path.stat()
    images, labels, is_test, names = _decoded(
        str(source.path.resolve()), source.is_zip, stat.st_mtime_ns, stat.st_size, image_size
    )
    if invert:
        images = 1.0 - images
    # Mask indexing copies, so the cached read-only arrays are never handed out.
    return TensorSplit(
        torch.from_numpy(images[~is_test]),
        torch.from_numpy(labels[~is_test]),
        torch.from_numpy(images[is_test]),
        torch.from_numpy(labels[is_test]),
        names,
    )


def alphabet_classes(data: TensorSplit) -> dict[str, list[int]]:
    """The class labels of each alphabet, in label order, from ``load_omniglot``'s names."""
    alphabets: dict[str, list[int]] = {}
    for label, class_name in enumerate(data.class_names):
        alphabets.setdefault(class_name.split("/")[0], []).append(label)
    return alphabets


def _has_alphabets(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    return any(path.suffix.lower() == ".png" for path in folder.glob("*/*/*"))


@functools.lru_cache(maxsize=8)
def _decoded(
    path: str, is_zip: bool, mtime_ns: int, size: int, image_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    del mtime_ns, size  # part of the cache key only: a changed file is decoded again
    if is_zip:
        try:
            with zipfile.ZipFile(path) as archive:
                members = _group(archive.namelist(), path)
                images = _decode_all(members, archive.read, image_size)
        except (zipfile.BadZipFile, OSError) as error:
            raise StreamError(
                f"cannot read Omniglot zip {path!r} ({error}); replace it with an intact copy"
            ) from error
    else:
        folder = Path(path)
        relative = [p.relative_to(folder).as_posix() for p in folder.glob("*/*/*")]
        members = _group(relative, path)
        images = _decode_all(members, lambda name: (folder / name).read_bytes(), image_size)
    labels = np.concatenate(
        [np.full(len(files), label, np.int64) for label, files in enumerate(members.values())]
    )
    is_test = np.concatenate(
        [np.arange(len(files)) >= len(files) - OMNIGLOT_TEST_DRAWINGS for files in members.values()]
    )
    names = tuple(f"{alphabet}/{character}" for alphabet, character in members)
    for array in (images, labels, is_test):
        array.flags.writeable = False
    return images, labels, is_test, names


def _group(names: Iterable[str], source: str) -> dict[tuple[str, str], list[str]]:
    """Group PNG paths by (alphabet, character), both sorted, files sorted within."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name in names:
        parts = PurePosixPath(name).parts
        if (
            len(parts) < 3
            or PurePosixPath(name).suffix.lower() != ".png"
            or any(part.startswith((".", "__MACOSX")) for part in parts)
        ):
            continue
        groups.setdefault((parts[-3], parts[-2]), []).append(name)
    if not groups:
        raise StreamError(
            f"no <Alphabet>/<character>/*.png drawings in {source!r}; check that it is Omniglot"
        )
    minimum = OMNIGLOT_TEST_DRAWINGS + 1
    for key in groups:
        if len(groups[key]) < minimum:
            raise StreamError(
                f"Omniglot character {'/'.join(key)!r} in {source!r} has "
                f"{len(groups[key])} drawings; each needs at least {minimum} "
                f"({OMNIGLOT_TEST_DRAWINGS} are held out for testing)"
            )
    return {key: sorted(groups[key]) for key in sorted(groups)}


def _decode_all(
    members: dict[tuple[str, str], list[str]], read: Callable[[str], bytes], image_size: int
) -> np.ndarray:
    names = [name for files in members.values() for name in files]
    images = np.empty((len(names), 1, image_size, image_size), np.float32)
    for index, name in enumerate(names):
        try:
            with Image.open(io.BytesIO(read(name))) as image:
                gray = image.convert("L")
        except (OSError, ValueError) as error:
            raise StreamError(
                f"cannot decode Omniglot drawing {name!r} ({error}); replace the file"
            ) from error
        images[index, 0] = drawing_array(gray, image_size)
    return images


def drawing_array(image: Image.Image, image_size: int = 28) -> np.ndarray:
    """A drawing as the loader reads it: grey levels in ``[0, 1]``, box-resized to a square.

    Args:
        image: Any PIL image; it is converted to grey levels.
        image_size: Side of the result.

    Returns:
        ``(image_size, image_size)`` float32, 1 where the file is white (not yet inverted).
    """
    gray = image.convert("L")
    if gray.size != (image_size, image_size):
        gray = gray.resize((image_size, image_size), Image.Resampling.BOX)
    return np.asarray(gray, np.float32) / 255.0


def _download(data_root: Path) -> None:
    from torchvision.datasets import Omniglot

    try:
        Omniglot(str(data_root), background=True, download=True)
    except (OSError, RuntimeError) as error:
        raise StreamError(
            f"could not download Omniglot into {str(data_root)!r} ({error}); check the "
            "network, or fetch images_background.zip yourself and pass --data-root"
        ) from error
