"""Checkpoints of a run's jobs, so that a killed run resumes and ends as if never stopped.

Layout, under the run's output folder::

    checkpoints/
        config.json                 the resolved RunConfig, written when the run starts
        <agent>__seed<k>.ckpt       a running job's latest state, replaced as it goes on
        <agent>__seed<k>.json       a finished job's result record; its .ckpt is then deleted

A job's checkpoint is taken after a training experience *and its evaluation*, once
``RunConfig.checkpoint_every_s`` seconds have passed since its last one: the whole
strategy (model, optimizer, plugins and their buffers, the agent and its memories, the
evaluator's metric history, the clock), the Python, NumPy and torch (CPU and CUDA) random
states, the number of finished experiences and the job's wall time so far. Every file is
written atomically (``lifelong.io``), so a kill mid-save leaves the previous one loadable.

Checkpoints are pickles (dill where the standard pickler fails): load only checkpoints
your own runs wrote.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import json
import logging
import os
import pickle
import random
import shutil
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dill
import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics.ram_usage import MaxRAM
from avalanche.training.templates import SupervisedTemplate

from lifelong.config import ConfigError, RunConfig, config_from_dict, config_to_dict
from lifelong.io import atomic_write_bytes, atomic_write_text
from lifelong.records import SequenceRun, SwitchingRun

_Run = TypeVar("_Run", SequenceRun, SwitchingRun)

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "CheckpointPlugin",
    "JobFiles",
    "LoadedJob",
    "load_checkpoint",
    "load_run_config",
    "prepare_folder",
    "read_job_result",
    "save_checkpoint",
    "write_job_result",
]

FOLDER = "checkpoints"
CONFIG_FILE = "config.json"
_FORMAT = "lifelong-checkpoint"
_VERSION = 1

# Strategy attributes that only live during one experience (the current experience, its
# data loaders, the last batch): Avalanche clears them between train() calls, and the next
# experience sets them again. ER-ACE's replay loader is a generator, which cannot be pickled;
# ER-ACE builds a new one before every experience after the first.
_TRANSIENT: dict[str, Any] = {
    "experience": None,
    "adapted_dataset": None,
    "dataloader": [],
    "mbatch": None,
    "mb_output": None,
    "_eval_streams": None,
    "replay_loader": None,
}


class CheckpointError(ConfigError):
    """A run folder cannot be resumed: no run in it, or a checkpoint that does not load."""


@dataclass(frozen=True)
class JobFiles:
    """Where one job (agent x seed) keeps its checkpoint and its finished result."""

    checkpoint: Path
    result: Path

    @classmethod
    def of(cls, out_dir: str | os.PathLike[str], agent: str, seed: int) -> JobFiles:
        """The files of ``agent`` on ``seed`` in the run folder ``out_dir``."""
        folder, stem = Path(out_dir) / FOLDER, job_stem(agent, seed)
        return cls(folder / f"{stem}.ckpt", folder / f"{stem}.json")


def job_stem(agent: str, seed: int) -> str:
    """``<agent>__seed<k>``, with every character a file name may not hold as ``_``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in agent)
    return f"{safe}__seed{seed}"


@dataclass(frozen=True)
class LoadedJob:
    """A job's state read back from its checkpoint.

    Attributes:
        strategy: The strategy as it was after ``finished`` experiences, without the run's
            own plugins (progress, checkpointing); add fresh ones before training on.
        finished: Experiences trained and evaluated.
        wall_time_s: Wall time the job had spent training and evaluating so far.
    """

    strategy: SupervisedTemplate
    finished: int
    wall_time_s: float


def prepare_folder(out_dir: str | os.PathLike[str], config: RunConfig, *, resuming: bool) -> None:
    """Make the checkpoint folder and record the run's config in it.

    A fresh run starts over: job files left by an earlier run in the same folder are removed,
    so none of its results is mistaken for this run's.

    Args:
        out_dir: The run's output folder.
        config: The resolved config, written to ``checkpoints/config.json``.
        resuming: Keep the job files of the run being resumed.
    """
    folder = Path(out_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    # Temporary files of saves that a kill interrupted; no live file depends on them.
    stale = list(folder.glob(".*.tmp"))
    if not resuming:
        stale += [*folder.glob("*.ckpt"), *folder.glob("*.json")]
    for path in stale:
        # A task-switching job's checkpoint, and an interrupted save of one, are folders.
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config_to_dict(config), indent=2) + "\n")


