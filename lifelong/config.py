"""Typed, frozen configuration: one dataclass per component, nested into the run's.

Each component receives only its own part: a stream its ``StreamConfig``, an agent the
``TrainConfig``. The resolved ``RunConfig`` is saved beside every result.
"""

from __future__ import annotations

import json
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

EXECUTORS = ("local", "process", "ray")
DEVICES = ("auto", "cpu", "cuda")
EVALUATORS = ("tensor", "avalanche")
LOGGERS = ("tensorboard", "csv")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names it and the fix."""


@dataclass(frozen=True)
class TrainConfig:
    """How every agent trains; the same values for all agents of a run.

    Defaults follow the GEM protocol (Lopez-Paz & Ranzato 2017): one epoch, batch 10,
    SGD with learning rate 0.1, an MLP with two hidden layers of 100 units.

    Attributes:
        epochs: Passes over each experience's training data.
        batch_size: Training mini-batch size.
        eval_batch_size: Evaluation mini-batch size (does not change results).
        lr: SGD learning rate.
        memory_size: Total stored samples allowed to every memory-based agent alike.
        memory_bytes: A budget in bytes instead (``None``: ``memory_size`` bounds the
            memory): every agent's stored bytes of every kind (``lifelong.budget``) stay
            within it, and a sample-based baseline stores as many float32 samples as fit.
        hidden: Hidden layer widths of the MLP every agent gets.
        pretrain_episodes: ProtoNet pre-training episodes before a task-switching stream
            (3,000: the published Omniglot recipe; see ``lifelong.pretraining``).
    """

    epochs: int = 1
    batch_size: int = 10
    eval_batch_size: int = 256
    lr: float = 0.1
    memory_size: int = 500
    memory_bytes: int | None = None
    hidden: tuple[int, ...] = (100, 100)
    pretrain_episodes: int = 3000


@dataclass(frozen=True)
class StreamConfig:
    """Which stream to build and how.

    Attributes:
        name: A registered stream, an entry point, or ``file.py:function`` /
            ``package.module:function``.
        n_tasks: Number of tasks; ``None`` keeps the stream's default.
        data_root: Folder with the stream's data; ``None`` keeps the stream's default.
        download: Let the stream fetch missing data over the network.
        options: Stream-specific options, e.g. ``{"classes_per_task": 2}``.
        validation_fraction: ``0`` evaluates on the stream's test split. A share in
            ``(0, 1)`` holds out that much of every task's training data and evaluates on
            it instead, so hyperparameters can be chosen without reading the test split.
    """

    name: str = "split-digits"
    n_tasks: int | None = None
    data_root: str | None = None
    download: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    validation_fraction: float = 0.0


@dataclass(frozen=True)
class RunConfig:
    """Everything one benchmark invocation needs.

    Attributes:
        stream: The stream every agent sees.
        agents: Agent names to compare, in order; ``("all",)`` means every agent that
            supports the stream's scenario.
        seeds: One run per agent and seed; a seed fixes the stream's data, the model's
            initialisation and the training order.
        train: Training settings shared by all agents.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        out: Output folder; ``None`` gives ``runs/<stream>__<time>``.
        executor: ``local`` (this process), ``process`` (a process pool) or ``ray``.
        workers: Parallel runs for the ``process`` executor; ``None``: one per CPU core,
            and for CUDA runs one, in this process (workers would share the device).
        ray_address: Address of a Ray cluster for the ``ray`` executor; ``None`` starts
            a local one.
        threads: Torch CPU threads per run. Fixed so that results do not depend on the
            executor, and so that parallel runs do not oversubscribe the cores.
        evaluator: ``tensor`` computes the accuracy matrix with one batched pass over each
            test set's tensors (``lifelong.tensor_evaluator``); ``avalanche`` evaluates
            through Avalanche's ``EvaluationPlugin`` and also records Avalanche's own metric
            values. Both give the same matrix; ``tensor`` is several times faster.
        ram_metrics: Sample the process's memory from a background thread (Avalanche's
            ``ram_usage_metrics``) and record the peak; off, no thread runs.
        cache_dir: Where pre-trained encoders are kept between runs, by settings, seed and
            data; ``None`` pre-trains anew every run.
        checkpoint_every_s: A job saves its checkpoint after an experience once this many
            seconds of its wall time have passed since its last one (``0``: after every
            experience). A save writes the whole strategy, replay buffers and the data sets
            they point into included (tens of MB on a 20-task MNIST stream), so a short job
            saves none and a killed one reruns at most this long.
        agent_options: Per agent, settings of its own that replace its defaults, e.g.
            ``{"lifelong": {"retrieval": False}}`` (``--agent-option lifelong.retrieval=false``).
        variants: Named variants: a name used in ``agents`` mapped to the registered agent
            it runs, with the settings ``agent_options`` holds under that name (in a file,
            ``agents: [der, {name: der, as: der-a03, alpha: 0.3}]``; on the command line,
            ``--agent-variant der-a03=der --agent-option der-a03.alpha=0.3``).
        loggers: Avalanche loggers that also get every job's accuracy matrix, row by row
            (``tensorboard``, ``csv``; ``lifelong.loggers``), under ``<out>/logs/``.
    """

    stream: StreamConfig = field(default_factory=StreamConfig)
    agents: tuple[str, ...] = ("naive", "ewc", "lwf", "replay", "der", "er-ace", "lifelong")
    seeds: tuple[int, ...] = (0, 1, 2)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"
    out: str | None = None
    executor: str = "local"
    workers: int | None = None
    ray_address: str | None = None
    threads: int = 1
    evaluator: str = "tensor"
    ram_metrics: bool = False
    checkpoint_every_s: float = 30.0
    cache_dir: str | None = "runs/pretrained"
    agent_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    variants: Mapping[str, str] = field(default_factory=dict)
    loggers: tuple[str, ...] = ()

    def registered_agent(self, name: str) -> str:
        """The registered agent that ``name`` (an agent or a variant) runs."""
        return self.variants.get(name, name)


def validate(config: RunConfig) -> RunConfig:
    """Check every value a user can set; return the config unchanged if it is valid.

    Raises:
        ConfigError: On the first invalid value, naming it and the fix.
    """
    check_types(config)
    train = config.train
    _require(
        config.stream.n_tasks is None or config.stream.n_tasks >= 1,
        f"--n-tasks must be at least 1, got {config.stream.n_tasks}",
    )
    fraction = config.stream.validation_fraction
    _require(
        fraction == 0 or 0 < fraction < 1,
        f"--validation-fraction must be 0 (evaluate on test) or between 0 and 1, got {fraction}",
    )
    _require(train.epochs >= 1, f"--epochs must be at least 1, got {train.epochs}")
    _require(train.batch_size >= 1, f"--batch-size must be at least 1, got {train.batch_size}")
    _require(
        train.pretrain_episodes >= 1,
        f"pretrain_episodes must be at least 1, got {train.pretrain_episodes}",
    )
    _require(
        train.eval_batch_size >= 1,
        f"eval_batch_size must be at least 1, got {train.eval_batch_size}",
    )
    _require(
        train.lr > 0 and train.lr == train.lr, f"--lr must be a positive number, got {train.lr}"
    )
    _require(
        train.memory_size >= 0,
        f"--memory-size must be 0 or more stored samples, got {train.memory_size}",
    )
    _require(
        train.memory_bytes is None or train.memory_bytes >= 1,
        f"--memory-bytes must be a positive number of bytes, got {train.memory_bytes}",
    )
    _require(
        all(width >= 1 for width in train.hidden),
        f"hidden layer widths must be at least 1, got {train.hidden}",
    )
    _require(bool(config.agents), "--agents needs at least one agent name")
    _require(
        len(set(config.agents)) == len(config.agents),
        f"--agents lists a name twice: {','.join(config.agents)}",
    )
    _require(bool(config.seeds), "--seeds needs at least one seed, e.g. --seeds 0,1,2")
    _require(
        len(set(config.seeds)) == len(config.seeds),
        f"--seeds lists a seed twice: {','.join(map(str, config.seeds))}",
    )
    _require(
        all(seed >= 0 for seed in config.seeds),
        f"--seeds must be non-negative integers, got {config.seeds}",
    )
    _require(
        config.device in DEVICES,
        f"--device must be one of {', '.join(DEVICES)}, got {config.device!r}",
    )
    _require(
        config.executor in EXECUTORS,
        f"--executor must be one of {', '.join(EXECUTORS)}, got {config.executor!r}",
    )
    _require(
        config.workers is None or config.workers >= 1,
        f"--workers must be at least 1, got {config.workers}",
    )
    _require(config.threads >= 1, f"--threads must be at least 1, got {config.threads}")
    _require(
        config.checkpoint_every_s >= 0,
        f"--checkpoint-every must be 0 or more seconds, got {config.checkpoint_every_s}",
    )
    _require(
        config.evaluator in EVALUATORS,
        f"--evaluator must be one of {', '.join(EVALUATORS)}, got {config.evaluator!r}",
    )
    unknown_loggers = sorted(set(config.loggers) - set(LOGGERS))
    _require(
        not unknown_loggers,
        f"--logger must be one of {', '.join(LOGGERS)}, got {', '.join(unknown_loggers)}",
    )
    _require(
        not config.loggers or config.evaluator == "tensor",
        "--logger logs the tensor evaluator's matrix; drop --evaluator avalanche or --logger",
    )
    _check_agent_options_shape(config.agent_options)
    for variant, agent in config.variants.items():
        _require(
            isinstance(agent, str) and variant in config.agents,
            f"variant {variant!r} of {agent!r} is defined but not compared; add it to --agents "
            "or drop it",
        )
    return config


def check_types(config: Any, where: str = "") -> None:
    """Check every field of a config dataclass (nested ones too) against its annotation.

    Integers are refused where a bool is meant and bools where a number is; an integer is
    accepted for a float. Run before any range check, so that a file's ``lr: abc`` or
    ``epochs: 1.5`` ends in one line naming the key instead of a traceback.

    Raises:
        ConfigError: On the first value of the wrong type, naming its key and type.
    """
    hints = typing.get_type_hints(type(config))
    for item in fields(config):
        value, key = getattr(config, item.name), f"{where}{item.name}"
        if is_dataclass(value):
            check_types(value, f"{key}.")
        elif not _fits(value, hints[item.name]):
            hint = "fix it in the file or flag that set it"
            if isinstance(value, str) and _is_number(value):
                hint = "YAML reads a number like 1e-3 as text: write 1.0e-3"
            raise ConfigError(
                f"config key {key} must be {_describe(hints[item.name])}, got {value!r} "
                f"({type(value).__name__}); {hint}"
            )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _fits(value: Any, annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, tuple) and all(_fits(v, args[0]) for v in value)
    if origin is Mapping or annotation is Mapping:
        return isinstance(value, Mapping)
    return isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is tuple:
        plural = {int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(args[0], _describe(args[0]))}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             type(None): "null"}
    return names.get(annotation, "a mapping" if origin is Mapping else str(annotation))


def _check_agent_options_shape(options: Any) -> None:
    """``agent_options`` must map agent names to mappings of setting names (values: later)."""
    _require(
        isinstance(options, Mapping)
        and all(isinstance(k, str) and isinstance(v, Mapping) for k, v in options.items()),
        f"agent_options must map agent names to their settings, e.g. "
        f"{{lifelong: {{retrieval: false}}}}; got {options!r}",
    )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The config as JSON-ready plain data (tuples become lists)."""
    data: dict[str, Any] = json.loads(json.dumps(asdict(config)))
    return data


