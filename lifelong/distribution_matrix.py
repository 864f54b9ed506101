"""The accuracy matrix over distributions of a task-switching stream, and its metrics.

Prequential accuracy says how well the learner predicts what arrives; it cannot say what the
learner still knows of a distribution that is not arriving. For that, at evaluation points
(before the first step, then after every ``every`` steps and after the last), the learner
predicts one held-out batch of every distribution of the pool: up to ``per_class`` test
drawings (never shown in a step) of each class behind the distribution's labels, labelled as
in its latest visit so far (before its first visit, as in that visit; with ``labels=fixed``
every visit labels alike). ``R[k, d]`` is the accuracy on distribution ``d`` at point ``k``;
a distribution the stream never visits has no column value (``NaN``).

The learner predicts these batches through ``probe`` when it has one (a ``predict`` that
leaves no trace, for learners whose ``predict`` keeps state), ``predict`` otherwise; it
never learns from them.

Metrics, each a function of ``R``, the points' steps and the ground truth, so each can be
checked by hand from a run's saved arrays:

- ``acc``: mean of the last row over the distributions visited;
- ``forgetting``: per distribution visited before the last point, the best earlier
  accuracy minus the last (Chaudhry et al. 2018), averaged;
- ``bwt``: per distribution whose last segment ended before the last point, the last
  accuracy minus the accuracy at the first point after that segment ended (Lopez-Paz &
  Ranzato 2017's ``R[T, i] - R[i, i]`` with "after learning i" read as "after its last
  visit"), averaged;
- ``fwt``: per distribution first visited after some steps, the accuracy at the last point
  before its first visit minus the accuracy before the stream (zero-shot transfer from the
  stream so far, against the pre-trained learner), averaged.

Avalanche's metric functions assume one experience per task in order, which a stream of
recurring distributions is not, so these are computed here.

References:
    Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.
    Chaudhry et al., "Riemannian Walk for Incremental Learning", ECCV 2018.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from streams.switching import StepTruth, SwitchingStream

__all__ = ["MatrixProbe", "evaluation_steps", "matrix_metrics", "probe_batch", "probe_row"]


def evaluation_steps(n_steps: int, every: int) -> list[int]:
    """The points: ``-1`` (before the stream), then after every ``every`` steps and the last.

    Raises:
        ValueError: If ``every`` is below 1.
    """
    if every < 1:
        raise ValueError(f"every is {every}; evaluate at least every 1 step")
    points = [-1, *range(every - 1, n_steps, every)]
    return points if points[-1] == n_steps - 1 else [*points, n_steps - 1]


def probe_batch(
    stream: SwitchingStream, distribution: int, step: int, per_class: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The held-out batch of ``distribution`` at the point after ``step``.

    Labelled as in the distribution's latest visit at or before ``step``, or its first
    visit if it has not come yet; ``None`` if the stream never visits it.
    """
    truth = stream.truth
    visits = np.flatnonzero(truth.distribution == distribution)
    if len(visits) == 0:
        return None
    earlier = visits[visits <= step]
    labelling = truth.classes[int(earlier[-1] if len(earlier) else visits[0])]
    tests = stream.distributions[distribution].test
    xs, ys = [], []
    for label, cls in enumerate(labelling):
        drawings = tests[int(cls)][:per_class]
        xs.append(drawings)
        ys.append(torch.full((len(drawings),), label, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def probe_row(
    stream: SwitchingStream,
    predict: Callable[[torch.Tensor], torch.Tensor],
    step: int,
    per_class: int,
) -> list[float]:
    """Accuracy on every distribution's held-out batch at the point after ``step``."""
    row = []
    for d in range(len(stream.distributions)):
        batch = probe_batch(stream, d, step, per_class)
        if batch is None:
            row.append(math.nan)
            continue
        with torch.no_grad():
            predicted = predict(batch[0]).argmax(dim=1)
        row.append(float((predicted == batch[1]).double().mean()))
    return row


class MatrixProbe:
    """Takes the matrix's rows during a prequential run: pass it as ``after_step``.

    The row before the stream is taken when the probe is made.

    Args:
        stream: The stream the learner runs on.
        learner: The learner; its ``probe`` (or ``predict``) labels the held-out batches.
        every: Steps between points.
        per_class: Held-out drawings per class in a batch.
        resumed: A checkpoint's rows and probe time, to go on from instead of taking the
            row before the stream.
    """

    def __init__(
        self,
        stream: SwitchingStream,
        learner: Any,
        every: int,
        per_class: int = 5,
        *,
        resumed: tuple[Sequence[Sequence[float | None]], float] | None = None,
    ):
        self.stream = stream
        self.steps = evaluation_steps(stream.n_steps, every)
        self.per_class = per_class
        self._predict = getattr(learner, "probe", None) or learner.predict
        self.rows: list[list[float]] = []
        self.seconds = 0.0
        """Time spent taking rows, so that a run can leave it out of the learner's."""
        if resumed is None:
            self._take(-1)
        else:  # the rows and time of a checkpoint
            self.rows = [[math.nan if v is None else v for v in row] for row in resumed[0]]
            self.seconds = resumed[1]

    def __call__(self, step: int, accuracy: float | None = None) -> None:
        """Take a row if ``step`` (just learned) ends at a point; its accuracy is not used."""
        if step in self.steps:
            self._take(step)

    def _take(self, step: int) -> None:
        began = time.perf_counter()
        self.rows.append(probe_row(self.stream, self._predict, step, self.per_class))
        self.seconds += time.perf_counter() - began

    def record(self) -> dict[str, Any]:
        """The run record's keys: the matrix, its points' steps and its metrics."""
        metrics = matrix_metrics(self.rows, self.steps, self.stream.truth)
        return {
            "distribution_matrix": [
                [None if math.isnan(v) else v for v in row] for row in self.rows
            ],
            "distribution_matrix_steps": list(self.steps),
            **{f"matrix_{name}": value for name, value in metrics.items()},
        }


def matrix_metrics(
    matrix: Sequence[Sequence[float | None]] | np.ndarray,
    steps: Sequence[int],
    truth: StepTruth,
) -> dict[str, float | None]:
    """``acc``, ``forgetting``, ``bwt`` and ``fwt`` of an accuracy matrix over distributions.

    Args:
        matrix: ``(points, distributions)``; ``None`` or ``NaN`` for a distribution never
            visited.
        steps: The step after which each row was taken (``-1``: before the stream).
        truth: The stream's ground truth.

    Returns:
        Each metric, ``None`` where no distribution qualifies (see the module docstring).

    Raises:
        ValueError: If the matrix and the points disagree in length, or a value is outside
            [0, 1].
    """
    rows = [[math.nan if v is None else v for v in row] for row in matrix]
    accuracy = np.array(rows, dtype=float)
    if accuracy.ndim != 2 or len(accuracy) != len(steps) or len(accuracy) < 2:
        raise ValueError(
            f"matrix has shape {accuracy.shape} for {len(steps)} points; pass one row per point, "
            "at least two"
        )
    if np.any((accuracy < 0) | (accuracy > 1)):
        raise ValueError("matrix values must lie in [0, 1]")
    point_steps = np.asarray(steps)
    distribution = np.asarray(truth.distribution)
    last = len(accuracy) - 1
    final_step = int(point_steps[-1])
    visited = [d for d in range(accuracy.shape[1]) if (distribution == d).any()]
    forgetting, bwt, fwt = [], [], []
    for d in visited:
        visits = np.flatnonzero(distribution == d)
        first, end = int(visits[0]), int(visits[-1])  # end: the last step of its last segment
        seen_rows = [k for k in range(last) if point_steps[k] >= first]
        if seen_rows:
            forgetting.append(max(accuracy[k, d] for k in seen_rows) - accuracy[last, d])
        if end < final_step:
            after = next(k for k in range(len(accuracy)) if point_steps[k] >= end)
            bwt.append(accuracy[last, d] - accuracy[after, d])
        before = [k for k in range(len(accuracy)) if point_steps[k] < first]
        if first > 0 and len(before) > 1:
            fwt.append(accuracy[before[-1], d] - accuracy[0, d])
    return {
        "acc": _mean(accuracy[last, visited]),
        "forgetting": _mean(forgetting),
        "bwt": _mean(bwt),
        "fwt": _mean(fwt),
    }


def _mean(values: Any) -> float | None:
    values = np.asarray(values, dtype=float)
    return float(values.mean()) if values.size else None