def load_run_config(out_dir: str | os.PathLike[str]) -> RunConfig:
    """The config a run saved in ``out_dir`` when it started.

    Raises:
        CheckpointError: If ``out_dir`` holds no run to resume or its config is unreadable.
    """
    path = Path(out_dir) / FOLDER / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{out_dir} holds no run to resume (no {path}); pass the output folder of a run "
            "started by this version, or start a new run without --resume"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return config_from_dict(data)
    except (ValueError, TypeError) as error:
        raise CheckpointError(
            f"{path} is not a valid run config ({error}); start a new run without --resume"
        ) from error


def save_checkpoint(
    path: Path,
    strategy: SupervisedTemplate,
    *,
    finished: int,
    wall_time_s: float,
    exclude_plugins: Sequence[SupervisedPlugin] = (),
) -> None:
    """Write the strategy and the random states to ``path`` atomically.

    Call it between experiences, after the evaluation that follows one: the strategy's
    per-experience attributes are left out, so a resumed ``train()`` starts clean.

    Args:
        path: The checkpoint file; its folder must exist.
        strategy: The strategy to save; it is not modified.
        finished: Experiences trained and evaluated so far.
        wall_time_s: The job's wall time so far.
        exclude_plugins: The run's own plugins, which hold callbacks into this process.
    """
    snapshot = copy.copy(strategy)
    for name, value in _TRANSIENT.items():
        if hasattr(snapshot, name):
            setattr(snapshot, name, value)
    snapshot.plugins = [p for p in strategy.plugins if all(p is not q for q in exclude_plugins)]
    payload = {
        "format": _FORMAT,
        "version": _VERSION,
        "finished": finished,
        "wall_time_s": wall_time_s,
        "rng": _rng_state(),
        "strategy": snapshot,
    }
    atomic_write_bytes(path, _dumps(payload))


def load_checkpoint(path: Path) -> LoadedJob:
    """Read a checkpoint and restore the random states it saved.

    Restoring the random states is the last thing a resumed job does before training on.

    Raises:
        CheckpointError: If the file is truncated, corrupt or not a checkpoint.
    """
    try:
        payload = dill.loads(path.read_bytes())
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError("not a lifelong checkpoint")
        if payload["version"] != _VERSION:
            raise ValueError(f"format version {payload['version']}, expected {_VERSION}")
        strategy, finished = payload["strategy"], int(payload["finished"])
        wall_time_s, rng = float(payload["wall_time_s"]), payload["rng"]
    except Exception as error:  # unpickling a damaged file can raise nearly anything
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); delete it "
            "to redo that job from its start, then resume again"
        ) from error
    _set_rng_state(rng)
    return LoadedJob(strategy, finished, wall_time_s)


def write_job_result(path: Path, record: SequenceRun | SwitchingRun) -> None:
    """Write a finished job's result record atomically, as ``results.json`` holds it."""
    atomic_write_text(path, json.dumps(record.to_dict(), indent=2) + "\n")


