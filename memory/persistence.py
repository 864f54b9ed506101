"""The on-disk format of a memory: a directory of files under a checksummed manifest.

Layout of a saved memory::

    <directory>/
        manifest.json     format name and version, memory type, dimension, metric, index kind,
                          counts, and for every other file its size and sha256
        ...               the memory's own files (numpy arrays, a faiss index, tensors, JSON)

Saves are atomic. Files go to a hidden sibling ``.<name>.tmp-<pid>-<random>``, are flushed
and fsynced, the manifest is written last, and the directory is swapped in by renames: the
previous save is renamed to ``.<name>.backup``, the new one into place, then the backup
deleted. A crash at any point leaves either the previous save or the new one loadable:
before the first rename the old directory is untouched; between the two renames ``load``
finds the backup and reads it. Nothing here unpickles: loaders read numpy arrays with
``allow_pickle=False``, tensors with ``torch.load(weights_only=True)`` and JSON.

Concurrent saves to one directory from several processes are not supported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORMAT_NAME = "lifelong-memory"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_CHUNK = 1 << 20

Writer = Callable[[Path], None]
"""Writes one file at the path it is given."""


class MemoryFormatError(ValueError):
    """A directory that is not a loadable memory: missing, corrupt or of another format."""


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest of a saved memory.

    Attributes:
        memory_type: Which class wrote it (``"task_memory"``, ``"episodic_memory"``).
        format_version: On-disk format version.
        info: The memory's own description (dimension, metric, index kind, counts, ...).
        files: For each data file, ``{"bytes": int, "sha256": str}``.
        directory: The directory it was read from (the backup, after an interrupted save).
    """

    memory_type: str
    format_version: int
    info: dict[str, Any]
    files: dict[str, dict[str, Any]]
    directory: Path


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _backup_of(target: Path) -> Path:
    return target.parent / f".{target.name}.backup"


def _is_memory_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def _recover(target: Path) -> None:
    """Finish or undo a save that a crash interrupted between its renames."""
    backup = _backup_of(target)
    if not backup.exists():
        return
    if _is_memory_dir(target):
        shutil.rmtree(backup)
    elif not target.exists():
        logger.warning("restoring %s from the backup left by an interrupted save", target)
        os.replace(backup, target)


