"""The importable entry point: ``run(config)`` runs every agent x seed and saves the results.

One *job* is one agent on one seed over the whole stream. Jobs are independent, so they
can run in this process, in a process pool, or on a Ray cluster; each job seeds itself and
fixes its torch thread count, so the metrics do not depend on where it ran. Each job also
checkpoints itself after every experience (``lifelong.checkpoint``), so that ``resume(out)``
finishes a stopped run with the results an uninterrupted one would have had.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from avalanche.models.dynamic_modules import avalanche_model_adaptation
from avalanche.models.utils import is_multi_task_module
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import BaseTemplate, SupervisedTemplate
from avalanche.training.templates.base_sgd import PeriodicEval
from tqdm import tqdm

from lifelong.agents import (
    AgentContext,
    StreamFacts,
    agent_options,
    available_agents,
    check_scenario,
    get_agent,
    make_agent,
    settings_record,
)
from lifelong.budget import ByteBudgetCheck, memory_bytes_by_kind
from lifelong.checkpoint import (
    CheckpointPlugin,
    JobFiles,
    job_stem,
    load_checkpoint,
    load_run_config,
    prepare_folder,
    read_job_result,
    write_job_result,
)
from lifelong.config import ConfigError, RunConfig, StreamConfig, config_to_dict, validate
from lifelong.divergence import DivergenceWatch
from lifelong.evaluation import (
    RAM_SAMPLE_INTERVAL_S,
    accuracy_matrix_from_evaluator,
    avalanche_stream_metrics,
    make_evaluator,
    peak_ram_mb,
)
from lifelong.loggers import MatrixLoggers
from lifelong.methods import quiet_library_warnings, stored_samples
from lifelong.metrics import summarize_matrix
from lifelong.models import build_model
from lifelong.records import ResultsFile, SequenceRun
from lifelong.report import summarize_runs, write_outputs
from lifelong.switching_run import run_switching
from lifelong.tensor_batches import TensorBatches
from lifelong.tensor_evaluator import IsolatedEvalRandomness, TensorEvaluator, test_sets_of
from streams import StreamSpec, TaskStream, make_stream, with_validation_split
from streams.switching import SwitchingStream

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[], None]
_P = TypeVar("_P", bound=SupervisedPlugin)


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
    return _run(config, progress, resuming=False)


def resume(
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    executor: str | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Finish a stopped run in ``out_dir``, with the config it was started with.

    Finished jobs are read back, not re-run; a job that was interrupted continues from its
    last checkpoint (taken after every experience; on task-switching streams it runs again
    from its start); the results equal an uninterrupted run's, apart from timing and RAM
    figures. Only where the jobs run may change, since it does not change results.

    Args:
        out_dir: The output folder of the run to finish.
        progress: Show a progress bar on stderr.
        executor: Run the remaining jobs with another executor; ``None`` keeps the run's.
        workers: Parallel runs for the ``process`` executor; ``None`` keeps the run's.
        ray_address: Ray cluster address; ``None`` keeps the run's.

    Returns:
        The results dict, as :func:`run` returns it.

    Raises:
        lifelong.checkpoint.CheckpointError: If ``out_dir`` holds no run, or a checkpoint or
            saved result is unreadable.
        ConfigError: On an invalid executor setting.
    """
    config = load_run_config(out_dir)
    given: dict[str, Any] = {"executor": executor, "workers": workers, "ray_address": ray_address}
    overrides = {key: value for key, value in given.items() if value is not None}
    # The folder as given now: the saved one may be relative to another working directory.
    return _run(replace(config, out=str(out_dir), **overrides), progress, resuming=True)


def _run(config: RunConfig, progress: bool, *, resuming: bool) -> dict[str, Any]:
    config = _absolute_stream_reference(validate(config))
    resolve_device(config.device)
    # Building the first seed's stream up front checks the data before any training.
    built = build_stream(config.stream, config.seeds[0])
    # Resolved once, so the saved config and the caller name the same folder.
    out_dir = output_dir(config, built.name)
    config = replace(
        config, agents=resolve_agents(config.agents, built, config.variants), out=str(out_dir)
    )
    _check_agent_options(config)
    if isinstance(built, SwitchingStream):
        return _run_task_switching(config, out_dir, progress, resuming=resuming)
    stream = _task_sequence(built)
    _preflight(config, stream)
    prepare_folder(out_dir, config, resuming=resuming)
    jobs = [Job(config, agent, seed) for seed in config.seeds for agent in config.agents]
    runs = _execute(jobs, config, stream.n_tasks, progress)
    results = ResultsFile(
        stream=stream.name,
        scenario=stream.scenario.value,
        config=config_to_dict(config),
        runs=runs,
        summary=summarize_runs(runs),
        extras={
            "n_tasks": stream.n_tasks,
            "n_classes": stream.n_classes,
            "input_shape": list(stream.input_shape),
            "evaluated_on": "validation" if config.stream.validation_fraction else "test",
            "environment": _environment(config.device),
        },
    )
    write_outputs(results, out_dir)
    return results.to_dict()