def read_job_result(path: Path, kind: type[_Run]) -> _Run | None:
    """A finished job's result record, or ``None`` if the job has not finished.

    Args:
        path: The job's result file.
        kind: The record class of the run's stream (``lifelong.records``).

    Raises:
        CheckpointError: If the file exists but is not a record of that kind.
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise CheckpointError(
            f"job result {path} is not valid JSON ({error}); delete it to redo that job"
        ) from error
    try:
        return kind.from_dict(data, f"job result {path}")
    except ValueError as error:
        raise CheckpointError(f"{error} (not a result record?); delete it to redo it") from error


class CheckpointPlugin(SupervisedPlugin):
    """Saves the job after every experience, once that experience's evaluation is done.

    Append it *after* every other plugin: Avalanche's periodic evaluation (and its clock)
    run in ``after_training_exp``, and the checkpoint must hold their results. Work a
    strategy does after its plugins' ``after_training_exp`` would be missed; none of the
    registered agents does any.

    Args:
        path: The job's checkpoint file.
        wall_time_s: Wall time the job had spent before this process took over. This
            session's clock starts now: build the plugin right before training.
        exclude_plugins: The run's own plugins, left out of the checkpoint.
        every_s: Save after an experience only once this many seconds of the job's wall
            time have passed since the last save (or the start); ``0`` saves after every
            experience.
    """

    def __init__(
        self,
        path: Path,
        *,
        wall_time_s: float = 0.0,
        exclude_plugins: Sequence[SupervisedPlugin] = (),
        every_s: float = 0.0,
    ) -> None:
        super().__init__()
        if not every_s >= 0:
            raise ValueError(f"every_s is {every_s!r}; it must be 0 or more seconds")
        self._path = path
        self._exclude = [*exclude_plugins, self]
        self._earlier = wall_time_s
        self._started = time.perf_counter()
        self._saving = 0.0
        self._every = every_s
        self._last_save = wall_time_s

    @property
    def wall_time_s(self) -> float:
        """The job's wall time so far, all sessions, without the time spent saving."""
        return self._earlier + time.perf_counter() - self._started - self._saving

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Save the strategy as it is after this experience and its evaluation, if due."""
        if self.wall_time_s - self._last_save < self._every:
            return
        began = time.perf_counter()
        save_checkpoint(
            self._path,
            strategy,
            finished=strategy.clock.train_exp_counter,
            wall_time_s=self.wall_time_s,
            exclude_plugins=self._exclude,
        )
        # Saving is bookkeeping, not training: keep it out of the reported wall time.
        self._saving += time.perf_counter() - began
        self._last_save = self.wall_time_s


def _dumps(payload: Any) -> bytes:
    """Pickle with the standard pickler, or with dill for what it cannot (lambdas, ...).

    The standard (C) pickler is about a hundred times faster than dill on a strategy; dill
    is kept for strategies holding functions that only it can save.
    """
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(payload)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        logger.debug("pickle cannot save the checkpoint (%s); using dill", error)
        buffer = io.BytesIO()
        # recurse=True: dill cannot pickle torch 2.14's optimizers without it.
        _DillPickler(buffer, recurse=True).dump(payload)
    return buffer.getvalue()


def _reduce_special(obj: Any) -> Any:
    """Reductions for objects that neither pickler saves in a form a new process can use.

    - A RAM meter holds a sampling thread and a handle on this process's id, neither of
      which means anything in another process: it is saved as a fresh meter keeping its
      peak reading.
    - Avalanche registers a dill reducer for ``torch.device`` that prints a line for every
      device it loads; torch's own reduction is silent.
    - Generators cannot be pickled, but A-GEM and MIR keep one over their buffer, made at
      the end of an experience and first used in the next. Between experiences it has not
      started, so it is saved as the call that made it.
    - Read-only mappings (``types.MappingProxyType``, in the task memory's records) are
      saved as a read-only view of a copy.
    """
    if isinstance(obj, MaxRAM):
        return _fresh_ram_meter, (obj.every, obj.max_usage)
    if isinstance(obj, torch.device):
        return torch.device, (str(obj),)
    if isinstance(obj, types.GeneratorType):
        return _generator_call(obj)
    if isinstance(obj, types.MappingProxyType):
        return _read_only, (dict(obj),)
    return NotImplemented


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        return _reduce_special(obj)


class _DillPickler(dill.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        return _reduce_special(obj)


def _generator_call(generator: types.GeneratorType[Any, Any, Any]) -> tuple[Any, ...]:
    """``(function, arguments)`` that make an unstarted generator again.

    Raises:
        pickle.PicklingError: If the generator has started, takes ``*args``, ``**kwargs`` or
            keyword-only arguments, or its function cannot be found by name.
    """
    frame, code = generator.gi_frame, generator.gi_code
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    where = f"cannot checkpoint generator {module}.{generator.__qualname__}:"
    if frame is None or inspect.getgeneratorstate(generator) != inspect.GEN_CREATED:
        raise pickle.PicklingError(f"{where} it has started")
    if code.co_kwonlyargcount or code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
        raise pickle.PicklingError(f"{where} it takes *args, **kwargs or keyword-only arguments")
    function: Any = importlib.import_module(module)
    for part in generator.__qualname__.split("."):
        function = getattr(function, part, None)
    if getattr(function, "__code__", None) is not code:
        raise pickle.PicklingError(f"{where} its function cannot be found by name")
    # An unstarted generator's locals are exactly its arguments.
    return function, tuple(frame.f_locals[arg] for arg in code.co_varnames[: code.co_argcount])


def _read_only(mapping: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    # The type itself cannot be pickled by name (``builtins.mappingproxy`` does not exist).
    return types.MappingProxyType(mapping)


def _fresh_ram_meter(every: float, max_usage: float) -> MaxRAM:
    meter = MaxRAM(every)
    meter.max_usage = max_usage
    return meter


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
