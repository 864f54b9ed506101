"""The importable entry point: ``run(config)`` runs every agent x seed and saves the results.

One *job* is one agent on one seed over the whole stream. Jobs are independent, so they
can run in this process, in a process pool, or on a Ray cluster; each job seeds itself and
fixes its torch thread count, so the metrics do not depend on where it ran.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from tqdm import tqdm

from lifelong.agents import (
    AgentContext,
    StreamFacts,
    available_agents,
    check_scenario,
    get_agent,
    make_agent,
)
from lifelong.baselines import quiet_library_warnings
from lifelong.config import ConfigError, RunConfig, StreamConfig, config_to_dict, validate
from lifelong.evaluation import (
    accuracy_matrix_from_evaluator,
    avalanche_stream_metrics,
    make_evaluator,
)
from lifelong.metrics import summarize_matrix
from lifelong.models import build_model
from lifelong.report import summarize_runs, write_outputs
from streams import StreamSpec, TaskStream, make_stream

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[], None]


@dataclass(frozen=True)
class Job:
    """One agent trained on one seed's stream."""

    config: RunConfig
    agent: str
    seed: int


def run(config: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run every agent on every seed over the stream, save the outputs, return the results.

    Args:
        config: The whole run's configuration; it is validated first.
        progress: Show a progress bar on stderr.

    Returns:
        The results dict also written to ``results.json``: ``stream``, ``scenario``,
        ``config``, ``runs`` (one per agent x seed) and ``summary`` (one per agent).

    Raises:
        ConfigError: On an invalid setting.
        streams.StreamError: If the stream's data is missing or malformed.
        lifelong.agents.UnknownAgentError: On an unknown agent name.
        lifelong.agents.UnsupportedScenarioError: If an agent cannot run on the stream.
        lifelong.agents.MemoryBudgetError: If ``memory_size`` is too small for an agent.
    """
    config = _absolute_stream_reference(validate(config))
    resolve_device(config.device)
    # Building the first seed's stream up front checks the data before any training.
    stream = build_stream(config.stream, config.seeds[0])
    # Resolved once, so the saved config and the caller name the same folder.
    out_dir = output_dir(config, stream.name)
    config = replace(config, agents=resolve_agents(config.agents, stream), out=str(out_dir))
    _preflight(config, stream)
    jobs = [Job(config, agent, seed) for seed in config.seeds for agent in config.agents]
    runs = _execute(jobs, config, stream.n_tasks, progress)
    results = {
        "stream": stream.name,
        "scenario": stream.scenario.value,
        "n_tasks": stream.n_tasks,
        "n_classes": stream.n_classes,
        "input_shape": list(stream.input_shape),
        "config": config_to_dict(config),
        "environment": _environment(config.device),
        "runs": runs,
        "summary": summarize_runs(runs),
    }
    write_outputs(results, out_dir)
    return results


def run_job(job: Job, on_experience: ProgressCallback | None = None) -> dict[str, Any]:
    """Train one agent on one seed's stream and measure it.

    Args:
        job: What to run.
        on_experience: Called after each training experience (progress reporting).

    Returns:
        The run's record: agent, seed, accuracy matrix, ACC, BWT, FWT, forgetting,
        Avalanche's own values for comparison, and wall time.
    """
    torch.set_num_threads(job.config.threads)
    seed_everything(job.seed)
    stream = build_stream(job.config.stream, job.seed)
    plugins = [_ProgressPlugin(on_experience)] if on_experience else []
    with quiet_library_warnings():
        strategy, evaluator = _build_strategy(job, stream, plugins)
        started = time.perf_counter()
        strategy.train(stream.benchmark.train_stream, eval_streams=[stream.benchmark.test_stream])
        wall_time = time.perf_counter() - started
    matrix = accuracy_matrix_from_evaluator(evaluator, stream.n_tasks)
    return {
        "agent": job.agent,
        "seed": job.seed,
        "accuracy_matrix": matrix.tolist(),
        # The seed can change which distribution each task comes from (recurring streams).
        "task_identities": list(stream.task_identities),
        **summarize_matrix(matrix),
        **avalanche_stream_metrics(evaluator),
        "wall_time_s": wall_time,
    }


def _build_strategy(
    job: Job, stream: TaskStream, plugins: Sequence[SupervisedPlugin]
) -> tuple[SupervisedTemplate, EvaluationPlugin]:
    """Build the job's model, evaluator and strategy; call right after seeding."""
    config = job.config
    device = resolve_device(config.device)
    facts = StreamFacts(stream.scenario, stream.n_tasks, stream.n_classes, stream.input_shape)
    model = build_model(
        stream.scenario, stream.input_shape, stream.n_classes, config.train.hidden
    ).to(device)
    evaluator = make_evaluator()
    context = AgentContext(model, config.train, facts, device, evaluator, plugins, job.seed)
    return make_agent(job.agent, context), evaluator


def _preflight(config: RunConfig, stream: TaskStream) -> None:
    """Build every agent once, so that a setting it refuses fails before any training.

    Jobs seed themselves when they start, so this costs no reproducibility.
    """
    with quiet_library_warnings():
        for agent in config.agents:
            _build_strategy(Job(config, agent, config.seeds[0]), stream, plugins=[])


def resolve_agents(names: Sequence[str], stream: TaskStream) -> tuple[str, ...]:
    """Expand ``all`` and check every agent can run on the stream's scenario.

    Raises:
        UnknownAgentError: On an unknown name.
        UnsupportedScenarioError: If a named agent cannot run on the stream.
    """
    if tuple(names) == ("all",):
        return tuple(
            name for name, entry in available_agents().items() if stream.scenario in entry.scenarios
        )
    for name in names:
        check_scenario(get_agent(name), stream.scenario, stream.name)
    return tuple(names)


def resolve_device(name: str) -> torch.device:
    """Turn ``auto``/``cpu``/``cuda`` into a device that exists here.

    Raises:
        ConfigError: If ``cuda`` is asked for and no CUDA device is visible.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu"
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@functools.lru_cache(maxsize=2)
def _cached_stream(stream_json: str, seed: int) -> TaskStream:
    data = json.loads(stream_json)
    spec = StreamSpec(
        n_tasks=data["n_tasks"],
        seed=seed,
        data_root=Path(data["data_root"]) if data["data_root"] else None,
        download=data["download"],
        options=data["options"],
    )
    return make_stream(data["name"], spec)


def build_stream(stream: StreamConfig, seed: int) -> TaskStream:
    """Build (or reuse, within this process) the stream for ``seed``."""
    # A JSON key makes the config hashable for the cache, options dict included.
    return _cached_stream(json.dumps(asdict(stream), sort_keys=True), seed)


def output_dir(config: RunConfig, stream_name: str) -> Path:
    """Where results go: ``config.out``, or ``runs/<stream>__<UTC time>``."""
    if config.out:
        return Path(config.out)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in stream_name)
    return Path("runs") / f"{safe_name}__{stamp}"


class _ProgressPlugin(SupervisedPlugin):
    """Reports each finished training experience to a callback."""

    def __init__(self, callback: ProgressCallback):
        super().__init__()
        self._callback = callback

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self._callback()


def _execute(
    jobs: list[Job], config: RunConfig, n_tasks: int, progress: bool
) -> list[dict[str, Any]]:
    if config.executor == "local":
        return _execute_local(jobs, n_tasks, progress)
    if config.executor == "process":
        return _execute_process_pool(jobs, config.workers, progress)
    return _execute_ray(jobs, config.ray_address, progress)


def _execute_local(jobs: list[Job], n_tasks: int, progress: bool) -> list[dict[str, Any]]:
    results = []
    with _progress_bar(len(jobs) * n_tasks, "experiences", progress) as bar:
        for job in jobs:
            bar.set_description(f"{job.agent} seed {job.seed}")
            results.append(run_job(job, on_experience=lambda: bar.update(1)))
    return results


def _execute_process_pool(
    jobs: list[Job], workers: int | None, progress: bool
) -> list[dict[str, Any]]:
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    # Spawned workers start clean: forking a process that already ran torch can deadlock.
    with (
        ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool,
        _progress_bar(len(jobs), "runs", progress) as bar,
    ):
        futures = [pool.submit(run_job, job) for job in jobs]
        for future in futures:
            future.add_done_callback(lambda _: bar.update(1))
        return [future.result() for future in futures]


def _execute_ray(jobs: list[Job], address: str | None, progress: bool) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError as error:
        raise ConfigError(
            "--executor ray needs Ray installed: pip install 'lifelong[ray]'"
        ) from error
    # Shut down only a Ray instance this call started, not a cluster the caller runs.
    started_here = not ray.is_initialized()
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        remote_job = ray.remote(run_job)
        pending = {remote_job.remote(job): index for index, job in enumerate(jobs)}
        results: list[dict[str, Any] | None] = [None] * len(jobs)
        with _progress_bar(len(jobs), "runs", progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for reference in done:
                    results[pending.pop(reference)] = ray.get(reference)
                    bar.update(1)
    finally:
        if started_here:
            ray.shutdown()
    return [result for result in results if result is not None]


@contextmanager
def _progress_bar(total: int, unit: str, enabled: bool) -> Iterator[tqdm]:
    bar = tqdm(total=total, unit=unit, disable=not enabled, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def _absolute_stream_reference(config: RunConfig) -> RunConfig:
    """Make a ``file.py:function`` stream path absolute so worker processes find it."""
    name = config.stream.name
    module_part, sep, attribute = name.rpartition(":")
    if sep and module_part.endswith(".py"):
        absolute = f"{Path(module_part).resolve()}:{attribute}"
        return replace(config, stream=replace(config.stream, name=absolute))
    return config


def _environment(device: str) -> dict[str, Any]:
    import avalanche

    return {
        "torch": torch.__version__,
        "avalanche": avalanche.__version__,
        "device": str(resolve_device(device)),
        "cuda_available": torch.cuda.is_available(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
