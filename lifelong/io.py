"""Atomic file writes: a reader sees the old file or the complete new one, never a torn one.

Each write goes to a temporary file in the target's own folder (so the final rename stays on
one file system), is flushed to disk with ``fsync``, and is moved over the target with
``os.replace``, which is atomic on POSIX and Windows. If anything fails, the temporary file
is removed and whatever was at the target before is left as it was.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_folder", "atomic_path", "atomic_write_bytes", "atomic_write_text"]

StrPath = str | os.PathLike[str]


@contextmanager
def atomic_path(path: StrPath) -> Iterator[Path]:
    """Yield a temporary path to write to; move it onto ``path`` only if the block succeeds.

    For writers that want a file name rather than data, such as
    ``figure.savefig(tmp, format="png")``. The temporary file already exists (empty) when
    the block starts; the block may overwrite it.

    Args:
        path: The final destination. Its folder must exist.

    Yields:
        A path in the same folder as ``path``, named ``.{name}.{random}.tmp``.

    Raises:
        FileNotFoundError: If the folder of ``path`` does not exist.
    """
    target = Path(path)
    tmp = _create_temp(target)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: StrPath, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, replacing any earlier file.

    Args:
        path: The destination. Its folder must exist.
        data: The complete new contents.

    Raises:
        TypeError: If ``data`` is not bytes-like.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}; encode text first")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: StrPath, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, replacing any earlier file.

    Newlines are written as given, with no translation on any platform, so outputs are identical
    across machines.

    Args:
        path: The destination. Its folder must exist.
        text: The complete new contents.
        encoding: Text encoding.

    Raises:
        TypeError: If ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    atomic_write_bytes(path, text.encode(encoding))


@contextmanager
def atomic_folder(path: StrPath) -> Iterator[Path]:
    """Yield an empty temporary folder; swap it in for ``path`` only if the block succeeds.

    An earlier folder at ``path`` is renamed aside, the new one renamed into place, then the
    old one deleted; a failed block leaves the earlier folder as it was.

    Args:
        path: The final folder. Its parent is created if missing.

    Yields:
        A folder beside ``path``, named ``.{name}.{random}.tmp``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.{secrets.token_hex(6)}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _create_temp(target: Path) -> Path:
    # os.open with mode 0o666 lets the process umask decide the permissions, as a plain
    # open() would; tempfile.mkstemp would force 0o600 onto the final file.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable. Windows cannot open a folder for fsync; there the
    # rename is all we can do.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
