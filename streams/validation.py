"""Hold out part of every task's training data as its evaluation set.

Hyperparameters must never be chosen on test results. ``with_validation_split`` turns any
stream into one that trains on part of each task's training data and evaluates on the
rest, so a search can run the normal protocol without reading the test split.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from avalanche.benchmarks.scenarios import (
    benchmark_from_datasets,
    with_classes_timeline,
    with_task_labels,
)
from avalanche.benchmarks.utils import AvalancheDataset

from streams.base import StreamError, TaskStream
from streams.tensors import attach_tensors, dataset_tensors
from streams.transforms import VALIDATION, derived_rng

__all__ = ["with_validation_split"]


def with_validation_split(stream: TaskStream, fraction: float, seed: int) -> TaskStream:
    """The stream with each task's test set replaced by a held-out share of its training set.

    The held-out examples are drawn per task from ``seed``, without replacement, and are
    removed from that task's training data; the stream's test split is never read.

    Args:
        stream: Any built stream.
        fraction: Share of every task's training examples to hold out, in ``(0, 1)``.
        seed: Seed of the draw (the run's seed).

    Returns:
        A stream with the same name, scenario, classes and task identities.

    Raises:
        StreamError: If ``fraction`` is outside ``(0, 1)`` or leaves a task with no
            training or no validation example.
    """
    if not 0 < fraction < 1:
        raise StreamError(
            f"validation fraction is {fraction}; pass a share strictly between 0 and 1, e.g. 0.2"
        )
    train: list[AvalancheDataset] = []
    held_out: list[AvalancheDataset] = []
    for t, experience in enumerate(stream.benchmark.train_stream):
        dataset = experience.dataset
        n_examples = len(dataset)
        n_held_out = math.floor(fraction * n_examples)
        if n_held_out < 1 or n_held_out >= n_examples:
            raise StreamError(
                f"stream {stream.name!r}: task {t} has {n_examples} training examples, too "
                f"few to hold out a share of {fraction}; pick a fraction that leaves at least "
                "one example on each side"
            )
        order = torch.from_numpy(derived_rng(seed, VALIDATION, t).permutation(n_examples))
        x, y = dataset_tensors(dataset)
        for part, into in ((order[:n_held_out], held_out), (order[n_held_out:], train)):
            indices = part.sort().values
            subset = dataset.subset(indices.tolist())
            into.append(attach_tensors(subset, x[indices], y[indices]))
    benchmark = benchmark_from_datasets(train=train, test=held_out)
    return replace(
        stream,
        benchmark=with_task_labels(with_classes_timeline(benchmark)),
        description=f"{stream.description} (evaluated on {fraction:g} of training held out)",
    )