def _run_task_switching(
    config: RunConfig, out_dir: Path, progress: bool, *, resuming: bool
) -> dict[str, Any]:
    """Test-then-train every agent on a task-switching stream (``lifelong.switching_run``).

    Raises:
        ConfigError: On a setting that applies to task sequences only.
    """
    if config.loggers:
        raise ConfigError(
            "--logger writes task-sequence accuracy matrices; a task-switching run's "
            "per-step accuracies are in results.json, so drop --logger"
        )
    if config.stream.validation_fraction:
        raise ConfigError(
            "--validation-fraction applies to task-sequence streams; a task-switching run "
            "chooses its settings on its pre-training distributions"
        )
    if config.train.memory_bytes is not None:
        raise ConfigError(
            "--memory-bytes bounds task-sequence runs; a task-switching run is bounded by "
            "--memory-size and reports its bytes (memory_bytes in results.json)"
        )
    # Few-shot steps of a small encoder: one CPU thread is the fast place for them.
    if config.executor != "local" or config.device == "cuda":
        raise ConfigError(
            "task-switching streams run with --executor local on the CPU for now; "
            "drop --executor and --device cuda"
        )

    def stream_for(seed: int) -> SwitchingStream:
        stream = build_stream(config.stream, seed)
        if not isinstance(stream, SwitchingStream):
            raise ConfigError(f"stream {stream.name!r} is task-switching for some seeds only")
        return stream

    prepare_folder(out_dir, config, resuming=resuming)
    return run_switching(
        config, stream_for, out_dir, progress=progress, environment=_environment("cpu")
    )


def _task_sequence(stream: TaskStream | SwitchingStream) -> TaskStream:
    if not isinstance(stream, TaskStream):
        raise ConfigError(f"stream {stream.name!r} is task-switching, not a sequence of tasks")
    return stream


def run_job(job: Job, on_experience: ProgressCallback | None = None) -> SequenceRun:
    """Train one agent on one seed's stream and measure it.

    With an output folder in ``job.config`` the job checkpoints itself after every
    experience and writes its record when done (see ``lifelong.checkpoint``); run again, it
    returns a finished job's record without training, and continues an interrupted one from
    its last checkpoint.

    Args:
        job: What to run.
        on_experience: Called after each training experience (progress reporting), and once
            per experience already done in an earlier session.

    Returns:
        The run's record: agent, seed, accuracy matrix, ACC, BWT, FWT, forgetting,
        Avalanche's own values for comparison, and wall time.

    Raises:
        lifelong.checkpoint.CheckpointError: If the job's checkpoint or record is unreadable.
    """
    files = JobFiles.of(job.config.out, job.agent, job.seed) if job.config.out else None
    if files is not None and (done := read_job_result(files.result, SequenceRun)) is not None:
        # A kill between writing the record and deleting the checkpoint leaves both.
        files.checkpoint.unlink(missing_ok=True)
        _report(on_experience, done.n_tasks)
        return done
    torch.set_num_threads(job.config.threads)
    seed_everything(job.seed)
    stream = _task_sequence(build_stream(job.config.stream, job.seed))
    plugins: list[SupervisedPlugin] = [_ProgressPlugin(on_experience)] if on_experience else []
    logs = _matrix_loggers(job)
    if logs is not None:
        plugins.append(logs)
    with quiet_library_warnings():
        strategy, finished, checkpointer = _start_job(job, stream, plugins, files)
        _report(on_experience, finished)
        train_stream = stream.benchmark.train_stream
        started = time.perf_counter()
        if finished < len(train_stream):
            # The tensor evaluator is a plugin of its own; only Avalanche's needs the stream.
            tensor_path = job.config.evaluator == "tensor"
            eval_streams = None if tensor_path else [stream.benchmark.test_stream]
            strategy.train(train_stream[finished:], eval_streams=eval_streams)
        # The checkpointer's clock spans every session of the job and leaves out its saves.
        wall_time = checkpointer.wall_time_s if checkpointer else time.perf_counter() - started
    if logs is not None:
        logs.after_training(strategy)  # also when a resumed job had nothing left to train
        logs.close()
    record = _job_record(job, stream, strategy, wall_time)
    if files is not None:
        write_job_result(files.result, record)
        files.checkpoint.unlink(missing_ok=True)
    return record


