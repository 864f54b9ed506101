"""Checkpoint and resume: a run stopped after any experience ends as an uninterrupted one."""

import importlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lifelong import RunConfig, StreamConfig, TrainConfig, run
from lifelong.checkpoint import CheckpointError, CheckpointPlugin, JobFiles, prepare_folder
from lifelong.cli import main
from lifelong.run import resume
from memory.index import VectorIndex

REPO = Path(__file__).resolve().parents[1]
# The package exports a function named ``run`` over its module of the same name.
run_module = importlib.import_module("lifelong.run")

TINY = RunConfig(
    stream=StreamConfig(name="split-digits", n_tasks=3),
    agents=("replay", "lifelong"),
    seeds=(0,),
    train=TrainConfig(epochs=1, memory_size=60),
    checkpoint_every_s=0.0,
)


class SimulatedKillError(Exception):
    """Stands in for a kill: raised right after a checkpoint is written."""


def _measured(results: dict) -> list[dict]:
    """Everything but timing and RAM, which legitimately differ between runs."""
    return [
        {key: value for key, value in record.items() if "time" not in key and "ram" not in key}
        for record in results["runs"]
    ]


def _kill_after(monkeypatch: pytest.MonkeyPatch, agent: str, experiences: int) -> None:
    save = CheckpointPlugin.after_training_exp

    def save_then_die(self, strategy, *args, **kwargs):
        save(self, strategy, *args, **kwargs)
        if self._path.name.startswith(agent) and strategy.clock.train_exp_counter == experiences:
            raise SimulatedKillError

    monkeypatch.setattr(CheckpointPlugin, "after_training_exp", save_then_die)


def _interrupted(monkeypatch: pytest.MonkeyPatch, out: Path, agent: str, after: int) -> Path:
    with monkeypatch.context() as patch:
        _kill_after(patch, agent, after)
        with pytest.raises(SimulatedKillError):
            run(replace(TINY, out=str(out)), progress=False)
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    return run(replace(TINY, out=str(tmp_path_factory.mktemp("full"))), progress=False)


@pytest.fixture(scope="module")
def replay_stopped(tmp_path_factory) -> Path:
    """A run stopped after replay's first experience, before lifelong started."""
    with pytest.MonkeyPatch.context() as patch:
        return _interrupted(patch, tmp_path_factory.mktemp("cut") / "run", "replay", 1)


def test_a_run_stopped_in_a_replay_job_resumes_to_the_same_results(
    uninterrupted, replay_stopped, tmp_path
):
    out = shutil.copytree(replay_stopped, tmp_path / "run")
    assert JobFiles.of(out, "replay", 0).checkpoint.is_file()
    resumed = resume(out, progress=False)
    assert _measured(resumed) == _measured(uninterrupted)
    assert json.loads((out / "results.json").read_text())["runs"] == resumed["runs"]


def test_finished_jobs_are_not_rerun_and_lifelong_resumes_exactly(
    uninterrupted, tmp_path, monkeypatch
):
    out = _interrupted(monkeypatch, tmp_path / "run", "lifelong", 2)
    assert JobFiles.of(out, "replay", 0).result.is_file()
    started = []
    start_job = run_module._start_job
    monkeypatch.setattr(
        run_module,
        "_start_job",
        lambda job, *args: started.append(job.agent) or start_job(job, *args),
    )
    resumed = resume(out, progress=False)
    assert started == ["lifelong"]
    assert _measured(resumed) == _measured(uninterrupted)
    # Finished jobs drop their checkpoints; their small result records stay.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "config.json",
        "lifelong__seed0.json",
        "replay__seed0.json",
    ]


def test_a_truncated_checkpoint_is_a_clear_error(replay_stopped, tmp_path):
    out = shutil.copytree(replay_stopped, tmp_path / "run")
    checkpoint = JobFiles.of(out, "replay", 0).checkpoint
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="delete it") as error:
        resume(out, progress=False)
    assert str(checkpoint) in str(error.value)