def config_from_dict(data: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Build a config from nested plain data, over ``base`` (defaults if ``None``).

    Raises:
        ConfigError: If a key is unknown (the message lists the valid ones) or a value
            has the wrong type.
    """
    base = base or RunConfig()
    _reject_unknown(data, RunConfig, "config")
    updates: dict[str, Any] = {}
    for key, value in data.items():
        if key == "stream":
            updates[key] = _nested(value, base.stream, "stream")
        elif key == "train":
            updates[key] = _nested(value, base.train, "train")
        elif key == "agents":
            names, variants, options = _agent_entries(value)
            updates[key] = names
            if variants:
                updates["variants"] = {**base.variants, **variants}
            if options:
                given = data.get("agent_options", base.agent_options)
                _check_agent_options_shape(given)
                merged = {k: dict(v) for k, v in given.items()}
                for name, settings in options.items():
                    merged.setdefault(name, {}).update(settings)
                updates["agent_options"] = merged
        elif key == "seeds":
            updates[key] = parse_seeds(value)
        elif key == "loggers":
            updates[key] = _as_tuple(value, key)
        elif key == "agent_options" and "agent_options" in updates:
            continue  # already merged with the settings given in ``agents``
        else:
            updates[key] = value
    try:
        return replace(base, **updates)
    except TypeError as error:
        raise ConfigError(f"invalid config: {error}") from error


def load_config_file(path: Path, base: RunConfig | None = None) -> RunConfig:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config file over ``base``.

    Raises:
        ConfigError: If the file is missing, unreadable, of another format, or invalid.
    """
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; check the path")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"config file {str(path)!r} must end in .yaml, .yml or .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        detail = str(error).splitlines()[0]
        raise ConfigError(f"config file {str(path)!r} is not valid: {detail}") from error
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of settings")
    return config_from_dict(data, base)


def _agent_entries(
    value: Any,
) -> tuple[tuple[str, ...], dict[str, str], dict[str, dict[str, Any]]]:
    """Read ``agents``: names, or mappings ``{name: AGENT, as: VARIANT, SETTING: VALUE...}``.

    Returns:
        The names to compare (a variant's ``as``), the variants (name to agent) and the
        settings given in the entries (by name).

    Raises:
        ConfigError: On an entry that is neither a name nor a mapping with a ``name``.
    """
    if not isinstance(value, list | tuple):
        return _as_tuple(value, "agents"), {}, {}
    names: list[str] = []
    variants: dict[str, str] = {}
    options: dict[str, dict[str, Any]] = {}
    for entry in value:
        if isinstance(entry, str):
            names.append(entry)
            continue
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(
                f"each entry of agents must be a name or a mapping with a name, e.g. "
                f"{{name: der, as: der-a03, alpha: 0.3}}; got {entry!r}"
            )
        settings = {k: v for k, v in entry.items() if k not in ("name", "as")}
        name = entry.get("as", entry["name"])
        if not isinstance(name, str) or not name:
            raise ConfigError(f"'as' of agent {entry['name']!r} must be a name, got {name!r}")
        if name != entry["name"]:
            variants[name] = entry["name"]
        names.append(name)
        if settings:
            options[name] = settings
    return tuple(names), variants, options


def _nested(value: Any, base: Any, name: str) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key {name!r} must be a mapping, got {value!r}")
    _reject_unknown(value, type(base), name)
    cleaned = {
        key: _as_tuple(item, f"{name}.{key}") if key == "hidden" else item
        for key, item in value.items()
    }
    return replace(base, **cleaned)


def _reject_unknown(data: Mapping[str, Any], cls: type, where: str) -> None:
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown {where} key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}"
        )


def parse_seeds(value: Any) -> tuple[int, ...]:
    """Read seeds from ``"0,1,2"``, a list, or one integer.

    Raises:
        ConfigError: If a seed is not a non-negative integer.
    """
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    seeds = []
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or not text.isdigit():
            raise ConfigError(
                f"--seeds must be non-negative integers separated by commas, got {text!r}"
                " (e.g. --seeds 0,1,2)"
            )
        seeds.append(int(text))
    return tuple(seeds)


def _as_tuple(value: Any, name: str) -> tuple[Any, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple):
        return tuple(value)
    raise ConfigError(f"config key {name!r} must be a list, got {value!r}")