def _matrix_loggers(job: Job) -> MatrixLoggers | None:
    """The job's ``--logger`` plugin, writing under ``<out>/logs/<agent>__seed<s>/``."""
    if not job.config.loggers or not job.config.out:
        return None
    folder = Path(job.config.out) / "logs" / job_stem(job.agent, job.seed)
    return MatrixLoggers(job.config.loggers, folder)


def _start_job(
    job: Job,
    stream: TaskStream,
    plugins: Sequence[SupervisedPlugin],
    files: JobFiles | None,
) -> tuple[SupervisedTemplate, int, CheckpointPlugin | None]:
    """Build the job's strategy, or load it from its checkpoint; call right after seeding.

    Returns:
        The strategy, with ``plugins`` and the checkpointing plugin attached; how many
        experiences it has already done; the checkpointing plugin (``None`` without files).
    """
    if files is None:
        strategy, _ = _build_strategy(job, stream, plugins)
        return strategy, 0, None
    finished, earlier_wall_time = 0, 0.0
    if files.checkpoint.is_file():
        # Loading also restores the random states, so nothing may draw from them after it.
        loaded = load_checkpoint(files.checkpoint)
        strategy, finished = loaded.strategy, loaded.finished
        earlier_wall_time = loaded.wall_time_s
        strategy.plugins = [*plugins, *strategy.plugins]
        _skip_initial_eval(strategy)
        tensor_evaluator = _find_plugin(strategy, TensorEvaluator)
        if tensor_evaluator is not None:
            tensor_evaluator.attach(test_sets_of(stream.benchmark.test_stream, strategy.device))
    else:
        strategy, _ = _build_strategy(job, stream, plugins)
    # Last, after Avalanche's periodic evaluation and clock, whose results it saves.
    checkpointer = CheckpointPlugin(
        files.checkpoint,
        wall_time_s=earlier_wall_time,
        exclude_plugins=plugins,
        every_s=job.config.checkpoint_every_s,
    )
    strategy.plugins.append(checkpointer)
    return strategy, finished, checkpointer


def _skip_initial_eval(strategy: SupervisedTemplate) -> None:
    """Stop ``train()`` evaluating before it trains: the first session already did.

    With ``eval_every=0`` every ``train()`` call evaluates once before its first experience;
    a resumed call would add a value to every accuracy column.
    """
    for plugin in strategy.plugins:
        if isinstance(plugin, PeriodicEval):
            plugin.do_initial = False


def _report(callback: ProgressCallback | None, times: int) -> None:
    if callback is not None:
        for _ in range(times):
            callback()


