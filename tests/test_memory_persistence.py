"""The on-disk format: atomic saves that survive failures and killed processes, and loads that
refuse corrupt, mismatched or foreign directories with a clear error."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import memory.persistence
from memory import FORMAT_VERSION, EpisodicMemory, MemoryFormatError, TaskMemory, TaskRecord

REPO = Path(__file__).resolve().parents[1]

BUILD = """
import torch
from memory import TaskMemory, TaskRecord

def build(n):
    generator = torch.Generator().manual_seed(0)
    memory = TaskMemory(8)
    for i in range(n):
        memory.add(torch.randn(8, generator=generator),
                   TaskRecord({"w": torch.full((4,), float(i))}, {"name": f"t{i}"}))
    return memory
"""
namespace: dict = {}
exec(BUILD, namespace)
build = namespace["build"]


def assert_is_the_first_save(directory: Path) -> None:
    loaded = TaskMemory.load(directory)
    expected = build(5)
    assert loaded.task_ids() == [0, 1, 2, 3, 4]
    queries = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.search(queries, 5).ids, expected.search(queries, 5).ids)
    assert loaded.get(4).metadata == {"name": "t4"}


def run_save_that_dies(directory: Path, hook: str, *, wait_for: str | None = None) -> int:
    """Save 5 tasks, then in the same process start saving 8 tasks with ``hook`` installed."""
    script = BUILD + textwrap.dedent(f"""
        import os, sys, time
        import memory.persistence as persistence
        build(5).save({str(directory)!r})
        second = build(8)
    """) + textwrap.dedent(hook) + f"\nsecond.save({str(directory)!r})\nsys.exit(0)\n"
    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    if wait_for is not None:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == wait_for, f"subprocess said {line!r}"
        os.kill(process.pid, signal.SIGKILL)
    return process.wait(timeout=120)


def test_a_process_exiting_mid_save_leaves_the_previous_save(tmp_path):
    directory = tmp_path / "tasks"
    code = run_save_that_dies(directory, """
        calls = []
        real = persistence._fsync_file
        def dying_fsync(path):
            calls.append(path)
            if len(calls) == 3:  # the third file is written, not yet synced
                os._exit(7)
            real(path)
        persistence._fsync_file = dying_fsync
    """)
    assert code == 7
    assert any(p.name.startswith(".tasks.tmp-") for p in tmp_path.iterdir())
    assert_is_the_first_save(directory)
    build(6).save(directory)  # the next save clears the leftover staging directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks"]


def test_a_process_killed_by_sigkill_mid_write_leaves_the_previous_save(tmp_path):
    directory = tmp_path / "tasks"
    code = run_save_that_dies(directory, """
        real = torch.save
        def slow_save(obj, path):
            with open(path, "wb") as handle:
                handle.write(b"half a file")
            print("writing", flush=True)
            time.sleep(120)
        torch.save = slow_save
    """, wait_for="writing")
    assert code == -signal.SIGKILL
    assert_is_the_first_save(directory)


def test_a_process_killed_between_the_renames_leaves_a_loadable_backup(tmp_path):
    directory = tmp_path / "tasks"
    code = run_save_that_dies(directory, """
        real = os.replace
        def replace_then_die(source, target):
            real(source, target)  # the old save becomes the backup ...
            os._exit(9)           # ... and the new one never moves into place
        persistence.os.replace = replace_then_die
    """)
    assert code == 9
    assert not directory.exists() and (tmp_path / ".tasks.backup").is_dir()
    assert_is_the_first_save(directory)
    build(6).save(directory)
    assert TaskMemory.load(directory).task_ids() == list(range(6))
    assert not (tmp_path / ".tasks.backup").exists()


def test_an_exception_mid_save_keeps_the_previous_save_and_cleans_up(tmp_path, monkeypatch):
    directory = tmp_path / "tasks"
    build(5).save(directory)

    def disk_full(obj, path):
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        build(8).save(directory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks"]
    assert_is_the_first_save(directory)


def test_a_failure_after_the_backup_rename_restores_the_previous_save(tmp_path, monkeypatch):
    directory = tmp_path / "tasks"
    build(5).save(directory)
    real = os.replace
    calls = []

    def second_rename_fails(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError("rename failed")
        real(source, target)

    monkeypatch.setattr(memory.persistence.os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="rename failed"):
        build(8).save(directory)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks"]
    assert_is_the_first_save(directory)


def test_manifest_records_version_dimension_metric_kind_counts_and_checksums(tmp_path):
    build(5).save(tmp_path / "tasks")
    manifest = json.loads((tmp_path / "tasks" / "manifest.json").read_text())
    assert manifest["format"] == "lifelong-memory"
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["memory_type"] == "task_memory"
    info = manifest["info"]
    assert (info["dim"], info["metric"], info["index_kind"]) == (8, "cosine", "auto")
    assert info["counts"] == {"tasks": 5, "next_id": 5}
    for name, entry in manifest["files"].items():
        data = (tmp_path / "tasks" / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert {"tensors.pt", "metadata.json", "index_vectors.npy"} <= set(manifest["files"])


def saved(tmp_path: Path) -> Path:
    directory = tmp_path / "tasks"
    build(5).save(directory)
    return directory


def rewrite_manifest(directory: Path, change) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def reseal(directory: Path, name: str) -> None:
    """Recompute one file's checksum, as a forger would, to reach the checks behind it."""
    data = (directory / name).read_bytes()

    def change(manifest):
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    rewrite_manifest(directory, change)


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


