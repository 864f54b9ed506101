"""Test-then-train evaluation on task-switching streams, and its metrics as pure functions.

Every incoming batch is predicted before the learner trains on it (prequential evaluation),
so a step's accuracy measures what the learner knew when the batch arrived. The metrics
below read only the per-step accuracies and the stream's ground truth
(``streams.switching.StepTruth``), both saved with a run, so each can be checked by hand.

- OCA, online cumulative accuracy: the mean accuracy of all predictions over the stream
  (every step predicts ``ways * shots`` samples, so it is also the mean of the steps').
- OCA by distribution kind (pre-training, new, out-of-distribution) and by first visit
  against revisit.
- The recovery curve: mean accuracy against the number of steps since the last switch,
  first visits and revisits apart.

References:
    Caccia et al., "Online Fast Adaptation and Knowledge Accumulation (OSAKA): a New Approach
    to Continual Learning", NeurIPS 2020.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from streams.switching import DistributionKind, StepTruth, SwitchingStream

__all__ = [
    "OnlineLearner",
    "oca",
    "oca_by_kind",
    "oca_by_visit",
    "prequential_accuracies",
    "prequential_metrics",
    "recovery_curve",
    "retrieval_precision",
    "steps_since_switch",
]


class OnlineLearner(Protocol):
    """What test-then-train evaluation asks of a learner."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the step's ``ways`` labels for a batch, before seeing its labels."""
        ...

    def observe(self, x: torch.Tensor, y: torch.Tensor, new_segment: bool | None) -> None:
        """Learn from the batch just predicted; ``new_segment`` is ``None`` unless known."""
        ...


def prequential_accuracies(
    stream: SwitchingStream,
    learner: OnlineLearner,
    after_step: Callable[[int, float], None] | None = None,
    start: int = 0,
) -> np.ndarray:
    """Predict each step's batch, then let the learner learn it; return the accuracies.

    Args:
        stream: The steps (the learner sees ``stream.steps()``, never the ground truth).
        learner: Predicts, then observes, every step in order.
        after_step: Called with each step's index and accuracy once the learner has learned
            it (the accuracy matrix's probe, a mid-job checkpoint).
        start: The first step to run (a resumed job's learner has learned the earlier ones).

    Returns:
        ``(n_steps - start,)`` float64: the share of each step's batch predicted right.
    """
    accuracies = np.empty(stream.n_steps - start, dtype=np.float64)
    for t, step in enumerate(stream.steps()):
        if t < start:
            continue
        with torch.no_grad():
            predicted = learner.predict(step.x).argmax(dim=1)
        accuracies[t - start] = float((predicted == step.y).double().mean())
        learner.observe(step.x, step.y, step.new_segment)
        if after_step is not None:
            after_step(t, float(accuracies[t - start]))
    return accuracies


def oca(accuracies: Sequence[float] | np.ndarray) -> float:
    """Online cumulative accuracy: the mean of the per-step accuracies.

    Raises:
        ValueError: If there is no step.
    """
    values = _checked(accuracies)
    return float(values.mean())


def oca_by_kind(
    accuracies: Sequence[float] | np.ndarray, truth: StepTruth
) -> dict[str, float | None]:
    """OCA over the steps of each distribution kind; ``None`` for a kind the stream lacks."""
    values = _checked(accuracies, len(truth.kind))
    kinds = np.array([k.value for k in truth.kind])
    return {
        kind.value: float(values[kinds == kind.value].mean())
        if (kinds == kind.value).any()
        else None
        for kind in DistributionKind
    }


def oca_by_visit(
    accuracies: Sequence[float] | np.ndarray, truth: StepTruth
) -> tuple[float | None, float | None]:
    """OCA over first-visit steps and over revisit steps (``None`` where there are none)."""
    values = _checked(accuracies, len(truth.first_visit))
    first = truth.first_visit.astype(bool)
    return _mean_or_none(values[first]), _mean_or_none(values[~first])