def _job_record(
    job: Job, stream: TaskStream, strategy: SupervisedTemplate, wall_time: float
) -> SequenceRun:
    tensor_evaluator = _find_plugin(strategy, TensorEvaluator)
    if tensor_evaluator is not None:
        matrix = tensor_evaluator.matrix(stream.n_tasks)
        eval_time, avalanche_metrics = tensor_evaluator.eval_time_s, {}
    else:
        matrix = accuracy_matrix_from_evaluator(strategy.evaluator, stream.n_tasks)
        isolation = _find_plugin(strategy, IsolatedEvalRandomness)
        eval_time = isolation.eval_time_s if isolation is not None else 0.0
        avalanche_metrics = avalanche_stream_metrics(strategy.evaluator)
    peak = peak_ram_mb(strategy.evaluator) if tensor_evaluator is not None else None
    ram = {} if peak is None else {"avalanche_peak_ram_mb": peak}
    # An agent, or a plugin of its own, may report more about itself (``lifelong``: the bytes
    # it keeps beside the stored samples; ``replay-coded``: its codec).
    reports = [getattr(holder, "run_report", None) for holder in (strategy, *strategy.plugins)]
    bytes_check = _find_plugin(strategy, ByteBudgetCheck)
    by_kind = memory_bytes_by_kind(strategy, bytes_check.facts) if bytes_check else {}
    record = {
        "agent": job.agent,
        "seed": job.seed,
        "accuracy_matrix": matrix.tolist(),
        # The seed can change which distribution each task comes from (recurring streams).
        "task_identities": list(stream.task_identities),
        **summarize_matrix(matrix),
        **avalanche_metrics,
        **ram,
        "wall_time_s": wall_time,
        "eval_time_s": eval_time,
        "train_time_s": max(wall_time - eval_time, 0.0),
        "stored_samples": stored_samples(strategy),
        "memory_bytes": sum(by_kind.values()),
        "memory_bytes_by_kind": by_kind,
        "memory_bytes_by_experience": bytes_check.by_experience if bytes_check else [],
        **settings_record(job.config.variants, job.agent, job_options(job)),
        **{key: value for report in reports if callable(report) for key, value in report().items()},
    }
    # Read like a saved record, so a job's own report is held to the same schema.
    return SequenceRun.from_dict(record, f"job {job.agent!r} seed {job.seed}")


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
    _add_every_head(model, stream)
    ram_interval = RAM_SAMPLE_INTERVAL_S if config.ram_metrics else None
    evaluator = make_evaluator(ram_interval_s=ram_interval, metrics=config.evaluator != "tensor")
    context = AgentContext(
        model, config.train, facts, device, evaluator, plugins, job.seed, job_options(job)
    )
    strategy = make_agent(config.registered_agent(job.agent), context)
    if not isinstance(strategy, BaseTemplate):
        raise TypeError(
            f"agent {job.agent!r} built a {type(strategy).__name__} for a task sequence; "
            "its factory must return an Avalanche strategy there"
        )
    strategy.plugins.append(DivergenceWatch(job.agent, job.seed))
    # Last of the strategy's own plugins: it measures what the others stored.
    strategy.plugins.append(ByteBudgetCheck(job.agent, facts, config.train.memory_bytes))
    # After every plugin that makes the experience's loader (replay's does).
    strategy.plugins.append(TensorBatches())
    if config.evaluator == "tensor":
        test_sets = test_sets_of(stream.benchmark.test_stream, device)
        _replace_periodic_eval(strategy, TensorEvaluator(test_sets, config.train.eval_batch_size))
    else:
        strategy.plugins.insert(0, IsolatedEvalRandomness())
    return strategy, evaluator


def job_options(job: Job) -> Any:
    """The settings of the job's agent (or variant), with the run's overrides applied."""
    config = job.config
    name = config.registered_agent(job.agent)
    return agent_options(name, config.agent_options.get(job.agent, {}))


def _add_every_head(model: torch.nn.Module, stream: TaskStream) -> None:
    """Give a multi-head model the heads of every task now, under the run's seed.

    Avalanche adds a task's head when the model first meets the task, in training or in an
    evaluation. Made up front, the heads are the same whichever evaluator runs (the tensor
    evaluator meets no experience objects) and whenever the first evaluation happens.
    """
    if is_multi_task_module(model):
        for experience in stream.benchmark.train_stream:
            avalanche_model_adaptation(model, experience)


def _replace_periodic_eval(strategy: SupervisedTemplate, evaluator: TensorEvaluator) -> None:
    """Put ``evaluator`` where Avalanche's periodic evaluation sits, removing that one.

    There it sees the model after the same ``after_training_exp`` callbacks as Avalanche's
    evaluation would. A strategy without one gets the evaluator last.
    """
    for index, plugin in enumerate(strategy.plugins):
        if isinstance(plugin, PeriodicEval):
            strategy.plugins[index] = evaluator
            return
    strategy.plugins.append(evaluator)


def _find_plugin(strategy: SupervisedTemplate, kind: type[_P]) -> _P | None:
    return next((p for p in strategy.plugins if isinstance(p, kind)), None)


def _preflight(config: RunConfig, stream: TaskStream) -> None:
    """Build every agent once, so that a setting it refuses fails before any training.

    Jobs seed themselves when they start, so this costs no reproducibility.
    """
    with quiet_library_warnings():
        for agent in config.agents:
            _build_strategy(Job(config, agent, config.seeds[0]), stream, plugins=[])