class Harmless:
    """Pickles to a call of ``os.getcwd``: a stand-in for arbitrary code."""

    def __reduce__(self):
        return (os.getcwd, ())


def corrupt_checksum(d: Path) -> None:
    flip_a_byte(d / "index_vectors.npy")


def truncate(d: Path) -> None:
    (d / "tensors.pt").write_bytes((d / "tensors.pt").read_bytes()[:10])


def delete_a_file(d: Path) -> None:
    (d / "metadata.json").unlink()


def newer_version(d: Path) -> None:
    rewrite_manifest(d, lambda m: m.update(format_version=99))


def other_format(d: Path) -> None:
    rewrite_manifest(d, lambda m: m.update(format="something-else"))


def not_json(d: Path) -> None:
    (d / "manifest.json").write_text("{not json")


def missing_manifest(d: Path) -> None:
    (d / "manifest.json").unlink()


def wrong_dimension(d: Path) -> None:
    rewrite_manifest(d, lambda m: m["info"].update(dim=9))


def wrong_counts(d: Path) -> None:
    rewrite_manifest(d, lambda m: m["info"]["counts"].update(tasks=4))


def pickled_code(d: Path) -> None:
    with open(d / "tensors.pt", "wb") as handle:
        pickle.dump({"0": Harmless()}, handle)
    reseal(d, "tensors.pt")


def object_array(d: Path) -> None:
    with open(d / "index_row_ids.npy", "wb") as handle:
        import numpy as np

        np.save(handle, np.array([Harmless()], dtype=object), allow_pickle=True)
    reseal(d, "index_row_ids.npy")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (corrupt_checksum, "index_vectors.npy fails its checksum"),
        (truncate, "tensors.pt has 10 bytes; the manifest expects"),
        (delete_a_file, "incomplete: file 'metadata.json' is missing"),
        (newer_version, "format version 99; this code reads version 1"),
        (other_format, "declares format 'something-else'; expected 'lifelong-memory'"),
        (not_json, "manifest.json is not valid JSON"),
        (missing_manifest, "is not a saved memory: it has no manifest.json"),
        (wrong_dimension, r"expected \(5, 9\)"),
        (wrong_counts, "must agree"),
        (pickled_code, "cannot read the task records"),
        (object_array, "is not a numpy array"),
    ],
)
def test_damaged_directories_are_refused(tmp_path, damage, message):
    directory = saved(tmp_path)
    damage(directory)
    with pytest.raises(MemoryFormatError, match=message):
        TaskMemory.load(directory)


def test_foreign_and_missing_directories_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TaskMemory.load(tmp_path / "nowhere")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(MemoryFormatError, match="photos is not a saved memory"):
        TaskMemory.load(foreign)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        build(2).save(foreign)
    assert (foreign / "cat.jpg").read_bytes() == b"meow"
    empty = tmp_path / "empty"
    empty.mkdir()
    build(2).save(empty)  # an empty directory is fine to save into
    episodic = EpisodicMemory(4)
    episodic.save(tmp_path / "episodic")
    with pytest.raises(MemoryFormatError, match="'episodic_memory'; expected a 'task_memory'"):
        TaskMemory.load(tmp_path / "episodic")
    with pytest.raises(MemoryFormatError, match="holds a 'task_memory'"):
        EpisodicMemory.load(empty)


def test_a_damaged_episodic_memory_is_refused(tmp_path):
    memory = EpisodicMemory(10, feature_dim=3)
    memory.add_batch(torch.zeros(4, 2), [0, 1, 2, 3], 0, torch.randn(4, 3))
    memory.save(tmp_path / "episodic")
    flip_a_byte(tmp_path / "episodic" / "samples.pt")
    with pytest.raises(MemoryFormatError, match="samples.pt fails its checksum"):
        EpisodicMemory.load(tmp_path / "episodic")
    memory.save(tmp_path / "episodic")
    rewrite_manifest(tmp_path / "episodic", lambda m: m["info"]["counts"].update(size=3))
    with pytest.raises(MemoryFormatError, match="disagrees with the manifest"):
        EpisodicMemory.load(tmp_path / "episodic")
    memory.save(tmp_path / "episodic")
    rewrite_manifest(tmp_path / "episodic", lambda m: m["info"].update(policy="nonexistent"))
    with pytest.raises(MemoryFormatError, match="unknown policy 'nonexistent'"):
        EpisodicMemory.load(tmp_path / "episodic")


def test_records_with_every_tensor_dtype_survive_byte_for_byte(tmp_path):
    tensors = {
        str(dtype): torch.arange(6).to(dtype).reshape(2, 3)
        for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8,
                      torch.uint8, torch.int64, torch.bool)
    }
    tensors["view"] = torch.arange(100.0)[10:14]  # a view must not drag its whole storage
    memory = TaskMemory(2)
    memory.add([1.0, 0.0], TaskRecord(tensors, {"k": [1, 2]}))
    memory.save(tmp_path / "m")
    loaded = TaskMemory.load(tmp_path / "m").get(0)
    for name, tensor in tensors.items():
        assert loaded.tensors[name].dtype == tensor.dtype
        assert loaded.tensors[name].untyped_storage().nbytes() == tensor.numel() * (
            tensor.element_size()
        )
        assert torch.equal(loaded.tensors[name], tensor)
