"""The command line, thin over ``lifelong.run``: parse, build the config, run, print.

Settings come, lowest priority first, from the defaults, a ``--config`` file, then flags.
Bad input prints one line to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lifelong.agents import (
    MemoryBudgetError,
    UnknownAgentError,
    UnsupportedScenarioError,
    available_agents,
)
from lifelong.config import (
    ConfigError,
    RunConfig,
    load_config_file,
    parse_seeds,
    validate,
)
from streams import Scenario, StreamError, UnknownStreamError, available_streams

EXIT_BAD_INPUT = 2
# Flags that may come with --resume: where the remaining jobs run changes no result.
_RESUME_FLAGS = frozenset({"resume", "quiet", "executor", "workers", "ray_address"})
_USER_ERRORS = (
    ConfigError,
    StreamError,
    UnknownStreamError,
    UnknownAgentError,
    UnsupportedScenarioError,
    MemoryBudgetError,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every default is ``None`` so a config file can fill it."""
    parser = argparse.ArgumentParser(
        prog="run_stream.py",
        description="Run continual-learning agents over a task stream and report "
        "accuracy matrices, ACC, BWT, FWT and forgetting.",
    )
    add = parser.add_argument
    add(
        "--stream",
        help="stream name, path/to/file.py:function or package.module:function "
        "(default split-digits; see --list)",
    )
    add(
        "--agents",
        help="comma-separated agent names, or 'all' "
        "(default naive,ewc,lwf,replay,der,er-ace,lifelong)",
    )
    add("--seeds", help="comma-separated seeds, one run per agent and seed (default 0,1,2)")
    add("--n-tasks", type=int, help="number of tasks (default: the stream's own)")
    add("--epochs", type=int, help="passes over each task's training data (default 1)")
    add("--batch-size", type=int, help="training mini-batch size (default 10)")
    add(
        "--lr",
        type=float,
        help="SGD learning rate (default 0.1); a baseline whose published setting pairs its "
        "hyperparameters with another rate keeps that rate (see lifelong/methods/)",
    )
    add(
        "--memory-size",
        type=int,
        help="total stored samples for every memory-based agent alike (default 500)",
    )
    add(
        "--memory-bytes",
        type=int,
        help="a memory budget in bytes instead of --memory-size: every agent's stored "
        "samples, logits, records and indexes together stay within it",
    )
    add(
        "--pretrain-episodes",
        type=int,
        help="ProtoNet pre-training episodes before a task-switching stream (default 3000)",
    )
    add("--data-root", help="folder with the stream's data (e.g. ../shared/data/mnist)")
    add(
        "--download",
        action="store_true",
        default=None,
        help="let the stream download missing data (needs a network)",
    )
    add(
        "--stream-option",
        action="append",
        metavar="KEY=VALUE",
        help="stream-specific option, repeatable (e.g. classes_per_task=2)",
    )
    add(
        "--agent-option",
        action="append",
        metavar="AGENT.KEY=VALUE",
        help="an agent's own setting, repeatable (e.g. lifelong.retrieval=false)",
    )
    add(
        "--logger",
        action="append",
        choices=("tensorboard", "csv"),
        help="also write every job's accuracy matrix through this Avalanche logger, "
        "repeatable (files under OUT/logs/)",
    )
    add(
        "--agent-variant",
        action="append",
        metavar="NAME=AGENT",
        help="compare agent AGENT under the name NAME, with the settings --agent-option "
        "NAME.KEY=VALUE gives it; repeatable (e.g. der-a03=der)",
    )
    add(
        "--validation-fraction",
        type=float,
        help="hold out this share of every task's training data and evaluate on it instead "
        "of the test split, for choosing hyperparameters (default 0: evaluate on test)",
    )
    add("--out", help="output folder (default runs/<stream>__<time>)")
    add("--device", choices=("auto", "cpu", "cuda"), help="where to train (default auto)")
    add(
        "--executor",
        choices=("local", "process", "ray"),
        help="run jobs in this process, a process pool, or on Ray (default local)",
    )
    add(
        "--workers",
        type=int,
        help="parallel runs for --executor process (default: one per CPU core; CUDA runs: one)",
    )
    add("--ray-address", help="Ray cluster address for --executor ray")
    add("--threads", type=int, help="torch CPU threads per run (default 1)")
    add(
        "--evaluator",
        choices=("tensor", "avalanche"),
        help="measure the accuracy matrix from the test tensors, or through Avalanche's "
        "EvaluationPlugin, which also records Avalanche's own metrics (default tensor)",
    )
    add(
        "--checkpoint-every",
        type=float,
        metavar="SECONDS",
        help="save a job's checkpoint after an experience once this long has passed since "
        "its last one; 0 saves after every experience (default 30)",
    )
    add(
        "--ram-metrics",
        action="store_true",
        default=None,
        help="sample memory use from a background thread and record the peak",
    )
    add("--config", type=Path, help="YAML or TOML file with settings; flags override it")
    add("--list", action="store_true", help="list streams and agents, then exit")
    add("--quiet", action="store_true", help="no progress bar")
    add(
        "--resume",
        type=Path,
        metavar="DIR",
        help="finish the stopped run whose output folder is DIR, with the settings it "
        "started with; only --executor, --workers, --ray-address and --quiet may be added",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Merge defaults, the config file and explicit flags into one validated config.

    Raises:
        ConfigError: On an invalid value.
    """
    if args.memory_size is not None and args.memory_bytes is not None:
        raise ConfigError(
            f"--memory-size {args.memory_size} and --memory-bytes {args.memory_bytes} are two "
            "budgets for one memory; give one"
        )
    config = load_config_file(args.config) if args.config else RunConfig()
    stream_updates = _given(
        name=args.stream,
        n_tasks=args.n_tasks,
        data_root=args.data_root,
        download=args.download,
        validation_fraction=args.validation_fraction,
    )
    if args.stream_option:
        stream_updates["options"] = {**config.stream.options, **_options(args.stream_option)}
    train_updates = _given(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        memory_size=args.memory_size,
        memory_bytes=args.memory_bytes,
        pretrain_episodes=args.pretrain_episodes,
    )
    run_updates = _given(
        out=args.out,
        device=args.device,
        executor=args.executor,
        workers=args.workers,
        ray_address=args.ray_address,
        threads=args.threads,
        evaluator=args.evaluator,
        ram_metrics=args.ram_metrics,
        checkpoint_every_s=args.checkpoint_every,
    )
    if args.agent_option:
        run_updates["agent_options"] = _agent_options(config.agent_options, args.agent_option)
    if args.logger:
        run_updates["loggers"] = tuple(dict.fromkeys(args.logger))
    if args.agent_variant:
        run_updates["variants"] = _variants(config.variants, args.agent_variant)
    if args.agents is not None:
        run_updates["agents"] = tuple(a.strip() for a in args.agents.split(",") if a.strip())
    if args.seeds is not None:
        run_updates["seeds"] = parse_seeds(args.seeds)
    config = replace(
        config,
        stream=replace(config.stream, **stream_updates),
        train=replace(config.train, **train_updates),
        **run_updates,
    )
    return validate(config)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.list:
        print(listing())
        return 0
    try:
        # Imported here so that --help and --list stay fast.
        from lifelong.report import format_summary_table

        results = _resume(args) if args.resume is not None else _run(args)
    except _USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if results["scenario"] == Scenario.TASK_SWITCHING.value:
        from lifelong.switching_run import format_switching_table

        print(format_switching_table(results["summary"]))
    else:
        print(format_summary_table(results["summary"]))
        from lifelong.divergence import divergence_message

        for record in results["runs"]:
            if record.get("diverged") is not None:
                print(f"warning: {divergence_message(record['diverged'])}", file=sys.stderr)
    if results["evaluated_on"] == "validation":
        print("evaluated on held-out training data (--validation-fraction), not the test split")
    print(f"results written to {results['config']['out']}")
    return 0


def listing() -> str:
    """Streams and agents with their one-line descriptions."""
    streams = available_streams()
    agents = available_agents()
    width = max(map(len, [*streams, *agents]))
    lines = ["streams:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in streams.items()]
    lines += ["agents:"]
    lines += [f"  {name:<{width}}  {entry.description}" for name, entry in agents.items()]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    config = config_from_args(args)
    from lifelong.run import run

    return run(config, progress=not args.quiet)


def _resume(args: argparse.Namespace) -> dict[str, Any]:
    """Finish the run in ``--resume DIR``, refusing flags that would change its results.

    Raises:
        ConfigError: If a flag other than the executor settings and ``--quiet`` is given.
    """
    refused = [
        "--" + name.replace("_", "-")
        for name, value in vars(args).items()
        if name not in _RESUME_FLAGS and value is not None and value is not False
    ]
    if refused:
        raise ConfigError(
            f"--resume continues a run with the settings it started with; drop "
            f"{', '.join(refused)} (only --executor, --workers, --ray-address and --quiet "
            f"may come with --resume)"
        )
    from lifelong.run import resume

    return resume(
        args.resume,
        progress=not args.quiet,
        executor=args.executor,
        workers=args.workers,
        ray_address=args.ray_address,
    )


def _given(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--stream-option must look like KEY=VALUE, got {pair!r}")
        options[key.strip()] = _literal(text.strip())
    return options


def _agent_options(
    base: Mapping[str, Mapping[str, Any]], pairs: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``base`` with each ``AGENT.KEY=VALUE`` of ``pairs`` applied."""
    options = {agent: dict(settings) for agent, settings in base.items()}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        # Settings have no dots; agent and variant names may (ll-slow0.998).
        agent, dot, key = name.strip().rpartition(".")
        if not (sep and dot and agent and key):
            raise ConfigError(
                f"--agent-option must look like AGENT.KEY=VALUE (e.g. lifelong.retrieval=false), "
                f"got {pair!r}"
            )
        options.setdefault(agent, {})[key] = _literal(text.strip())
    return options


def _variants(base: Mapping[str, str], pairs: Sequence[str]) -> dict[str, str]:
    """``base`` with each ``NAME=AGENT`` of ``pairs`` added."""
    variants = dict(base)
    for pair in pairs:
        name, sep, agent = (part.strip() for part in pair.partition("="))
        if not (sep and name and agent):
            raise ConfigError(
                f"--agent-variant must look like NAME=AGENT (e.g. der-a03=der), got {pair!r}"
            )
        variants[name] = agent
    return variants


def _literal(text: str) -> Any:
    """Read ``2`` as int, ``0.5`` as float, ``true``/``false`` as bool, else a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text