def recovery_curve(
    accuracies: Sequence[float] | np.ndarray, truth: StepTruth, max_lag: int = 50
) -> dict[str, list[Any]]:
    """Mean accuracy against steps since the last switch, first visits and revisits apart.

    Lag 0 is the step that starts a segment (predicted before anything of the new task was
    learned). A segment shorter than a lag adds nothing at that lag.

    Returns:
        ``lag`` (0..max_lag-1), ``first_visit`` and ``revisit`` (mean accuracy per lag,
        ``None`` where no segment reaches it), ``first_visit_segments`` and
        ``revisit_segments`` (how many segments each mean is over).

    Raises:
        ValueError: If ``max_lag`` is below 1 or the lengths disagree.
    """
    if max_lag < 1:
        raise ValueError(f"max_lag is {max_lag}; it must be at least 1")
    values = _checked(accuracies, len(truth.switch))
    lag = steps_since_switch(truth.switch)
    out: dict[str, list[Any]] = {"lag": list(range(max_lag))}
    for name, mask in (
        ("first_visit", truth.first_visit.astype(bool)),
        ("revisit", ~truth.first_visit.astype(bool)),
    ):
        means, counts = [], []
        for k in range(max_lag):
            at = values[mask & (lag == k)]
            means.append(_mean_or_none(at))
            counts.append(len(at))
        out[name], out[f"{name}_segments"] = means, counts
    return out


def prequential_metrics(
    accuracies: Sequence[float] | np.ndarray, truth: StepTruth, max_lag: int = 50
) -> dict[str, Any]:
    """The run record's online metrics: ``oca``, ``oca_by_type``, visits and recovery."""
    first, revisit = oca_by_visit(accuracies, truth)
    return {
        "oca": oca(accuracies),
        "oca_by_type": oca_by_kind(accuracies, truth),
        "oca_first_visit": first,
        "oca_revisit": revisit,
        "recovery_curve": recovery_curve(accuracies, truth, max_lag),
        "step_accuracy": [float(a) for a in _checked(accuracies)],
    }


def steps_since_switch(switch: np.ndarray) -> np.ndarray:
    """Each step's lag behind the last switch: 0 on a switch (and on step 0), then 1, 2, ..."""
    lag = np.zeros(len(switch), dtype=np.int64)
    for t in range(1, len(switch)):
        lag[t] = 0 if switch[t] else lag[t - 1] + 1
    return lag


def _checked(accuracies: Sequence[float] | np.ndarray, n: int | None = None) -> np.ndarray:
    values = np.asarray(accuracies, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"accuracies have shape {values.shape}; pass one value per step")
    if n is not None and len(values) != n:
        raise ValueError(f"{len(values)} accuracies for {n} steps; pass one per step")
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError("accuracies must lie in [0, 1]")
    return values


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def retrieval_precision(
    observed: Sequence[int], retrieved: Sequence[tuple[int, int]], truth: StepTruth
) -> dict[str, Any]:
    """How often a retrieved task record was the step's own distribution, against chance.

    A record's distribution is the one most of the steps learned into it came from.

    Args:
        observed: Per step, the id of the record the learner learned the step into.
        retrieved: ``(step, record id)`` of every retrieval the learner acted on.
        truth: The stream's ground truth.

    Returns:
        ``events``, ``precision_at_1`` (``None`` without events), ``chance`` (one over the
        number of distributions the stream visits) and ``records`` (how many there were).

    Raises:
        ValueError: If ``observed`` does not have one entry per step, or a retrieval names a
            step or record the trace does not hold.
    """
    distribution = np.asarray(truth.distribution)
    if len(observed) != len(distribution):
        raise ValueError(
            f"observed has {len(observed)} entries for {len(distribution)} steps; pass one per step"
        )
    owners: dict[int, int] = {}
    for record in set(observed):
        steps = [t for t, r in enumerate(observed) if r == record]
        values, counts = np.unique(distribution[steps], return_counts=True)
        owners[record] = int(values[np.argmax(counts)])
    hits = []
    for step, record in retrieved:
        if not 0 <= step < len(distribution) or record not in owners:
            raise ValueError(f"retrieval ({step}, {record}) names no step or record of the trace")
        hits.append(owners[record] == int(distribution[step]))
    return {
        "events": len(hits),
        "precision_at_1": float(np.mean(hits)) if hits else None,
        "chance": 1.0 / len(np.unique(distribution)),
        "records": len(owners),
    }