def _check_agent_options(config: RunConfig) -> None:
    """Refuse settings for an agent the run does not compare, and check every value.

    Raises:
        ConfigError: Naming the agent or setting and the fix.
    """
    for variant in config.variants:
        if variant in available_agents():
            raise ConfigError(
                f"variant name {variant!r} is a registered agent's; give the variant another name"
            )
    for name, overrides in config.agent_options.items():
        if name not in config.agents:
            raise ConfigError(
                f"--agent-option names agent {name!r}, which this run does not compare "
                f"({', '.join(config.agents)}); add it to --agents or drop the option"
            )
        agent_options(config.registered_agent(name), overrides)


def resolve_agents(
    names: Sequence[str],
    stream: TaskStream | SwitchingStream,
    variants: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """Expand ``all`` and check every agent (a variant: the agent it runs) fits the stream.

    Raises:
        UnknownAgentError: On an unknown name.
        UnsupportedScenarioError: If a named agent cannot run on the stream.
    """
    if tuple(names) == ("all",):
        return tuple(
            name for name, entry in available_agents().items() if stream.scenario in entry.scenarios
        )
    for name in names:
        check_scenario(get_agent((variants or {}).get(name, name)), stream.scenario, stream.name)
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
def _cached_stream(stream_json: str, seed: int) -> TaskStream | SwitchingStream:
    data = json.loads(stream_json)
    spec = StreamSpec(
        n_tasks=data["n_tasks"],
        seed=seed,
        data_root=Path(data["data_root"]) if data["data_root"] else None,
        download=data["download"],
        options=data["options"],
    )
    stream = make_stream(data["name"], spec)
    if data["validation_fraction"] and isinstance(stream, TaskStream):
        return with_validation_split(stream, data["validation_fraction"], seed)
    return stream


def build_stream(stream: StreamConfig, seed: int) -> TaskStream | SwitchingStream:
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


def _execute(jobs: list[Job], config: RunConfig, n_tasks: int, progress: bool) -> list[SequenceRun]:
    if config.executor == "local":
        return _execute_local(jobs, n_tasks, progress)
    if config.executor == "process":
        workers = min(config.workers or _default_workers(config), len(jobs))
        if workers == 1 and config.workers is None:
            # A pool of one would only add a process start to the same jobs.
            return _execute_local(jobs, n_tasks, progress)
        return _execute_process_pool(jobs, workers, _start_method(config), progress)
    return _execute_ray(jobs, config.ray_address, progress)


def _execute_local(jobs: list[Job], n_tasks: int, progress: bool) -> list[SequenceRun]:
    results = []
    with _progress_bar(len(jobs) * n_tasks, "experiences", progress) as bar:
        for job in jobs:
            bar.set_description(f"{job.agent} seed {job.seed}")
            results.append(run_job(job, on_experience=lambda: bar.update(1)))
    return results


def _default_workers(config: RunConfig) -> int:
    """Pool size when ``--workers`` is not given: one per CPU core, one for CUDA runs.

    Workers of a CUDA run would all train on the same device, each with its own CUDA
    context, so by default such a run keeps its jobs in this process.
    """
    if resolve_device(config.device).type == "cuda":
        return 1
    return os.cpu_count() or 1


def _start_method(config: RunConfig) -> str:
    """How pool workers start: forked where that is safe, spawned otherwise.

    A forked worker inherits the imported torch and Avalanche, which a spawned one imports
    again (about 5 s on a 2-core machine, a third of a short sweep). Forking is safe for
    CPU runs on one torch thread: the worker then never enters the OpenMP thread pool the
    parent may have started (PyTorch's data-loader workers rely on the same), and no CUDA
    context exists to inherit. Anything else spawns, as CUDA and multi-threaded runs need.
    """
    fork_ok = "fork" in get_all_start_methods()
    on_cpu = resolve_device(config.device).type == "cpu"
    return "fork" if fork_ok and on_cpu and config.threads == 1 else "spawn"


def _execute_process_pool(
    jobs: list[Job], workers: int, start_method: str, progress: bool
) -> list[SequenceRun]:
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context(start_method)) as pool:
        # Submitting starts the workers: before the progress bar's thread exists, so a
        # forked worker copies no other thread's state.
        futures = [pool.submit(run_job, job) for job in jobs]
        with _progress_bar(len(jobs), "runs", progress) as bar:
            for future in futures:
                future.add_done_callback(lambda _: bar.update(1))
            return [future.result() for future in futures]


def _execute_ray(jobs: list[Job], address: str | None, progress: bool) -> list[SequenceRun]:
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
        results: list[SequenceRun | None] = [None] * len(jobs)
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
