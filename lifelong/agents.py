"""The agent registry: every strategy a run can compare, by name.

An agent is a factory ``factory(context: AgentContext) -> SupervisedTemplate``: it receives
the model, the training settings and the evaluator the run built, and returns an Avalanche
strategy ready for ``strategy.train(train_stream, eval_streams=[test_stream])``.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from lifelong.config import ConfigError, TrainConfig
from lifelong.prequential import OnlineLearner
from streams import Scenario
from streams.base import TASK_SEQUENCE_SCENARIOS
from streams.references import import_reference

ALL_SCENARIOS = TASK_SEQUENCE_SCENARIOS
"""Every scenario of a sequence of tasks (class-, task- and domain-incremental). Task-switching
streams are another protocol (test-then-train on few-shot steps): an agent runs on them only
if it names ``Scenario.TASK_SWITCHING``."""


class UnknownAgentError(ValueError):
    """The name is not a registered agent."""


class UnsupportedScenarioError(ValueError):
    """The agent cannot run on the stream's scenario."""


class MemoryBudgetError(ValueError):
    """The shared ``memory_size`` is too small for an agent on this stream."""


@dataclass(frozen=True)
class StreamFacts:
    """What an agent may know about a stream before it starts: no data, no task ids."""

    scenario: Scenario
    n_tasks: int
    n_classes: int
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class AgentContext:
    """Everything an agent factory receives.

    Attributes:
        model: The network, freshly initialised under the run's seed, already on ``device``.
        train: Epochs, batch sizes, learning rate and the shared ``memory_size`` budget.
        stream: Facts about the stream the agent will see.
        device: Where training runs.
        evaluator: The run's evaluation plugin; pass it to the strategy unchanged.
        plugins: Extra plugins the run needs (progress reporting); pass them on.
        seed: The run's seed, for components that keep their own random generator.
        options: The agent's own settings (an instance of its registered ``options`` class,
            with the run's ``agent_options`` applied), or ``None`` if it has none.
    """

    model: nn.Module
    train: TrainConfig
    stream: StreamFacts
    device: torch.device
    evaluator: EvaluationPlugin
    plugins: Sequence[SupervisedPlugin]
    seed: int
    options: Any = None


class AgentFactory(Protocol):
    """A function that builds a strategy from an ``AgentContext``.

    On task sequences it returns an Avalanche strategy; on task-switching streams, an
    ``OnlineLearner`` (``lifelong.prequential``).
    """

    def __call__(
        self, context: AgentContext, /
    ) -> SupervisedTemplate | OnlineLearner:  # pragma: no cover
        """Build the strategy."""
        ...


@dataclass(frozen=True)
class AgentEntry:
    """A registered agent.

    Attributes:
        name: The name users pass to ``--agents``.
        factory: Builds the strategy.
        description: One line for ``--list``.
        scenarios: The scenarios the agent can run on.
        uses_memory: Whether ``--memory-size`` bounds what it stores.
        options: The frozen dataclass of its own settings, which ``--agent-option`` sets;
            ``None`` if it has none.
        pretraining: On task-switching streams, the pre-training whose network it receives
            as ``context.model``: ``protonet`` (``lifelong.pretraining``), ``maml`` or
            ``anil`` (``lifelong.maml``).
        online_strategy: On task-switching streams the factory returns an Avalanche
            strategy, which the run trains step by step, each step an experience of its own
            (``lifelong.methods.avalanche_online``); it then receives the pre-trained encoder
            with a zero-initialised linear head as ``context.model``. ``False``: it returns
            an ``OnlineLearner`` and receives the encoder alone.
    """

    name: str
    factory: AgentFactory
    description: str
    scenarios: frozenset[Scenario]
    uses_memory: bool
    options: type | None = None
    pretraining: str = "protonet"
    online_strategy: bool = False


_REGISTRY: dict[str, AgentEntry] = {}

PRETRAININGS = ("protonet", "maml", "anil")
"""The pre-trainings a task-switching run can give an agent."""


def register_agent(
    name: str,
    *,
    description: str | None = None,
    scenarios: frozenset[Scenario] = ALL_SCENARIOS,
    uses_memory: bool = False,
    options: type | None = None,
    pretraining: str = "protonet",
    online_strategy: bool = False,
) -> Callable[[AgentFactory], AgentFactory]:
    """Register an agent factory under ``name``.

    ``options`` is the frozen dataclass of the agent's own settings; its factory then finds
    an instance, with the run's ``agent_options`` applied, in ``context.options``.
    ``pretraining`` names the pre-trained network a task-switching run hands it
    (``PRETRAININGS``); ``online_strategy`` says that on task-switching streams the factory
    returns an Avalanche strategy to run online (``AgentEntry.online_strategy``).

    Raises:
        ValueError: If ``name`` is already registered, ``pretraining`` is unknown, or
            ``online_strategy`` is set for an agent that does not run on task-switching
            streams.
    """

    def decorator(factory: AgentFactory) -> AgentFactory:
        if name in _REGISTRY:
            raise ValueError(f"agent {name!r} is already registered; pick another name")
        doc = inspect.getdoc(factory) or ""
        line = description or (doc.strip().splitlines()[0] if doc.strip() else "")
        if options is not None and not dataclasses.is_dataclass(options):
            raise TypeError(f"options of agent {name!r} must be a dataclass, got {options!r}")
        if pretraining not in PRETRAININGS:
            raise ValueError(
                f"agent {name!r} asks for pre-training {pretraining!r}; choose from "
                f"{', '.join(PRETRAININGS)}"
            )
        if online_strategy and Scenario.TASK_SWITCHING not in scenarios:
            raise ValueError(
                f"agent {name!r} sets online_strategy but does not list "
                "Scenario.TASK_SWITCHING in its scenarios; add it or drop online_strategy"
            )
        _REGISTRY[name] = AgentEntry(
            name,
            factory,
            line,
            frozenset(scenarios),
            uses_memory,
            options,
            pretraining,
            online_strategy,
        )
        return factory

    return decorator


