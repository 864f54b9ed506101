"""The stream contract: what every task stream declares and hands out.

A stream is a function ``factory(spec: StreamSpec) -> TaskStream``. The returned
``TaskStream`` wraps a real Avalanche benchmark (train and test streams of experiences,
with targets and task labels attached), so every Avalanche strategy runs on it, and
declares what a learner and an evaluator need to know up front: the scenario, the number
of classes and the input shape.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from avalanche.benchmarks.scenarios.generic_scenario import CLScenario

if TYPE_CHECKING:
    from streams.switching import SwitchingStream


class Scenario(enum.StrEnum):
    """How tasks differ and what the learner is told at test time."""

    CLASS_INCREMENTAL = "class-incremental"
    """New classes per task, one head over all classes, no task id at test time."""
    TASK_INCREMENTAL = "task-incremental"
    """New classes per task, the task id is given at train and test time."""
    DOMAIN_INCREMENTAL = "domain-incremental"
    """The same classes in every task, shifted inputs (rotations, permutations, ...)."""
    TASK_SWITCHING = "task-switching"
    """Few-shot steps whose task switches and comes back (``streams.switching``); not a
    sequence of Avalanche experiences."""


TASK_SEQUENCE_SCENARIOS = frozenset(
    {Scenario.CLASS_INCREMENTAL, Scenario.TASK_INCREMENTAL, Scenario.DOMAIN_INCREMENTAL}
)
"""The scenarios of streams that are a sequence of long tasks (``TaskStream``)."""


class StreamError(ValueError):
    """A stream could not be built: missing or malformed data, or a bad option.

    The message is one line naming the stream, what was looked at, and the fix.
    """


@dataclass(frozen=True)
class StreamSpec:
    """What a user asks of a stream; every stream factory receives exactly this.

    Attributes:
        n_tasks: Number of tasks (experiences); ``None`` takes the stream's default.
        seed: Seed for everything random in building the stream (task order, splits,
            rotation angles, permutations). The same seed gives the same data.
        data_root: Folder holding the stream's data; ``None`` takes the stream's default.
        download: Whether the stream may fetch missing data over the network.
        options: Stream-specific extras, e.g. ``{"classes_per_task": 2}``.
    """

    n_tasks: int | None = None
    seed: int = 0
    data_root: Path | None = None
    download: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskStream:
    """A built stream: an Avalanche benchmark plus what it declares about itself.

    Attributes:
        name: The registered name the stream was built under.
        scenario: Class-, task- or domain-incremental.
        n_classes: Number of output classes a single-head model needs.
        input_shape: Shape of one input, without the batch dimension.
        benchmark: The Avalanche benchmark; ``train_stream`` and ``test_stream`` have the
            same length and matching experience ids.
        task_identities: For each experience, the id of its underlying data
            distribution. Equal to ``range(n_tasks)`` unless the stream revisits earlier
            distributions (recurring streams), where it is the ground truth a task memory
            is scored against.
        description: One line saying what the stream is.
    """

    name: str
    scenario: Scenario
    n_classes: int
    input_shape: tuple[int, ...]
    benchmark: CLScenario
    task_identities: tuple[int, ...]
    description: str = ""

    @property
    def n_tasks(self) -> int:
        """Number of experiences in the training stream."""
        return len(self.benchmark.train_stream)


class StreamFactory(Protocol):
    """A function that builds a stream from a ``StreamSpec``."""

    def __call__(self, spec: StreamSpec, /) -> TaskStream | SwitchingStream:  # pragma: no cover
        """Build the stream."""
        ...
