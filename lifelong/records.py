"""The results file's schema: a typed record per job, a typed summary row per agent, the file.

Every place that writes or reads a run's results goes through these classes: a job builds its
record (``lifelong.run``, ``lifelong.switching_run``), a checkpoint folder stores and reads it
back (``lifelong.checkpoint``), the report summarises and writes it (``lifelong.report``), and
``benchmarks/merge_results.py`` merges several files. Reading checks every declared field's
type and value and names the first problem in one line (``runs[2] (agent 'der', seed 1)['acc']
is nan; it must be a finite number``).

Two kinds of job record, one per kind of stream:

- :class:`SequenceRun`, a task sequence: the accuracy matrix R and its metrics.
- :class:`SwitchingRun`, a task-switching stream: the test-then-train accuracies, OCA and
  the stream's ground truth.

A record's keys beyond its declared fields (what an agent or a plugin reports about itself,
such as ``lifelong``'s ``task_memory`` or ``replay-coded``'s ``codec``; Avalanche's own metric
values, ``avalanche_*``) stay in its ``extras`` and are written back at the top level, so
``results.json`` keeps one flat dict per run. ``avalanche_*`` extras must be finite numbers.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

import numpy as np

from lifelong.metrics import as_accuracy_matrix

__all__ = [
    "ResultsFile",
    "SequenceRun",
    "SequenceSummary",
    "SwitchingRun",
    "SwitchingSummary",
    "matrix_csv_name",
    "run_from_dict",
]

_OMIT_IF_NONE = {"omit_if_none": True}
"""Field metadata: a ``None`` value is left out of the written dict (as the key always was)."""

_R = TypeVar("_R", bound="_Record")


@dataclass(frozen=True)
class _Record:
    """Declared fields checked on reading, other keys kept in ``extras``, written flat."""

    extras: dict[str, Any] = field(default_factory=dict, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """The record as it is written to JSON: declared fields, then the extras."""
        out: dict[str, Any] = {}
        for spec in _declared(type(self)):
            value = getattr(self, spec.name)
            if value is None and spec.metadata.get("omit_if_none"):
                continue
            out[spec.name] = value
        return {**out, **self.extras}

    @classmethod
    def from_dict(cls: type[_R], data: Any, where: str) -> _R:
        """Read and check one record.

        Args:
            data: The record as read from JSON (or built by a job).
            where: How the error names it, for example ``"runs[2]"``.

        Raises:
            ValueError: Naming the first missing key or wrong value.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} is a {type(data).__name__}; it must be a dict")
        specs = _declared(cls)
        for spec in specs:
            if _required(spec) and spec.name not in data:
                raise ValueError(
                    f"{where} is missing the key {spec.name!r}; it needs {cls.required_keys()}"
                )
        where = cls._name_with_identity(data, where)
        hints = _type_hints(cls)
        values = {}
        for spec in specs:
            if spec.name in data:
                value = _plain(data[spec.name])
                values[spec.name] = _checked(value, hints[spec.name], where, spec.name)
        extras = {key: value for key, value in data.items() if key not in values}
        for key, value in extras.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has the key {key!r}; keys must be str")
            if key.startswith("avalanche_"):
                _checked(value, float, where, key)
        record = cls(**values, extras=extras)
        record._check(where)
        return record

    @classmethod
    def required_keys(cls) -> list[str]:
        """The keys every record of this kind must have."""
        return [spec.name for spec in _declared(cls) if _required(spec)]

    @classmethod
    def _name_with_identity(cls, data: Mapping[str, Any], where: str) -> str:
        """``where`` with what identifies the record, once that is checked."""
        return where

    def _check(self, where: str) -> None:
        """Checks beyond each field's type; none by default."""


@dataclass(frozen=True)
class _JobRecord(_Record):
    """What every job record says: who ran, on which seed, for how long, keeping what."""

    agent: str
    seed: int

    @classmethod
    def _name_with_identity(cls, data: Mapping[str, Any], where: str) -> str:
        agent = _checked(data["agent"], str, where, "agent")
        seed = _checked(data["seed"], int, where, "seed")
        if not agent:
            raise ValueError(f"{where}['agent'] is {agent!r}; it must be a non-empty str")
        return f"{where} (agent {agent!r}, seed {seed})"


