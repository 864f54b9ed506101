"""Build a ``TaskStream`` from tensors: the few lines a new stream needs.

Example:
    A stream of two tasks from a user's own tensors, registered by name::

        from streams import StreamSpec, TaskStream, register_stream, tensor_stream

        @register_stream("my-stream", description="two tasks of my data")
        def my_stream(spec: StreamSpec) -> TaskStream:
            train = [(x0, y0), (x1, y1)]
            test = [(tx0, ty0), (tx1, ty1)]
            return tensor_stream("my-stream", "class-incremental", train, test)
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from avalanche.benchmarks.scenarios import (
    benchmark_from_datasets,
    with_classes_timeline,
    with_task_labels,
)

# Avalanche 0.6 has no public function that turns tensors into a data set carrying both
# targets and task labels (which DER, LaMAML and per-class metrics need); this one does.
from avalanche.benchmarks.utils import (
    AvalancheDataset,
    _make_taskaware_tensor_classification_dataset,
)

from streams.base import TASK_SEQUENCE_SCENARIOS, Scenario, StreamError, TaskStream

__all__ = ["TaskData", "attach_tensors", "dataset_tensors", "tensor_dataset", "tensor_stream"]

TaskData = tuple[torch.Tensor, torch.Tensor]
"""One task's data: inputs ``x`` (float, ``(N, *input_shape)``) and labels ``y`` (``(N,)``)."""


def tensor_stream(
    name: str,
    scenario: Scenario | str,
    train_tasks: Sequence[TaskData],
    test_tasks: Sequence[TaskData],
    *,
    n_classes: int | None = None,
    task_identities: Sequence[int] | None = None,
    description: str = "",
) -> TaskStream:
    """Build a stream whose task ``t`` trains on ``train_tasks[t]`` and tests on ``test_tasks[t]``.

    Every experience carries task labels: the task index ``t`` in a task-incremental
    stream, 0 otherwise. Inputs are stored as float32 and labels as int64; the tensors are
    not copied otherwise, so do not change them afterwards.

    Args:
        name: The stream's name, used in error messages and kept in the result.
        scenario: A ``Scenario`` or its value (``"class-incremental"``,
            ``"task-incremental"``, ``"domain-incremental"``).
        train_tasks: One ``(x, y)`` pair per task; ``x`` is a float tensor
            ``(N, *input_shape)`` with finite values, ``y`` an integer tensor ``(N,)``.
        test_tasks: One ``(x, y)`` pair per task, the same number as ``train_tasks``.
        n_classes: Number of classes of a single-head model; defaults to the largest
            label plus one. Every label must lie in ``[0, n_classes)``.
        task_identities: For each task, the id of its data distribution (equal ids mark
            a revisited distribution); defaults to ``range(len(train_tasks))``.
        description: One line saying what the stream is.

    Returns:
        The stream, wrapping an Avalanche benchmark with ``train_stream`` and
        ``test_stream`` of ``len(train_tasks)`` experiences each.

    Raises:
        StreamError: If any argument is malformed; the message names the stream, the task
            and the bad value.
    """
    kind = _scenario(name, scenario)
    n_tasks = len(train_tasks)
    if n_tasks < 1:
        raise StreamError(f"stream {name!r}: no training tasks; pass at least one (x, y) pair")
    if len(test_tasks) != n_tasks:
        raise StreamError(
            f"stream {name!r}: {n_tasks} training tasks but {len(test_tasks)} test tasks; "
            "pass one test (x, y) pair per training task"
        )
    train = [_checked(name, "train", t, pair) for t, pair in enumerate(train_tasks)]
    test = [_checked(name, "test", t, pair) for t, pair in enumerate(test_tasks)]
    input_shape = tuple(train[0][0].shape[1:])
    for split, tasks in (("train", train), ("test", test)):
        for t, (x, _) in enumerate(tasks):
            if tuple(x.shape[1:]) != input_shape:
                raise StreamError(
                    f"stream {name!r}: {split} task {t} has inputs of shape "
                    f"{tuple(x.shape[1:])}, train task 0 has {input_shape}; give every task "
                    "the same input shape"
                )
    classes = _n_classes(name, n_classes, train, test)
    identities = _identities(name, task_identities, n_tasks)

    def task_label(t: int) -> int:
        return t if kind is Scenario.TASK_INCREMENTAL else 0

    benchmark = benchmark_from_datasets(
        train=[tensor_dataset(x, y, task_label(t)) for t, (x, y) in enumerate(train)],
        test=[tensor_dataset(x, y, task_label(t)) for t, (x, y) in enumerate(test)],
    )
    return TaskStream(
        name=name,
        scenario=kind,
        n_classes=classes,
        input_shape=input_shape,
        benchmark=with_task_labels(with_classes_timeline(benchmark)),
        task_identities=identities,
        description=description,
    )


def _scenario(name: str, scenario: Scenario | str) -> Scenario:
    valid = ", ".join(sorted(repr(s.value) for s in TASK_SEQUENCE_SCENARIOS))
    try:
        kind = Scenario(scenario)
    except ValueError:
        raise StreamError(
            f"stream {name!r}: unknown scenario {scenario!r}; choose one of {valid}"
        ) from None
    if kind not in TASK_SEQUENCE_SCENARIOS:
        raise StreamError(
            f"stream {name!r}: a tensor stream is a sequence of tasks ({valid}); build a "
            "task-switching stream with streams.switching.build_switching_stream"
        )
    return kind


