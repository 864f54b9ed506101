"""Task-switching few-shot streams (continual meta-learning, OSAKA's setting).

A learner pre-trained on some distributions meets a long stream of steps. Each step hands it
one N-way K-shot batch of the current task, to predict first and then learn from
(test-then-train). With probability ``p_stay`` the next step keeps the current task;
otherwise a distribution is drawn from the pool (pre-training, new, out-of-distribution) by
its weight, and a new segment starts. So distributions come back, and a learner that
recognises one can be right from the first batch of a revisit.

Labels:

- ``shuffled`` (OSAKA): every segment takes a fresh subset of N of the distribution's classes
  and a fresh class-to-label assignment; the draw may pick the current distribution again,
  which is still a new task.
- ``fixed``: each distribution keeps one subset of N classes and one assignment for the whole
  stream, so a revisit is the same task; the draw then leaves out the current distribution,
  so that every switch changes the task.

The ground truth of every step (distribution, its kind, switch, first visit) is kept in
``SwitchingStream.truth``, apart from what a learner sees (``SwitchingStream.steps``): only
with ``boundaries="known"`` does a step say that it starts a segment.

References:
    Caccia et al., "Online Fast Adaptation and Knowledge Accumulation (OSAKA): a New Approach
    to Continual Learning", NeurIPS 2020.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from streams.base import Scenario, StreamError
from streams.transforms import derived_rng

__all__ = [
    "DEFAULT_KIND_WEIGHTS",
    "Distribution",
    "DistributionKind",
    "Step",
    "StepTruth",
    "SwitchingStream",
    "build_switching_stream",
    "check_input_shapes",
    "kind_weights_from",
]

# Purposes of this module's draws (see ``streams.transforms.derived_rng``); far from the
# built-in streams' so the two never share a generator.
_SCHEDULE, _FIXED_CLASSES, _SEGMENT_CLASSES, _SHOTS = 101, 102, 103, 104


class DistributionKind(enum.StrEnum):
    """Where a distribution stands against pre-training."""

    PRETRAIN = "pretrain"
    """Seen in pre-training."""
    NEW = "new"
    """Of the pre-training family (another alphabet), never seen before the stream."""
    OOD = "ood"
    """Out of distribution: another family of images altogether (digits)."""


DEFAULT_KIND_WEIGHTS: Mapping[DistributionKind, float] = {
    DistributionKind.PRETRAIN: 0.5,
    DistributionKind.NEW: 0.25,
    DistributionKind.OOD: 0.25,
}
"""OSAKA's draw weights by kind; a kind's weight is split evenly over its distributions."""


@dataclass(frozen=True)
class Distribution:
    """One distribution of the pool: its classes, each with training and test drawings.

    Attributes:
        name: E.g. ``"Greek"`` or ``"mnist"``.
        kind: Pre-training, new or out-of-distribution.
        train: Per class, its training drawings ``(n_c, *input_shape)``.
        test: Per class, its held-out test drawings; never part of a step.
    """

    name: str
    kind: DistributionKind
    train: tuple[torch.Tensor, ...]
    test: tuple[torch.Tensor, ...]

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.train)

    @property
    def min_train_drawings(self) -> int:
        """The fewest training drawings any class has."""
        return min(len(x) for x in self.train)


@dataclass(frozen=True)
class StepTruth:
    """The ground truth of every step, kept from the learner.

    Attributes:
        distribution: Index into ``SwitchingStream.distributions``, per step.
        kind: The distribution's kind, per step.
        switch: The step starts a segment (step 0 does).
        first_visit: The step's segment is its distribution's first in the stream.
        classes: ``(n_steps, ways)``: the distribution's class behind each label.
    """

    distribution: np.ndarray
    kind: tuple[DistributionKind, ...]
    switch: np.ndarray
    first_visit: np.ndarray
    classes: np.ndarray

    def as_dict(self) -> dict[str, list[object]]:
        """JSON-ready lists, for the results file."""
        return {
            "distribution": self.distribution.tolist(),
            "kind": [k.value for k in self.kind],
            "switch": self.switch.tolist(),
            "first_visit": self.first_visit.tolist(),
        }


@dataclass(frozen=True)
class Step:
    """What a learner sees of one step.

    Attributes:
        x: ``(ways * shots, *input_shape)`` inputs, in shuffled order.
        y: Their labels in ``[0, ways)``.
        new_segment: Whether the step starts a segment; ``None`` unless boundaries are known.
    """

    x: torch.Tensor
    y: torch.Tensor
    new_segment: bool | None


@dataclass(frozen=True)
class SwitchingStream:
    """A built task-switching stream.

    Attributes:
        name: The stream's name.
        distributions: The pool, pre-training distributions included.
        ways: N, labels per step.
        shots: K, drawings per label per step.
        p_stay: Probability that a step keeps the current task.
        labels: ``"shuffled"`` or ``"fixed"`` (see the module docstring).
        boundaries: ``"hidden"`` or ``"known"``.
        x: ``(n_steps, ways * shots, *input_shape)``, the steps' inputs.
        y: ``(n_steps, ways * shots)``, their labels.
        truth: The ground truth of every step.
    """

    name: str
    distributions: tuple[Distribution, ...]
    ways: int
    shots: int
    p_stay: float
    labels: str
    boundaries: str
    x: torch.Tensor
    y: torch.Tensor
    truth: StepTruth

    @property
    def n_steps(self) -> int:
        """Number of steps."""
        return len(self.y)

    @property
    def scenario(self) -> Scenario:
        """Always ``Scenario.TASK_SWITCHING``."""
        return Scenario.TASK_SWITCHING

    @property
    def task_identities(self) -> tuple[int, ...]:
        """The distribution of every step (the ground truth a task memory is scored on)."""
        return tuple(int(d) for d in self.truth.distribution)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(self.x.shape[2:])

    def pretraining(self) -> tuple[Distribution, ...]:
        """The distributions a learner may pre-train on."""
        return tuple(d for d in self.distributions if d.kind is DistributionKind.PRETRAIN)

    def steps(self) -> Iterator[Step]:
        """The steps as a learner sees them: inputs and labels, no ground truth."""
        known = self.boundaries == "known"
        for t in range(self.n_steps):
            new_segment = bool(self.truth.switch[t]) if known else None
            yield Step(self.x[t], self.y[t], new_segment)


def build_switching_stream(
    name: str,
    distributions: Sequence[Distribution],
    *,
    n_steps: int,
    seed: int,
    ways: int = 5,
    shots: int = 1,
    p_stay: float = 0.9,
    labels: str = "shuffled",
    boundaries: str = "hidden",
    kind_weights: Mapping[DistributionKind, float] = DEFAULT_KIND_WEIGHTS,
) -> SwitchingStream:
    """Draw a task-switching stream over a pool of distributions.

    Args:
        name: The stream's name, for messages.
        distributions: The pool. Pre-training distributions take part in the stream too.
        n_steps: Number of steps.
        seed: Fixes the schedule, the class subsets and the drawings.
        ways: N, labels per step; every distribution needs at least N classes.
        shots: K, drawings per label; every class needs at least K training drawings.
        p_stay: Probability in ``(0, 1)`` that a step keeps the current task.
        labels: ``"shuffled"`` or ``"fixed"``.
        boundaries: ``"hidden"`` or ``"known"``.
        kind_weights: Draw weight of each kind, split evenly over its distributions; kinds
            with no distribution in the pool drop out and the rest are renormalised.

    Returns:
        The stream.

    Raises:
        StreamError: On a bad argument, naming it and the fix.
    """
    pool = tuple(distributions)
    _check_arguments(name, pool, n_steps, ways, shots, p_stay, labels, boundaries)
    weights = _draw_weights(name, pool, kind_weights)
    schedule, switch = _schedule(n_steps, p_stay, weights, labels == "fixed", seed)
    classes = _classes_per_step(pool, schedule, switch, ways, labels == "fixed", seed)
    x, y = _drawings(pool, schedule, classes, shots, seed)
    first_visit = _first_visits(schedule, switch)
    truth = StepTruth(
        distribution=schedule,
        kind=tuple(pool[int(d)].kind for d in schedule),
        switch=switch,
        first_visit=first_visit,
        classes=classes,
    )
    return SwitchingStream(name, pool, ways, shots, p_stay, labels, boundaries, x, y, truth)


def _first_visits(schedule: np.ndarray, switch: np.ndarray) -> np.ndarray:
    """Per step: its segment is the first of its distribution in the stream."""
    seen: set[int] = set()
    first = np.zeros(len(schedule), dtype=bool)
    for t, d in enumerate(schedule):
        if switch[t]:
            first[t] = int(d) not in seen
            seen.add(int(d))
        else:
            first[t] = first[t - 1]
    return first


def _check_arguments(
    name: str,
    pool: tuple[Distribution, ...],
    n_steps: int,
    ways: int,
    shots: int,
    p_stay: float,
    labels: str,
    boundaries: str,
) -> None:
    where = f"stream {name!r}"
    if not pool:
        raise StreamError(f"{where}: the pool has no distribution; give it at least one")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise StreamError(f"{where}: n_steps is {n_steps!r}; pass a positive integer")
    if not (isinstance(p_stay, int | float) and 0 < p_stay < 1):
        raise StreamError(f"{where}: p={p_stay!r}; pass a probability strictly between 0 and 1")
    if labels not in ("shuffled", "fixed"):
        raise StreamError(f"{where}: labels={labels!r}; choose 'shuffled' or 'fixed'")
    if boundaries not in ("hidden", "known"):
        raise StreamError(f"{where}: boundaries={boundaries!r}; choose 'hidden' or 'known'")
    for value, what in ((ways, "ways"), (shots, "shots")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise StreamError(f"{where}: {what}={value!r}; pass a positive integer")
    fewest_classes = min(pool, key=lambda d: d.n_classes)
    if ways > fewest_classes.n_classes:
        raise StreamError(
            f"{where}: ways={ways} but distribution {fewest_classes.name!r} has only "
            f"{fewest_classes.n_classes} classes; ask for ways <= {fewest_classes.n_classes}"
        )
    fewest_drawings = min(pool, key=lambda d: d.min_train_drawings)
    if shots > fewest_drawings.min_train_drawings:
        raise StreamError(
            f"{where}: shots={shots} but a class of {fewest_drawings.name!r} has only "
            f"{fewest_drawings.min_train_drawings} training drawings; ask for shots <= "
            f"{fewest_drawings.min_train_drawings}"
        )
    if labels == "fixed" and len(pool) < 2:
        raise StreamError(f"{where}: labels=fixed switches between distributions; give two or more")


def _draw_weights(
    name: str, pool: tuple[Distribution, ...], kind_weights: Mapping[DistributionKind, float]
) -> np.ndarray:
    counts = {kind: sum(d.kind is kind for d in pool) for kind in DistributionKind}
    weights = np.array(
        [float(kind_weights.get(d.kind, 0.0)) / counts[d.kind] for d in pool], dtype=np.float64
    )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        given = {k.value: kind_weights.get(k, 0.0) for k in DistributionKind}
        raise StreamError(
            f"stream {name!r}: weights {given} give no distribution of the pool a positive "
            "weight; pass non-negative weights, positive for a kind the pool has"
        )
    return weights / weights.sum()


def _schedule(
    n_steps: int, p_stay: float, weights: np.ndarray, exclude_current: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each step's distribution, and whether it starts a segment."""
    rng = derived_rng(seed, _SCHEDULE)
    schedule = np.empty(n_steps, dtype=np.int64)
    switch = np.zeros(n_steps, dtype=bool)
    current = -1
    for t in range(n_steps):
        if t == 0 or rng.random() >= p_stay:
            p = weights.copy()
            if exclude_current and current >= 0:
                p[current] = 0.0
            current = int(rng.choice(len(p), p=p / p.sum()))
            switch[t] = True
        schedule[t] = current
    return schedule, switch