@dataclass(frozen=True)
class SequenceRun(_JobRecord):
    """One agent x seed on a task sequence.

    Attributes:
        accuracy_matrix: R, (T + 1) x T fractions: row 0 before training, row i after task i.
        acc: Mean final accuracy over tasks (``lifelong.metrics``).
        bwt: Backward transfer.
        fwt: Forward transfer.
        forgetting: Mean drop from each task's best accuracy to its final one.
        wall_time_s: The job's wall time over all its sessions, checkpoint saves left out.
        task_identities: Which distribution each task comes from (recurring streams).
        eval_time_s: Of the wall time, the part spent evaluating.
        train_time_s: The rest.
        stored_samples: Samples in the agent's memory at the end; ``None`` without one.
        memory_bytes: Everything the agent keeps beside its network, in bytes.
        memory_bytes_by_kind: The same split by kind (``lifelong.budget.KINDS``).
        memory_bytes_by_experience: The total after each experience.
        agent_settings: The agent's resolved settings; ``None`` for an agent without any.
        variant_of: For a variant (``--agent-option`` under a new name), the agent it runs.
        diverged: Where the training loss first became NaN or infinite, if it did.
    """

    accuracy_matrix: list[list[float]]
    acc: float
    bwt: float
    fwt: float
    forgetting: float
    wall_time_s: float
    task_identities: list[int] | None = None
    eval_time_s: float | None = None
    train_time_s: float | None = None
    stored_samples: int | None = None
    memory_bytes: int | None = None
    memory_bytes_by_kind: dict[str, int] = field(default_factory=dict)
    memory_bytes_by_experience: list[int] = field(default_factory=list)
    agent_settings: dict[str, Any] | None = None
    variant_of: str | None = field(default=None, metadata=_OMIT_IF_NONE)
    diverged: dict[str, Any] | None = None

    @property
    def n_tasks(self) -> int:
        """T, the number of tasks of the stream."""
        return len(self.accuracy_matrix[0])

    @property
    def avalanche(self) -> dict[str, float]:
        """Avalanche's own metric values (``avalanche_*``), where its evaluator ran."""
        return {k: v for k, v in self.extras.items() if k.startswith("avalanche_")}

    def _check(self, where: str) -> None:
        _check_wall_time(self.wall_time_s, where)
        try:
            as_accuracy_matrix(self.accuracy_matrix)
        except ValueError as err:
            raise ValueError(f"{where}['accuracy_matrix']: {err}") from err


@dataclass(frozen=True)
class SwitchingRun(_JobRecord):
    """One agent x seed on a task-switching stream, tested on each batch before training on it.

    Attributes:
        oca: Online cumulative accuracy: the mean over steps of the accuracy on the batch.
        oca_by_type: The same over the steps of each distribution type (``pretrain``, ``new``,
            ``ood``); ``None`` for a type the stream never drew.
        oca_first_visit: Over the steps of first visits to a distribution.
        oca_revisit: Over the steps of revisits; ``None`` without any.
        recovery_curve: Accuracy against steps since the last switch
            (``lifelong.prequential.recovery_curve``).
        step_accuracy: The accuracy of every step, in order.
        ground_truth: The stream's hidden truth per step (``StepTruth.as_dict``).
        wall_time_s: The job's wall time.
        agent_settings: The agent's resolved settings; ``None`` for an agent without any.
        variant_of: For a variant, the agent it runs.
        memory_bytes: What the agent keeps beside its network, in bytes.
        memory_bytes_by_kind: The same split by kind.
        distribution_matrix: Accuracy on a held-out batch of every distribution (columns)
            at each evaluation point (rows); ``None`` for a distribution never visited
            (``lifelong.distribution_matrix``).
        distribution_matrix_steps: The step after which each row was taken (-1: before).
        matrix_acc: The last row's mean over visited distributions.
        matrix_forgetting: Best earlier accuracy minus the last, per distribution, averaged.
        matrix_bwt: Last accuracy minus the one after a distribution's last visit, averaged.
        matrix_fwt: Accuracy just before a first visit minus before the stream, averaged.
    """

    oca: float
    oca_by_type: dict[str, float | None]
    oca_first_visit: float | None
    oca_revisit: float | None
    recovery_curve: dict[str, list[float | None]]
    step_accuracy: list[float]
    ground_truth: dict[str, Any]
    wall_time_s: float
    agent_settings: dict[str, Any] | None = None
    variant_of: str | None = field(default=None, metadata=_OMIT_IF_NONE)
    memory_bytes_by_kind: dict[str, int] = field(default_factory=dict)
    memory_bytes: int | None = None
    distribution_matrix: list[list[float | None]] | None = None
    distribution_matrix_steps: list[int] | None = None
    matrix_acc: float | None = None
    matrix_forgetting: float | None = None
    matrix_bwt: float | None = None
    matrix_fwt: float | None = None

    def _check(self, where: str) -> None:
        _check_wall_time(self.wall_time_s, where)


