"""Continual-learning metrics as pure functions of the accuracy matrix.

The accuracy matrix ``R`` has shape ``(T + 1, T)``: row 0 is measured before any training,
row ``i`` (1..T) after training on task ``i``, and column ``j`` holds task ``j``'s test
accuracy. ../shared/DESIGN.md numbers tasks from 1, so task ``j`` is column ``j - 1`` of the
array while row ``i`` is row ``i``: ``R[i][j]`` of the text is ``R[i, j - 1]`` here.

Definitions (../shared/DESIGN.md, all means unweighted over tasks):

- ACC = mean over j of R[T][j].
- BWT = mean over j < T of R[T][j] - R[j][j]. Avalanche's ``StreamBWT`` equals it and its
  ``StreamForgetting`` equals -BWT.
- FWT = mean over j > 1 of R[j-1][j] - R[0][j], Avalanche's ``StreamForwardTransfer``.
- forgetting = mean over j < T of (max over j <= i < T of R[i][j]) - R[T][j]: the drop from
  the best accuracy task j had after it was learned. Since the maximum includes R[j][j],
  forgetting >= -BWT always; they differ when a task's accuracy rose after it was learned
  and fell later.

References:
    Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017
    (ACC, BWT, FWT).
    Chaudhry, Dokania, Ajanthan & Torr, "Riemannian Walk for Incremental Learning:
    Understanding Forgetting and Intransigence", ECCV 2018 (forgetting).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "AccuracyMatrixLike",
    "as_accuracy_matrix",
    "average_accuracy",
    "backward_transfer",
    "forgetting",
    "forward_transfer",
    "per_task_forgetting",
    "retrieval_precision",
    "summarize_matrix",
]

AccuracyMatrixLike = npt.ArrayLike
"""An accuracy matrix as a numpy array or nested lists, shape ``(T + 1, T)``."""


def as_accuracy_matrix(R: AccuracyMatrixLike) -> np.ndarray:  # noqa: N803 - R is the paper's name
    """Validate an accuracy matrix and return it as a new float64 array.

    Args:
        R: Accuracies in [0, 1], shape ``(T + 1, T)`` with ``T >= 1``: row 0 before training,
            row ``i`` after training task ``i``, column ``j - 1`` for task ``j``.

    Returns:
        A float64 copy of ``R`` with shape ``(T + 1, T)``.

    Raises:
        ValueError: If ``R`` is ragged, not numeric, not of shape ``(T + 1, T)``, or holds a
            value that is not finite or lies outside [0, 1].
    """
    try:
        matrix = np.array(R, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"accuracy matrix must be a rectangular array of numbers, shape (T + 1, T); "
            f"could not convert it: {err}"
        ) from err
    if matrix.ndim != 2:
        raise ValueError(
            f"accuracy matrix has {matrix.ndim} dimension(s) (shape {matrix.shape}); it must "
            f"be 2-D with shape (T + 1, T): one row before training, one after each task"
        )
    rows, cols = matrix.shape
    if cols < 1 or rows != cols + 1:
        raise ValueError(
            f"accuracy matrix has shape {matrix.shape}; expected (T + 1, T) with T >= 1, "
            f"i.e. ({cols + 1}, {cols}) for {cols} task(s): row 0 before training, "
            f"row i after training task i"
        )
    bad = ~np.isfinite(matrix) | (matrix < 0.0) | (matrix > 1.0)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise ValueError(
            f"accuracy matrix entry R[{i}][{j}] = {float(matrix[i, j])!r} is not an accuracy; "
            f"every entry must be a finite fraction in [0, 1] (divide percentages by 100)"
        )
    return matrix


def average_accuracy(R: AccuracyMatrixLike) -> float:  # noqa: N803
    """Return ACC, the mean final accuracy over all tasks.

    Args:
        R: Accuracy matrix, shape ``(T + 1, T)``.

    Returns:
        The mean of the last row of ``R``, in [0, 1].
    """
    matrix = as_accuracy_matrix(R)
    return float(matrix[-1].mean())


def backward_transfer(R: AccuracyMatrixLike) -> float:  # noqa: N803
    """Return BWT, the mean change in a task's accuracy from just after learning it to the end.

    BWT = mean over j < T of R[T][j] - R[j][j]; negative values mean forgetting.

    Args:
        R: Accuracy matrix, shape ``(T + 1, T)``.

    Returns:
        BWT in [-1, 1]. With a single task no earlier task exists and BWT is 0.0 by
        convention (as Avalanche reports).
    """
    matrix = as_accuracy_matrix(R)
    n_tasks = matrix.shape[1]
    if n_tasks == 1:
        return 0.0
    earlier = np.arange(n_tasks - 1)
    # Task j (0-based column c) was learned at row c + 1.
    return float((matrix[-1, earlier] - matrix[earlier + 1, earlier]).mean())


def forward_transfer(R: AccuracyMatrixLike) -> float:  # noqa: N803
    """Return FWT, the mean accuracy on a task just before learning it, against the init.

    FWT = mean over j > 1 of R[j-1][j] - R[0][j].

    Args:
        R: Accuracy matrix, shape ``(T + 1, T)``.

    Returns:
        FWT in [-1, 1]. With a single task no task is seen after training and FWT is 0.0 by
        convention (as Avalanche reports).
    """
    matrix = as_accuracy_matrix(R)
    n_tasks = matrix.shape[1]
    if n_tasks == 1:
        return 0.0
    later = np.arange(1, n_tasks)
    # Task j (0-based column c) is about to be learned at row c, i.e. after task j - 1.
    return float((matrix[later, later] - matrix[0, later]).mean())


def per_task_forgetting(R: AccuracyMatrixLike) -> np.ndarray:  # noqa: N803
    """Return each earlier task's forgetting (Chaudhry et al. 2018).

    For task j < T: (max over j <= i < T of R[i][j]) - R[T][j]. The last task has had no
    chance to be forgotten and gets no entry. A value is negative when the final accuracy
    beats every earlier one (positive backward transfer); it is not clipped at 0.

    Args:
        R: Accuracy matrix, shape ``(T + 1, T)``.

    Returns:
        A float64 array of length ``T - 1`` (empty when ``T == 1``); entry ``c`` is task
        ``c + 1``'s forgetting.
    """
    matrix = as_accuracy_matrix(R)
    n_tasks = matrix.shape[1]
    out = np.empty(n_tasks - 1, dtype=np.float64)
    for c in range(n_tasks - 1):
        # Task j = c + 1 is learned at row j; rows j..T-1 precede the final row T.
        best = matrix[c + 1 : n_tasks, c].max()
        out[c] = best - matrix[n_tasks, c]
    return out


def forgetting(R: AccuracyMatrixLike) -> float:  # noqa: N803
    """Return the mean forgetting over all tasks but the last (Chaudhry et al. 2018).

    Args:
        R: Accuracy matrix, shape ``(T + 1, T)``.

    Returns:
        The mean of :func:`per_task_forgetting`, in [-1, 1]; 0.0 when ``T == 1`` by
        convention. It is always >= ``-backward_transfer(R)``.
    """
    values = per_task_forgetting(R)
    if values.size == 0:
        return 0.0
    return float(values.mean())


def summarize_matrix(R: AccuracyMatrixLike) -> dict[str, float]:  # noqa: N803
    """Return every scalar metric of an accuracy matrix.

    Args:
        R: Accuracy matrix, shape ``(T + 1, T)``.

    Returns:
        ``{"acc": ACC, "bwt": BWT, "fwt": FWT, "forgetting": forgetting}`` as Python floats.
    """
    matrix = as_accuracy_matrix(R)
    return {
        "acc": average_accuracy(matrix),
        "bwt": backward_transfer(matrix),
        "fwt": forward_transfer(matrix),
        "forgetting": forgetting(matrix),
    }


def retrieval_precision(
    identities: Sequence[int], retrieved: Sequence[Sequence[int]]
) -> dict[str, float]:
    """How often a task memory retrieves the same underlying distribution, against chance.

    Only tasks whose distribution appeared earlier in the stream are scored.

    Args:
        identities: Distribution id of every task, in stream order (``task_identities``).
        retrieved: For every task, the stream positions of the past tasks retrieved at its
            start, best first.

    Returns:
        ``scored`` (how many tasks were scored), ``precision_at_1`` (the nearest retrieved
        task is the same distribution), ``precision_at_k`` (any retrieved task is) and
        ``chance_at_1`` (expected precision@1 of a uniformly random past task: the share of
        same-distribution tasks among the past ones, averaged). The rates are NaN when no
        task is scored.
    """
    hits_1, hits_k, chance = [], [], []
    for t, found in enumerate(retrieved):
        past = identities[:t]
        same = sum(1 for d in past if d == identities[t])
        if not same:
            continue
        hits_1.append(bool(found) and identities[found[0]] == identities[t])
        hits_k.append(any(identities[i] == identities[t] for i in found))
        chance.append(same / len(past))
    if not hits_1:
        nan = float("nan")
        return {"scored": 0, "precision_at_1": nan, "precision_at_k": nan, "chance_at_1": nan}
    return {
        "scored": len(hits_1),
        "precision_at_1": float(np.mean(hits_1)),
        "precision_at_k": float(np.mean(hits_k)),
        "chance_at_1": float(np.mean(chance)),
    }
