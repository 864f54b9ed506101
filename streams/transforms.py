"""Pure helpers behind the built-in streams: seeded draws, input transforms, schedules.

Every random helper takes the run's seed and draws from its own local generator,
``derived_rng(seed, purpose, ...)``, never from a global one: the same arguments give the
same result, and one draw (say the rotation angles) does not shift another (the training
examples) when an option changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms.functional import InterpolationMode, rotate

from streams.base import StreamError

__all__ = [
    "class_blocks",
    "class_order",
    "derived_rng",
    "gem_angles",
    "permute_pixels",
    "pixel_permutations",
    "recurring_schedule",
    "rotate_images",
]

# Purposes of the draws; each seeds its own generator.
CLASS_ORDER, ANGLES, PERMUTATIONS, TRAIN_DRAW, SCHEDULE, TEST_ORDER, VALIDATION = range(7)

GEM_MAX_ANGLE = 180.0
"""Rotations of the GEM protocol span [0, 180) degrees, cut into one interval per task."""


def derived_rng(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """A NumPy generator for one purpose (and, say, one task) of a run with ``seed``."""
    return np.random.default_rng([seed, purpose, *keys])


def class_order(n_classes: int, seed: int, *, shuffle: bool) -> tuple[int, ...]:
    """Order in which classes enter the stream: ``range`` order, or shuffled from ``seed``."""
    if not shuffle:
        return tuple(range(n_classes))
    return tuple(int(c) for c in derived_rng(seed, CLASS_ORDER).permutation(n_classes))


def class_blocks(
    order: Sequence[int], classes_per_task: int, n_tasks: int
) -> tuple[tuple[int, ...], ...]:
    """Cut a class order into ``n_tasks`` consecutive blocks of ``classes_per_task``.

    Raises:
        StreamError: If the order holds fewer than ``n_tasks * classes_per_task`` classes;
            the message names the largest possible ``n_tasks``.
    """
    available = len(order) // classes_per_task
    if n_tasks > available:
        raise StreamError(
            f"n_tasks={n_tasks} with classes_per_task={classes_per_task} needs "
            f"{n_tasks * classes_per_task} classes but there are {len(order)}; ask for at most "
            f"{available} tasks"
        )
    return tuple(
        tuple(order[t * classes_per_task : (t + 1) * classes_per_task]) for t in range(n_tasks)
    )


def gem_angles(n_tasks: int, seed: int) -> tuple[float, ...]:
    """Rotation angle of each task by the GEM rule (Lopez-Paz & Ranzato, 2017).

    Task ``t`` of ``T`` takes one angle drawn uniformly in
    ``[180 t / T, 180 (t + 1) / T)`` degrees, which for the protocol's 20 tasks is
    ``[9t, 9(t + 1))``. This is GEM's own data script (``mnist_rotations.py``, with its
    defaults ``min_rot=0``, ``max_rot=180``) for any ``T``.
    """
    if n_tasks < 1:
        raise StreamError(f"n_tasks is {n_tasks}; pass a positive integer")
    width = GEM_MAX_ANGLE / n_tasks
    rng = derived_rng(seed, ANGLES)
    return tuple(float(rng.uniform(width * t, width * (t + 1))) for t in range(n_tasks))


def rotate_images(images: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate a batch ``(N, C, H, W)`` counter-clockwise by ``angle`` degrees.

    Bilinear interpolation about the centre; corners that come from outside are 0.
    """
    return rotate(images, angle, interpolation=InterpolationMode.BILINEAR)


def pixel_permutations(n: int, n_pixels: int, seed: int) -> tuple[torch.Tensor, ...]:
    """``n`` random permutations of ``n_pixels`` pixel positions, drawn from ``seed``."""
    rng = derived_rng(seed, PERMUTATIONS)
    return tuple(torch.from_numpy(rng.permutation(n_pixels)) for _ in range(n))


def permute_pixels(images: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Shuffle the pixels of every image of a batch ``(N, *shape)`` the same way."""
    flat = images.reshape(len(images), -1)
    return flat[:, permutation].reshape(images.shape)


def recurring_schedule(n_tasks: int, n_distributions: int, seed: int) -> tuple[int, ...]:
    """Which data distribution each task of a recurring stream draws from.

    The first ``n_distributions`` tasks visit the distributions ``0, 1, ...`` in order, so
    all are seen once; later tasks revisit them in rounds, each round a permutation of all
    distributions drawn from ``seed``, never repeating the distribution just visited (when
    there are at least two).

    Args:
        n_tasks: Length of the stream; at least ``n_distributions``.
        n_distributions: Number of distinct distributions, at least 1.
        seed: Seed of the revisit order.

    Returns:
        The distribution id of every task.

    Raises:
        StreamError: If ``n_distributions < 1`` or ``n_tasks < n_distributions``.
    """
    if n_distributions < 1:
        raise StreamError(f"n_distributions is {n_distributions}; pass a positive integer")
    if n_tasks < n_distributions:
        raise StreamError(
            f"n_tasks={n_tasks} is fewer than n_distributions={n_distributions}, so no "
            f"distribution could recur; ask for at least {n_distributions} tasks or fewer "
            "distributions"
        )
    schedule = list(range(n_distributions))
    rng = derived_rng(seed, SCHEDULE)
    while len(schedule) < n_tasks:
        round_ = [int(d) for d in rng.permutation(n_distributions)]
        if n_distributions > 1 and round_[0] == schedule[-1]:
            round_[0], round_[1] = round_[1], round_[0]
        schedule.extend(round_)
    return tuple(schedule[:n_tasks])