@dataclass(frozen=True)
class SequenceSummary(_Record):
    """One agent's runs on a task sequence, over seeds (``lifelong.report.summarize_runs``).

    ``*_std`` is the sample standard deviation (0.0 for one seed). The extras hold
    ``{key}_mean`` of every timing split, memory figure and ``avalanche_*`` value the runs
    have, and ``diverged_runs`` where some run diverged.
    """

    agent: str
    n_seeds: int
    acc_mean: float
    acc_std: float
    bwt_mean: float
    bwt_std: float
    fwt_mean: float
    fwt_std: float
    forgetting_mean: float
    forgetting_std: float
    wall_time_s_mean: float


@dataclass(frozen=True)
class SwitchingSummary(_Record):
    """One agent's runs on a task-switching stream, over seeds; ``None`` where no run has it."""

    agent: str
    n_seeds: int
    oca_mean: float
    oca_std: float
    oca_first_visit_mean: float | None
    oca_revisit_mean: float | None
    oca_revisit_std: float | None
    oca_pretrain_mean: float | None
    oca_new_mean: float | None
    oca_ood_mean: float | None
    wall_time_s_mean: float
    matrix_acc_mean: float | None
    matrix_forgetting_mean: float | None
    matrix_bwt_mean: float | None
    matrix_fwt_mean: float | None


@dataclass(frozen=True)
class ResultsFile(_Record):
    """A whole ``results.json``: the stream, the resolved configuration, runs and summary.

    The runs are all of one kind, and the summary rows of the matching kind. The extras hold
    what describes the stream or the machine (``n_tasks``, ``environment``, ``evaluated_on``,
    ...).
    """

    stream: str
    scenario: str
    config: dict[str, Any]
    runs: list[SequenceRun] | list[SwitchingRun]
    summary: list[SequenceSummary] | list[SwitchingSummary]

    @property
    def switching(self) -> bool:
        """Whether the runs are of a task-switching stream."""
        return isinstance(self.runs[0], SwitchingRun)

    def to_dict(self) -> dict[str, Any]:
        """The whole file as it is written to JSON."""
        out = super().to_dict()
        out["runs"] = [run.to_dict() for run in self.runs]
        out["summary"] = [row.to_dict() for row in self.summary]
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "results") -> ResultsFile:
        """Read and check a whole results dict (see the class docstring)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be a dict, got {type(data).__name__}")
        needed = cls.required_keys()
        for key in needed:
            if key not in data:
                raise ValueError(f"{where} is missing the key {key!r}; it needs {needed}")
        for key in ("stream", "scenario"):
            if not isinstance(data[key], str) or not data[key]:
                raise ValueError(f"{where}[{key!r}] is {data[key]!r}; it must be a non-empty str")
        if not isinstance(data["config"], Mapping):
            raise ValueError(
                f"{where}['config'] is a {type(data['config']).__name__}; it must be a dict "
                f"(convert a config dataclass with dataclasses.asdict)"
            )
        runs = runs_from_dicts(data["runs"])
        row_type = SwitchingSummary if isinstance(runs[0], SwitchingRun) else SequenceSummary
        summary = summary_from_dicts(data["summary"], row_type)
        extras = {k: v for k, v in data.items() if k not in needed}
        return cls(
            stream=data["stream"],
            scenario=data["scenario"],
            config=dict(data["config"]),
            runs=runs,
            summary=summary,
            extras=extras,
        )


def run_from_dict(data: Any, where: str = "record") -> SequenceRun | SwitchingRun:
    """A job record of either kind: a task-switching one has ``oca``, a sequence one R.

    Raises:
        ValueError: If ``data`` is neither, or names the first wrong value.
    """
    if isinstance(data, Mapping) and "oca" in data:
        return SwitchingRun.from_dict(data, where)
    return SequenceRun.from_dict(data, where)


def runs_from_dicts(
    runs: Any, kind: type[SequenceRun] | type[SwitchingRun] | None = None
) -> list[SequenceRun] | list[SwitchingRun]:
    """Read and check the runs of one results file; records already read pass through.

    Args:
        runs: Run dicts or records.
        kind: The record class every run must be; by default the first run's.

    Raises:
        ValueError: If ``runs`` is empty, mixes kinds, has a bad record, repeats an
            (agent, seed) pair, holds accuracy matrices of different shapes, or has two agents
            whose file names collide.
    """
    if isinstance(runs, str | bytes) or not isinstance(runs, Sequence) or not runs:
        raise ValueError(f"runs must be a non-empty list of run dicts, got {runs!r:.80}")
    records = [_as_run(run, f"runs[{index}]", kind) for index, run in enumerate(runs)]
    first_kind = type(records[0])
    seen: set[tuple[str, int]] = set()
    file_names: dict[str, str] = {}
    for index, record in enumerate(records):
        where = f"runs[{index}] (agent {record.agent!r}, seed {record.seed})"
        if type(record) is not first_kind:
            raise ValueError(
                f"{where} is a {type(record).__name__} but runs[0] is a {first_kind.__name__}; "
                "one results file holds one kind of stream"
            )
        if (record.agent, record.seed) in seen:
            raise ValueError(f"{where} repeats an (agent, seed) pair; each must run once")
        seen.add((record.agent, record.seed))
        if isinstance(record, SequenceRun):
            _check_same_tasks(record, records[0], where)
            name = matrix_csv_name(record.agent, record.seed)
            if file_names.setdefault(name, record.agent) != record.agent:
                raise ValueError(
                    f"agents {file_names[name]!r} and {record.agent!r} map to the same file "
                    f"name {name!r}; rename one (letters, digits, '.', '_' and '-' are kept "
                    f"in file names)"
                )
    return records  # type: ignore[return-value]  # one kind, checked above


def summary_from_dicts(
    rows: Any, kind: type[SequenceSummary] | type[SwitchingSummary]
) -> list[SequenceSummary] | list[SwitchingSummary]:
    """Read and check summary rows of one kind; rows already read pass through.

    Raises:
        ValueError: If ``rows`` is empty or a row is malformed.
    """
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence) or not rows:
        raise ValueError(
            f"summary must be a non-empty list of rows from summarize_runs(), got {rows!r:.80}"
        )
    out = []
    for index, row in enumerate(rows):
        if isinstance(row, kind):
            out.append(row)
            continue
        out.append(kind.from_dict(row, f"summary[{index}]"))
    return out  # type: ignore[return-value]


def matrix_csv_name(agent: str, seed: int) -> str:
    """The file name of a run's accuracy matrix: unsafe characters of the agent become ``_``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", agent)
    return f"accuracy_matrix__{safe}__seed{seed}.csv"