def save_directory(
    directory: str | os.PathLike[str],
    memory_type: str,
    info: Mapping[str, Any],
    writers: Mapping[str, Writer],
) -> Manifest:
    """Write a memory atomically: every file, then the manifest, then swap the directory in.

    Args:
        directory: Where the memory lives. It may hold a previous save, which is replaced; an
            existing directory that is not a memory and not empty is refused.
        memory_type: Recorded in the manifest and checked by ``read_manifest``.
        info: JSON-serialisable description stored in the manifest.
        writers: File name (no separators) to a function writing that file at a given path.

    Returns:
        The manifest written.

    Raises:
        FileExistsError: If ``directory`` exists and is not a memory directory.
        ValueError: On a file name that is not a plain name, or ``info`` that is not JSON.
    """
    target = Path(directory)
    for name in writers:
        if name == MANIFEST or Path(name).name != name or name.startswith("."):
            raise ValueError(f"file name {name!r} must be a plain name other than {MANIFEST}")
    target.parent.mkdir(parents=True, exist_ok=True)
    _recover(target)
    if target.exists() and not _is_memory_dir(target) and (
        not target.is_dir() or any(target.iterdir())
    ):
        raise FileExistsError(
            f"{target} exists and is not a saved memory (no {MANIFEST}); refusing to overwrite "
            "it: pass a new or empty directory"
        )
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        # Left by a save that was killed; the live directory never depends on it.
        shutil.rmtree(stale, ignore_errors=True)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    backup = _backup_of(target)
    try:
        files: dict[str, dict[str, Any]] = {}
        for name, write in writers.items():
            path = staging / name
            write(path)
            _fsync_file(path)
            files[name] = {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "memory_type": memory_type,
            "info": dict(info),
            "files": files,
        }
        text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
        _write_text(staging / MANIFEST, text)
        _fsync_dir(staging)
        if target.exists():
            os.replace(target, backup)
        os.replace(staging, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.exists() and backup.exists():
            os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    return Manifest(memory_type, FORMAT_VERSION, dict(info), files, target)


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_manifest(directory: str | os.PathLike[str], memory_type: str) -> Manifest:
    """Read and check a saved memory's manifest and the checksums of all its files.

    After a save interrupted between its two renames, the previous save is read from the
    backup it left (without modifying anything on disk).

    Args:
        directory: The memory's directory.
        memory_type: The type the caller loads; another type is refused.

    Returns:
        The manifest, its ``directory`` being where the files are.

    Raises:
        FileNotFoundError: If neither the directory nor a backup of it exists.
        MemoryFormatError: If it is not a memory, another format, version or memory type, or a
            file is missing or fails its checksum.
    """
    target = Path(directory)
    source = target
    if not _is_memory_dir(target):
        backup = _backup_of(target)
        if not target.exists() and _is_memory_dir(backup):
            logger.warning("%s is missing; loading the backup left by an interrupted save",
                           target)
            source = backup
        elif not target.exists():
            raise FileNotFoundError(f"no saved memory at {target}: the directory does not exist")
        else:
            raise MemoryFormatError(
                f"{target} is not a saved memory: it has no {MANIFEST}; expected a directory "
                f"written by {memory_type} save()"
            )
    try:
        raw = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MemoryFormatError(f"{source / MANIFEST} is not valid JSON: {error}") from error
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise MemoryFormatError(
            f"{source / MANIFEST} declares format {found!r}; expected {FORMAT_NAME!r}"
        )
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise MemoryFormatError(
            f"{source} has format version {version!r}; this code reads version "
            f"{FORMAT_VERSION} (save it again with a matching version of the library)"
        )
    if raw.get("memory_type") != memory_type:
        raise MemoryFormatError(
            f"{source} holds a {raw.get('memory_type')!r}; expected a {memory_type!r}"
        )
    files = raw.get("files")
    info = raw.get("info")
    if not isinstance(files, dict) or not isinstance(info, dict):
        raise MemoryFormatError(f"{source / MANIFEST} lacks its 'files' or 'info' table")
    for name, entry in files.items():
        path = source / name
        if Path(name).name != name or not isinstance(entry, dict):
            raise MemoryFormatError(f"{source / MANIFEST} lists an invalid file entry {name!r}")
        if not path.is_file():
            raise MemoryFormatError(f"{source} is incomplete: file {name!r} is missing")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise MemoryFormatError(
                f"{path} has {size} bytes; the manifest expects {entry.get('bytes')} "
                "(the file is truncated or was modified)"
            )
        digest = sha256_of(path)
        if digest != entry.get("sha256"):
            raise MemoryFormatError(
                f"{path} fails its checksum: sha256 {digest}, the manifest expects "
                f"{entry.get('sha256')} (the file is corrupt or was modified)"
            )
    return Manifest(memory_type, FORMAT_VERSION, info, files, source)


def require_files(manifest: Manifest, names: list[str]) -> None:
    """Refuse a manifest that does not list every one of ``names``.

    Raises:
        MemoryFormatError: Naming the first missing file.
    """
    for name in names:
        if name not in manifest.files:
            raise MemoryFormatError(
                f"{manifest.directory} lists no file {name!r}; a {manifest.memory_type} "
                f"needs {sorted(names)}"
            )


def info_field(manifest: Manifest, key: str, kind: type | tuple[type, ...]) -> Any:
    """One typed field of ``manifest.info``.

    Raises:
        MemoryFormatError: If the field is missing or of the wrong type.
    """
    value = manifest.info.get(key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int to isinstance, but a flag is never a valid count or dimension.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise MemoryFormatError(
            f"{manifest.directory / MANIFEST}: field {key!r} is {value!r}; expected {kind}"
        )
    return value