def _checked(name: str, split: str, t: int, pair: object) -> TaskData:
    where = f"stream {name!r}: {split} task {t}"
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise StreamError(f"{where} is {type(pair).__name__}; pass an (x, y) pair of tensors")
    x, y = pair
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise StreamError(
            f"{where} has x of type {type(x).__name__} and y of type {type(y).__name__}; "
            "pass torch tensors (torch.as_tensor converts arrays)"
        )
    if not x.is_floating_point():
        raise StreamError(f"{where} has x of dtype {x.dtype}; pass floats (x.float())")
    if x.ndim < 2:
        raise StreamError(
            f"{where} has x of shape {tuple(x.shape)}; pass (N, *input_shape), e.g. (N, 1)"
        )
    if len(x) == 0:
        raise StreamError(f"{where} is empty; give every task at least one example")
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise StreamError(
            f"{where} has {n_nan} NaN and {n_inf} inf values in x; clean the inputs first"
        )
    if y.ndim != 1:
        raise StreamError(f"{where} has y of shape {tuple(y.shape)}; pass 1-D labels (N,)")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise StreamError(f"{where} has y of dtype {y.dtype}; pass integer labels (y.long())")
    if len(y) != len(x):
        raise StreamError(
            f"{where} has {len(x)} inputs but {len(y)} labels; pass one label per input"
        )
    return x.to(torch.float32), y.to(torch.int64)


def _n_classes(
    name: str, n_classes: int | None, train: list[TaskData], test: list[TaskData]
) -> int:
    low = min(int(y.min()) for _, y in train + test)
    high = max(int(y.max()) for _, y in train + test)
    if n_classes is None:
        n_classes = high + 1
    elif isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise StreamError(f"stream {name!r}: n_classes is {n_classes!r}; pass a positive integer")
    if low < 0 or high >= n_classes:
        for split, tasks in (("train", train), ("test", test)):
            for t, (_, y) in enumerate(tasks):
                bad = y[(y < 0) | (y >= n_classes)]
                if len(bad):
                    raise StreamError(
                        f"stream {name!r}: {split} task {t} has label {int(bad[0])}, outside "
                        f"[0, {n_classes}); number classes from 0 or raise n_classes"
                    )
    return n_classes


def _identities(name: str, task_identities: Sequence[int] | None, n_tasks: int) -> tuple[int, ...]:
    if task_identities is None:
        return tuple(range(n_tasks))
    identities = tuple(task_identities)
    if len(identities) != n_tasks:
        raise StreamError(
            f"stream {name!r}: {len(identities)} task identities for {n_tasks} tasks; "
            "pass one per task"
        )
    for identity in identities:
        if isinstance(identity, bool) or not isinstance(identity, Integral) or identity < 0:
            raise StreamError(
                f"stream {name!r}: task identity {identity!r} is not a non-negative integer; "
                "number distributions 0, 1, 2, ..."
            )
    return tuple(int(identity) for identity in identities)


def tensor_dataset(x: torch.Tensor, y: torch.Tensor, task_label: int) -> AvalancheDataset:
    """An Avalanche classification data set of ``(x, y)`` under one task label.

    ``dataset_tensors`` reads it back as ``(x, y)`` without indexing it sample by sample.
    """
    dataset = _make_taskaware_tensor_classification_dataset(
        x, y, task_labels=task_label, targets=y
    )
    return attach_tensors(dataset, x, y)


_TENSORS = "_lifelong_tensors"
"""The attribute under which a data set built here keeps the tensors it was built from."""


def attach_tensors(dataset: AvalancheDataset, x: torch.Tensor, y: torch.Tensor) -> AvalancheDataset:
    """Let :func:`dataset_tensors` read ``dataset`` as the tensors ``(x, y)`` it holds.

    Args:
        dataset: A data set whose sample ``i`` is ``(x[i], y[i], ...)``.
        x: Its inputs, in order.
        y: Its labels, in order.

    Returns:
        ``dataset`` itself.
    """
    setattr(dataset, _TENSORS, (x, y))
    return dataset


def dataset_tensors(dataset: AvalancheDataset) -> TaskData:
    """Every sample of a data set, in order, as ``(x, y)`` tensors (float32 and int64).

    A data set that ``tensor_stream`` or ``with_validation_split`` built hands back the
    tensors it was made from, at no cost. Any other is read once, sample by sample:
    indexing rather than a ``DataLoader``, which would draw from the global torch random
    generator and so change the run's later random numbers.

    Args:
        dataset: A data set whose samples are ``(x, y, ...)``.

    Returns:
        ``(x, y)``: inputs stacked along a new first dimension, and labels.
    """
    held = getattr(dataset, _TENSORS, None)
    if held is not None:
        return held
    items = [dataset[i] for i in range(len(dataset))]
    x = torch.stack([torch.as_tensor(item[0]) for item in items]).to(torch.float32)
    y = torch.as_tensor([int(item[1]) for item in items], dtype=torch.int64)
    return x, y