def _as_run(
    run: Any, where: str, kind: type[SequenceRun] | type[SwitchingRun] | None
) -> SequenceRun | SwitchingRun:
    if isinstance(run, SequenceRun | SwitchingRun):
        record = run
    elif kind is not None:
        record = kind.from_dict(run, where)
    else:
        record = run_from_dict(run, where)
    if kind is not None and not isinstance(record, kind):
        raise ValueError(f"{where} is a {type(record).__name__}; this needs a {kind.__name__}")
    return record


def _check_same_tasks(record: SequenceRun, first: Any, where: str) -> None:
    if isinstance(first, SequenceRun):
        shape = (len(first.accuracy_matrix), first.n_tasks)
        own = (len(record.accuracy_matrix), record.n_tasks)
        if own != shape:
            raise ValueError(
                f"{where}['accuracy_matrix'] has shape {own} but runs[0]'s has {shape}; all "
                f"runs of one stream must see the same number of tasks"
            )


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    """A record class's field annotations, resolved once (they are strings here)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _declared(cls: type) -> list[dataclasses.Field[Any]]:
    return [spec for spec in dataclasses.fields(cls) if spec.name != "extras"]


def _required(spec: dataclasses.Field[Any]) -> bool:
    return spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING


def _plain(value: Any) -> Any:
    """NumPy arrays and scalars as the lists and Python numbers JSON writes them as."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _checked(value: Any, annotation: Any, where: str, key: str) -> Any:
    """``value`` if it has the annotated type (ints pass as floats), else a one-line error."""
    problem = _type_problem(value, annotation)
    if problem is not None:
        raise ValueError(f"{where}[{key!r}] is {value!r:.80}; it must be {problem}")
    return value


def _type_problem(value: Any, annotation: Any) -> str | None:
    """What ``value`` should have been, or ``None`` when it matches ``annotation``."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return None
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        problems = [_type_problem(value, option) for option in options if option is not type(None)]
        if any(problem is None for problem in problems):
            return None
        return " or ".join(p for p in problems if p) + (" or None" if type(None) in options else "")
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list):
            return "a list"
        return next((f"a list of {p}" for v in value if (p := _type_problem(v, item))), None)
    if origin is dict:
        _, item = typing.get_args(annotation)
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return "a dict with str keys"
        found = (p for v in value.values() if (p := _type_problem(v, item)))
        return next((f"a dict of {p}" for p in found), None)
    return _scalar_problem(value, annotation)


def _scalar_problem(value: Any, annotation: Any) -> str | None:
    if annotation is bool:
        return None if isinstance(value, bool) else "a bool"
    if annotation is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return None if ok else "an int"
    if annotation is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return None if ok and math.isfinite(float(value)) else "a finite number"
    if annotation is str:
        return None if isinstance(value, str) else "a str"
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return None if isinstance(value, annotation) else f"a {annotation.__name__}"
    raise TypeError(f"records.py cannot check values of type {annotation!r}")


def _check_wall_time(wall_time_s: float, where: str) -> None:
    if wall_time_s < 0:
        raise ValueError(f"{where}['wall_time_s'] is {wall_time_s!r}; it must be >= 0")