def available_agents() -> dict[str, AgentEntry]:
    """Every registered agent, by name, sorted."""
    return dict(sorted(_REGISTRY.items()))


def get_agent(name: str) -> AgentEntry:
    """Look an agent up: a registered name, an entry point, or a factory reference.

    In order: an agent registered with ``register_agent``; an agent an installed package
    advertises in the entry-point group ``lifelong.agents`` (``name =
    "package.module:factory"``); a reference ``path/to/file.py:factory`` or
    ``package.module:factory``. A plug-in's factory may be registered with
    ``register_agent`` in its own module (its scenarios, memory use and settings then
    apply); a plain function is taken as an agent for every task-sequence scenario, without
    settings of its own.

    Raises:
        UnknownAgentError: If nothing matches; the message lists the registered names.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _PLUGINS:
        return _PLUGINS[name]
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name == name:
            return _plugin(name, point.load())
    if ":" in name:
        return _plugin(name, _load_reference(name))
    raise UnknownAgentError(
        f"unknown agent {name!r}; choose from: {', '.join(available_agents())}, or pass "
        "path/to/file.py:factory or package.module:factory"
    )


ENTRY_POINT_GROUP = "lifelong.agents"
"""Entry-point group in which installed packages advertise agent factories."""

_PLUGINS: dict[str, AgentEntry] = {}
"""Agents reached by entry point or reference, loaded once per process."""


def _plugin(name: str, factory: Any) -> AgentEntry:
    if not callable(factory):
        raise UnknownAgentError(
            f"agent {name!r} is a {type(factory).__name__}, not a factory; name a function "
            "that takes an AgentContext and returns a strategy"
        )
    registered = [entry for entry in _REGISTRY.values() if entry.factory is factory]
    if registered:
        entry = dataclasses.replace(registered[0], name=name)
    else:
        doc = inspect.getdoc(factory) or ""
        line = doc.strip().splitlines()[0] if doc.strip() else f"plug-in agent {name}"
        entry = AgentEntry(name, factory, line, frozenset(ALL_SCENARIOS), False, None)
    _PLUGINS[name] = entry
    return entry


def _load_reference(reference: str) -> Any:
    return import_reference(
        reference, kind="agent", error=UnknownAgentError, hint="name its factory function"
    )


def make_agent(name: str, context: AgentContext) -> SupervisedTemplate | OnlineLearner:
    """Build the strategy registered as ``name`` for ``context``.

    Raises:
        UnknownAgentError: If ``name`` is not registered.
        UnsupportedScenarioError: If the agent cannot run on the stream's scenario.
    """
    entry = get_agent(name)
    check_scenario(entry, context.stream.scenario)
    return entry.factory(context)


def check_scenario(entry: AgentEntry, scenario: Scenario, stream_name: str | None = None) -> None:
    """Refuse a scenario the agent does not support, in one line.

    Args:
        entry: The registered agent.
        scenario: The stream's scenario.
        stream_name: The stream's name, for the message; ``None`` says "a ... stream".

    Raises:
        UnsupportedScenarioError: If ``scenario`` is not among ``entry.scenarios``.
    """
    if scenario in entry.scenarios:
        return
    where = (
        f"stream {stream_name!r} ({scenario.value})"
        if stream_name is not None
        else f"a {scenario.value} stream"
    )
    supported = ", ".join(sorted(s.value for s in entry.scenarios))
    raise UnsupportedScenarioError(
        f"agent {entry.name!r} cannot run on {where}; it supports: {supported}"
    )


def agent_options(name: str, overrides: Mapping[str, Any]) -> Any:
    """The settings of agent ``name`` with ``overrides`` applied, checked field by field.

    Args:
        name: A registered agent.
        overrides: Field name to value, as a config file or ``--agent-option`` gives them.

    Returns:
        An instance of the agent's options class, or ``None`` if it has none and no
        overrides were given.

    Raises:
        UnknownAgentError: If ``name`` is not registered.
        ConfigError: If the agent has no settings, a field is unknown (the valid ones are
            listed), or a value has the wrong type or is refused by the class.
    """
    entry = get_agent(name)
    if entry.options is None:
        if overrides:
            raise ConfigError(f"agent {name!r} has no settings; drop its --agent-option")
        return None
    hints = typing.get_type_hints(entry.options)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(entry.options) if f.init}
    checked = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ConfigError(
                f"agent {name!r} has no setting {key!r}; valid: {', '.join(sorted(fields))}"
            )
        checked[key] = _typed(f"{name}.{key}", value, fields[key])
    try:
        return entry.options(**checked)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"agent {name!r}: {error}") from error


def _typed(where: str, value: Any, kind: Any) -> Any:
    """``value`` as a ``kind`` (bool, int, float or str), or a one-line ``ConfigError``."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (bool, int, float, str) and type(value) is kind:
        return value
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    raise ConfigError(f"{where} must be {expected.get(kind, str(kind))}, got {value!r}")


def settings_record(variants: Mapping[str, str], agent: str, options: Any) -> dict[str, Any]:
    """What a run record says of its agent's settings.

    ``agent_settings``: the resolved settings (``None`` for an agent without any); for a
    variant, ``variant_of``: the registered agent it runs.
    """
    record: dict[str, Any] = {
        "agent_settings": None if options is None else dataclasses.asdict(options)
    }
    if agent in variants:
        record["variant_of"] = variants[agent]
    return record