def _classes_per_step(
    pool: tuple[Distribution, ...],
    schedule: np.ndarray,
    switch: np.ndarray,
    ways: int,
    fixed: bool,
    seed: int,
) -> np.ndarray:
    """``(n_steps, ways)``: the class of the step's distribution behind each label."""
    if fixed:
        chosen = [
            derived_rng(seed, _FIXED_CLASSES, d).permutation(dist.n_classes)[:ways]
            for d, dist in enumerate(pool)
        ]
    classes = np.empty((len(schedule), ways), dtype=np.int64)
    for t, d in enumerate(schedule):
        if fixed:
            classes[t] = chosen[int(d)]
        elif switch[t]:
            rng = derived_rng(seed, _SEGMENT_CLASSES, t)
            classes[t] = rng.permutation(pool[int(d)].n_classes)[:ways]
        else:
            classes[t] = classes[t - 1]
    return classes


def _drawings(
    pool: tuple[Distribution, ...],
    schedule: np.ndarray,
    classes: np.ndarray,
    shots: int,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each step's K distinct training drawings per label, in a shuffled order."""
    ways = classes.shape[1]
    input_shape = pool[0].train[0].shape[1:]
    x = torch.empty((len(schedule), ways * shots, *input_shape))
    y = torch.empty((len(schedule), ways * shots), dtype=torch.int64)
    labels = torch.arange(ways).repeat_interleave(shots)
    for t, d in enumerate(schedule):
        rng = derived_rng(seed, _SHOTS, t)
        drawn = []
        for label in range(ways):
            drawings = pool[int(d)].train[int(classes[t, label])]
            picks = rng.choice(len(drawings), size=shots, replace=False)
            drawn.append(drawings[torch.from_numpy(picks)])
        order = torch.from_numpy(rng.permutation(ways * shots))
        x[t] = torch.cat(drawn)[order]
        y[t] = labels[order]
    return x, y


def check_input_shapes(name: str, pool: Sequence[Distribution]) -> None:
    """Refuse a pool whose distributions' drawings differ in shape.

    Raises:
        StreamError: Naming the first distribution whose shape differs.
    """
    shapes = {tuple(d.train[0].shape[1:]) for d in pool}
    if len(shapes) > 1:
        raise StreamError(
            f"stream {name!r}: the pool's drawings have shapes {sorted(shapes)}; resize "
            "every distribution to one shape"
        )


def kind_weights_from(text: str) -> dict[DistributionKind, float]:
    """Weights from ``"0.5,0.25,0.25"`` (pre-training, new, out-of-distribution).

    Raises:
        StreamError: If there are not three non-negative numbers.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or any(not math.isfinite(v) or v < 0 for v in values):
        raise StreamError(
            f"weights={text!r}; pass three non-negative numbers for pretrain,new,ood, "
            "e.g. weights=0.5,0.25,0.25"
        )
    return dict(zip(DistributionKind, values, strict=True))