def test_a_folder_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="holds no run to resume"):
        resume(tmp_path / "missing", progress=False)


def test_a_fresh_run_into_the_same_folder_starts_over(replay_stopped, tmp_path):
    out = shutil.copytree(replay_stopped, tmp_path / "run")
    stale = JobFiles.of(out, "naive", 0).result
    stale.write_text("{}")
    config = replace(TINY, agents=("naive",), out=str(out))
    prepare_folder(out, config, resuming=False)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["config.json"]


def test_resume_refuses_flags_that_change_results(tmp_path, capsys):
    assert main(["--resume", str(tmp_path), "--lr", "0.5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "drop --lr" in err


def test_a_vector_index_pickles_with_its_faiss_index_and_tombstones():
    rng = np.random.default_rng(0)
    index = VectorIndex(8, kind="hnsw")
    index.add(np.arange(50), rng.normal(size=(50, 8)))
    index.remove([3, 7])
    queries = rng.normal(size=(4, 8))
    before = index.search(queries, 5)  # builds the live-row selector, a raw-pointer object
    copy = pickle.loads(pickle.dumps(index))
    after = copy.search(queries, 5)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert 3 not in copy and len(copy) == 48


def test_cli_resumes_a_killed_run_in_worker_processes(uninterrupted, tmp_path):
    out = tmp_path / "run"
    flags = ["--stream", "split-digits", "--n-tasks", "3", "--agents", "replay,lifelong"]
    flags += ["--seeds", "0", "--memory-size", "60", "--epochs", "1", "--quiet"]
    flags += ["--checkpoint-every", "0"]
    script = [sys.executable, str(REPO / "run_stream.py")]
    process = subprocess.Popen([*script, *flags, "--out", str(out)], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("checkpoints/*.ckpt")) and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        code = process.wait()
    assert code == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "results.json").exists()
    done = subprocess.run(
        [*script, "--resume", str(out), "--executor", "process", "--workers", "1", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    resumed = json.loads((out / "results.json").read_text())
    assert _measured(resumed) == _measured(uninterrupted)
    assert resumed["config"]["executor"] == "process"


@pytest.mark.parametrize(("every_s", "saved_after"), [(0.0, [1, 2, 3]), (3600.0, [])])
def test_a_job_checkpoints_only_once_its_interval_has_passed(
    every_s, saved_after, tmp_path, monkeypatch
):
    checkpoint_module = importlib.import_module("lifelong.checkpoint")
    saved: list[int] = []

    def record(path, strategy, **kwargs):
        saved.append(kwargs["finished"])

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", record)
    config = replace(TINY, agents=("replay",), checkpoint_every_s=every_s, out=str(tmp_path))
    run(config, progress=False)
    assert saved == saved_after


def test_a_byte_budget_run_resumes_its_coded_memories_exactly(tmp_path, monkeypatch):
    config = replace(
        TINY, agents=("replay-coded", "lifelong"), train=TrainConfig(memory_bytes=20000)
    )
    full = run(replace(config, out=str(tmp_path / "full")), progress=False)
    with monkeypatch.context() as patch:
        _kill_after(patch, "replay-coded", 2)
        with pytest.raises(SimulatedKillError):
            run(replace(config, out=str(tmp_path / "cut")), progress=False)
    resumed = resume(tmp_path / "cut", progress=False)

    def without_codec_time(results: dict) -> list[dict]:
        records = _measured(results)
        for record in records:
            record["codec"].pop("codec_time_s")
        return records

    assert without_codec_time(resumed) == without_codec_time(full)
    # replay-coded's memory moved to its fallback codec at the second experience, before the
    # cut, so the resumed run carried on with the moved memory.
    codecs = {r["agent"]: (r["codec"]["spec"], r["codec"]["fallback_batch"])
              for r in resumed["runs"]}
    assert codecs == {"replay-coded": ("SQ4", 1), "lifelong": ("PQ/4x4", None)}
