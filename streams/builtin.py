"""The built-in streams, registered by name when ``streams`` is imported.

All of them run offline: ``split-digits`` and ``split-mnist1d`` need no files, the MNIST
streams read MNIST's IDX files and ``split-omniglot`` an Omniglot copy from the data root
(``StreamSpec.data_root``, else ``$LIFELONG_DATA_ROOT``, else ``./data``), and
``image-folder`` reads any ``<root>/<class>/<image>`` folder.

Split streams (``split-*``, ``image-folder``) take the options ``classes_per_task``
(default 2), ``scenario`` (``"class-incremental"``, the default, or
``"task-incremental"``) and ``shuffle_classes`` (default false: classes enter in label
order; true: in an order drawn from the seed). Their labels are renumbered in order of
appearance, so task ``t`` holds classes ``t * k .. t * k + k - 1`` and ``n_classes`` counts
the classes the chosen tasks use. ``n_tasks`` defaults to as many as the classes fill.

Every random choice is drawn from ``StreamSpec.seed`` through local generators: the same
spec gives bit-identical tensors.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence

import torch

from streams.base import Scenario, StreamError, StreamFactory, StreamSpec, TaskStream
from streams.data import (
    TensorSplit,
    alphabet_classes,
    load_digits,
    load_image_folder,
    load_mnist,
    load_mnist1d,
    load_omniglot,
    resolve_data_root,
)
from streams.options import boolean, check_spec, choice, parse_options, positive_int
from streams.registry import register_stream
from streams.tensors import TaskData, tensor_stream
from streams.transforms import (
    TEST_ORDER,
    TRAIN_DRAW,
    class_blocks,
    class_order,
    derived_rng,
    gem_angles,
    permute_pixels,
    pixel_permutations,
    recurring_schedule,
    rotate_images,
)

__all__ = [
    "GEM_TASKS",
    "GEM_TRAIN_PER_TASK",
    "image_folder",
    "permuted_mnist",
    "recurring_permuted_mnist",
    "recurring_rotated_mnist",
    "recurring_split_digits",
    "rotated_mnist",
    "split_digits",
    "split_mnist",
    "split_mnist1d",
    "split_omniglot",
]

GEM_TASKS = 20
"""Default number of tasks of the GEM-protocol streams (and the recurring MNIST streams)."""
GEM_TRAIN_PER_TASK = 1_000
"""Training examples per task in the GEM protocol."""

_SPLIT_SCENARIOS = (Scenario.CLASS_INCREMENTAL.value, Scenario.TASK_INCREMENTAL.value)
_SPLIT_DEFAULTS: dict[str, object] = {
    "classes_per_task": 2,
    "scenario": Scenario.CLASS_INCREMENTAL.value,
    "shuffle_classes": False,
}
_DOMAIN_DEFAULTS: dict[str, object] = {
    "train_per_task": GEM_TRAIN_PER_TASK,
    "test_per_task": None,
}
_RECURRING_DEFAULTS: dict[str, object] = {**_DOMAIN_DEFAULTS, "n_distributions": 5}


# --- registration -------------------------------------------------------------------------


def _builtin(
    name: str, description: str
) -> Callable[[Callable[[str, StreamSpec], TaskStream]], StreamFactory]:
    """Register ``build(name, spec)`` as stream ``name``.

    The registered factory checks the spec's common fields first, and prefixes the stream
    name to any ``StreamError`` from the loaders that lacks it.
    """

    def decorator(build: Callable[[str, StreamSpec], TaskStream]) -> StreamFactory:
        def factory(spec: StreamSpec, /) -> TaskStream:
            check_spec(name, spec)
            try:
                stream = build(name, spec)
            except StreamError as error:
                if str(error).startswith(f"stream {name!r}"):
                    raise
                raise StreamError(f"stream {name!r}: {error}") from error
            return dataclasses.replace(stream, description=description)

        factory.__name__ = factory.__qualname__ = build.__name__
        factory.__doc__ = build.__doc__
        return register_stream(name, description=description)(factory)

    return decorator


# --- the streams ----------------------------------------------------------------------------


@_builtin("split-digits", "scikit-learn's 8x8 digits, 5 tasks of 2 classes, class-incremental")
def split_digits(name: str, spec: StreamSpec) -> TaskStream:
    """scikit-learn's 8x8 digits split into tasks of classes; no files needed.

    Inputs ``(1, 8, 8)``; about 288 training and 72 test images per two-class task.
    """
    options = parse_options(name, spec, _SPLIT_DEFAULTS)
    return _split_stream(name, spec, load_digits(), options)


@_builtin("split-mnist", "MNIST, 5 tasks of 2 digits, class-incremental")
def split_mnist(name: str, spec: StreamSpec) -> TaskStream:
    """MNIST split into tasks of digits (Split-MNIST); inputs ``(1, 28, 28)``.

    Trains on every image of the task's classes in the training pool (the official train
    split, or 8,000 images of the test-only copy) and tests on the held-out images.
    """
    options = parse_options(name, spec, _SPLIT_DEFAULTS)
    data = load_mnist(resolve_data_root(spec.data_root), download=spec.download)
    return _split_stream(name, spec, data, options)


@_builtin("split-mnist1d", "MNIST-1D generated locally, 5 tasks of 2 classes, class-incremental")
def split_mnist1d(name: str, spec: StreamSpec) -> TaskStream:
    """MNIST-1D (4,000 training, 1,000 test signals) split into tasks; inputs ``(1, 40)``."""
    options = parse_options(name, spec, _SPLIT_DEFAULTS)
    return _split_stream(name, spec, load_mnist1d(), options)


@_builtin("image-folder", "any <root>/<class>/<image> folder, tasks of 2 classes")
def image_folder(name: str, spec: StreamSpec) -> TaskStream:
    """Any folder of class folders of images, split into tasks of classes.

    Needs ``data_root``. Extra options: ``image_size`` (default 28) and ``channels``
    (1, the default, or 3). The last 20% of each class's images by file name are test.
    """
    options = parse_options(name, spec, {**_SPLIT_DEFAULTS, "image_size": 28, "channels": 1})
    if spec.data_root is None:
        raise StreamError(
            f"stream {name!r} needs a data root; pass --data-root pointing at a folder laid "
            "out as <class>/<image>"
        )
    data = load_image_folder(
        resolve_data_root(spec.data_root),
        image_size=positive_int(name, options, "image_size"),
        channels=positive_int(name, options, "channels"),
    )
    return _split_stream(name, spec, data, options)


@_builtin("split-omniglot", "Omniglot, one task per alphabet, class-incremental over characters")
def split_omniglot(name: str, spec: StreamSpec) -> TaskStream:
    """Omniglot with alphabets, or blocks of characters, as tasks; inputs ``(1, 28, 28)``.

    Options: ``split_by`` (``"alphabet"``, the default: one task per alphabet, as many
    tasks as alphabets unless ``n_tasks`` asks fewer; or ``"characters"``: blocks of
    ``characters_per_task``, default 10), ``scenario``, ``shuffle_classes`` (shuffles the
    alphabets, or the characters, from the seed), ``image_size`` (28) and ``invert``
    (true: strokes 1 on 0). 15 drawings per character train, 5 test.
    """
    options = parse_options(
        name,
        spec,
        {
            "split_by": "alphabet",
            "characters_per_task": None,
            "scenario": Scenario.CLASS_INCREMENTAL.value,
            "shuffle_classes": False,
            "image_size": 28,
            "invert": True,
        },
    )
    split_by = choice(name, options, "split_by", ("alphabet", "characters"))
    scenario = choice(name, options, "scenario", _SPLIT_SCENARIOS)
    shuffle = boolean(name, options, "shuffle_classes")
    if split_by == "alphabet" and options["characters_per_task"] is not None:
        raise StreamError(
            f"stream {name!r}: characters_per_task applies only with split_by='characters'; "
            "drop it or set split_by='characters'"
        )
    if options["characters_per_task"] is None:
        options["characters_per_task"] = 10
    characters_per_task = positive_int(name, options, "characters_per_task")
    data = load_omniglot(
        resolve_data_root(spec.data_root),
        image_size=positive_int(name, options, "image_size"),
        invert=boolean(name, options, "invert"),
        download=spec.download,
    )
    if split_by == "characters":
        order = class_order(data.n_classes, spec.seed, shuffle=shuffle)
        n_tasks = _default_tasks(name, spec, len(order), characters_per_task, "characters")
        groups = class_blocks(order, characters_per_task, n_tasks)
    else:
        by_alphabet = list(alphabet_classes(data).values())
        alphabet_order = class_order(len(by_alphabet), spec.seed, shuffle=shuffle)
        n_tasks = spec.n_tasks or len(by_alphabet)
        if n_tasks > len(by_alphabet):
            raise StreamError(
                f"stream {name!r}: n_tasks={n_tasks} but the data hold {len(by_alphabet)} "
                f"alphabets; ask for at most {len(by_alphabet)} tasks or "
                "split_by='characters'"
            )
        groups = tuple(tuple(by_alphabet[a]) for a in alphabet_order[:n_tasks])
    return _grouped_stream(name, data, groups, Scenario(scenario))


@_builtin("permuted-mnist", "MNIST Permutations (GEM protocol): 20 tasks, domain-incremental")
def permuted_mnist(name: str, spec: StreamSpec) -> TaskStream:
    """MNIST with a fixed random pixel permutation per task (GEM protocol).

    Every task, the first included, has its own permutation drawn from the seed (as in
    GEM's ``mnist_permutations.py``). 20 tasks by default; each trains on
    ``train_per_task`` (1,000) images drawn from the training pool and tests on the
    held-out images (all of them, or ``test_per_task``) under the same permutation.
    """
    options = parse_options(name, spec, _DOMAIN_DEFAULTS)
    data = load_mnist(resolve_data_root(spec.data_root), download=spec.download)
    n_tasks = spec.n_tasks or GEM_TASKS
    permutations = pixel_permutations(n_tasks, _pixels(data), spec.seed)
    transforms = [_permuter(p) for p in permutations]
    return _domain_stream(name, spec, data, transforms, tuple(range(n_tasks)), options)


@_builtin("rotated-mnist", "MNIST Rotations (GEM protocol): 20 tasks, domain-incremental")
def rotated_mnist(name: str, spec: StreamSpec) -> TaskStream:
    """MNIST rotated by one angle per task (GEM protocol).

    Task ``t`` of ``T`` (20 by default) rotates by an angle drawn uniformly in
    ``[180t/T, 180(t+1)/T)`` degrees (``[9t, 9t+9)`` for 20 tasks). Each task trains on
    ``train_per_task`` (1,000) images drawn from the training pool and tests on the
    held-out images (all, or ``test_per_task``) rotated by the same angle.
    """
    options = parse_options(name, spec, _DOMAIN_DEFAULTS)
    data = load_mnist(resolve_data_root(spec.data_root), download=spec.download)
    n_tasks = spec.n_tasks or GEM_TASKS
    transforms = [_rotator(angle) for angle in gem_angles(n_tasks, spec.seed)]
    return _domain_stream(name, spec, data, transforms, tuple(range(n_tasks)), options)


@_builtin("recurring-rotated-mnist", "rotated MNIST whose 5 rotations recur over 20 tasks")
def recurring_rotated_mnist(name: str, spec: StreamSpec) -> TaskStream:
    """Rotated MNIST where ``n_distributions`` (5) rotations recur over 20 tasks.

    Distribution ``d`` of ``D`` rotates by an angle drawn in ``[180d/D, 180(d+1)/D)``.
    The first ``D`` tasks visit every distribution once; later ones revisit them in an
    order drawn from the seed (``recurring_schedule``), each visit with fresh training
    images. ``task_identities`` holds each task's distribution.
    """
    options = parse_options(name, spec, _RECURRING_DEFAULTS)
    data = load_mnist(resolve_data_root(spec.data_root), download=spec.download)
    n_distributions = positive_int(name, options, "n_distributions")
    schedule = recurring_schedule(spec.n_tasks or GEM_TASKS, n_distributions, spec.seed)
    transforms = [_rotator(angle) for angle in gem_angles(n_distributions, spec.seed)]
    return _domain_stream(name, spec, data, transforms, schedule, options)


@_builtin("recurring-permuted-mnist", "permuted MNIST whose 5 permutations recur over 20 tasks")
def recurring_permuted_mnist(name: str, spec: StreamSpec) -> TaskStream:
    """Permuted MNIST where ``n_distributions`` (5) permutations recur over 20 tasks.

    Scheduled like ``recurring-rotated-mnist``; each visit has fresh training images.
    """
    options = parse_options(name, spec, _RECURRING_DEFAULTS)
    data = load_mnist(resolve_data_root(spec.data_root), download=spec.download)
    n_distributions = positive_int(name, options, "n_distributions")
    schedule = recurring_schedule(spec.n_tasks or GEM_TASKS, n_distributions, spec.seed)
    permutations = pixel_permutations(n_distributions, _pixels(data), spec.seed)
    transforms = [_permuter(p) for p in permutations]
    return _domain_stream(name, spec, data, transforms, schedule, options)


@_builtin("recurring-split-digits", "8x8 digit pairs recurring over 10 tasks, class-incremental")
def recurring_split_digits(name: str, spec: StreamSpec) -> TaskStream:
    """scikit-learn's digits as pairs (0, 1), (2, 3), ... that recur over 10 tasks.

    ``n_distributions`` (default and at most 5) pairs; the first tasks visit each once,
    later ones revisit them in an order drawn from the seed. Each visit trains on
    ``train_per_task`` (100) fresh draws from the pair's training images and tests on
    the pair's test images. Labels are the digits; class-incremental.
    """
    options = parse_options(name, spec, {"n_distributions": 5, "train_per_task": 100})
    n_distributions = positive_int(name, options, "n_distributions")
    train_per_task = positive_int(name, options, "train_per_task")
    if n_distributions > 5:
        raise StreamError(
            f"stream {name!r}: n_distributions={n_distributions} but the digits make 5 pairs; "
            "ask for at most 5"
        )
    schedule = recurring_schedule(spec.n_tasks or 10, n_distributions, spec.seed)
    data = load_digits()
    train_members = [torch.isin(data.y_train, torch.tensor([2 * d, 2 * d + 1])) for d in range(5)]
    smallest = min(int(members.sum()) for members in train_members[:n_distributions])
    if train_per_task > smallest:
        raise StreamError(
            f"stream {name!r}: train_per_task={train_per_task} but the smallest pair has "
            f"{smallest} training images; ask for at most {smallest}"
        )
    test = {d: _members(data.x_test, data.y_test, (2 * d, 2 * d + 1)) for d in set(schedule)}
    train = []
    for t, d in enumerate(schedule):
        pool = torch.nonzero(train_members[d]).flatten()
        draw = derived_rng(spec.seed, TRAIN_DRAW, t).choice(len(pool), train_per_task, False)
        index = pool[torch.from_numpy(draw)]
        train.append((data.x_train[index], data.y_train[index]))
    return tensor_stream(
        name,
        Scenario.CLASS_INCREMENTAL,
        train,
        [test[d] for d in schedule],
        n_classes=2 * n_distributions,
        task_identities=schedule,
    )


# --- shared builders ------------------------------------------------------------------------


def _split_stream(
    name: str, spec: StreamSpec, data: TensorSplit, options: Mapping[str, object]
) -> TaskStream:
    """Tasks of ``classes_per_task`` classes, in label order or shuffled from the seed."""
    classes_per_task = positive_int(name, options, "classes_per_task")
    scenario = choice(name, options, "scenario", _SPLIT_SCENARIOS)
    shuffle = boolean(name, options, "shuffle_classes")
    order = class_order(data.n_classes, spec.seed, shuffle=shuffle)
    n_tasks = _default_tasks(name, spec, data.n_classes, classes_per_task, "classes")
    groups = class_blocks(order, classes_per_task, n_tasks)
    return _grouped_stream(name, data, groups, Scenario(scenario))


def _grouped_stream(
    name: str, data: TensorSplit, groups: Sequence[Sequence[int]], scenario: Scenario
) -> TaskStream:
    """One task per group of classes, labels renumbered in order of appearance."""
    renumber = torch.full((data.n_classes,), -1, dtype=torch.int64)
    used = [label for group in groups for label in group]
    renumber[torch.tensor(used)] = torch.arange(len(used))
    train = [_members(data.x_train, data.y_train, group, renumber) for group in groups]
    test = [_members(data.x_test, data.y_test, group, renumber) for group in groups]
    return tensor_stream(name, scenario, train, test, n_classes=len(used))


def _members(
    x: torch.Tensor,
    y: torch.Tensor,
    classes: Sequence[int],
    renumber: torch.Tensor | None = None,
) -> TaskData:
    mask = torch.isin(y, torch.tensor(list(classes)))
    labels = y[mask]
    return x[mask], labels if renumber is None else renumber[labels]


def _domain_stream(
    name: str,
    spec: StreamSpec,
    data: TensorSplit,
    transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    schedule: Sequence[int],
    options: Mapping[str, object],
) -> TaskStream:
    """Task ``t`` applies ``transforms[schedule[t]]`` to fresh training draws and the test set.

    Each task draws ``train_per_task`` training images without replacement from its own
    generator; tasks draw independently, so an image may serve several tasks under
    different transforms. The test images are the held-out part, or its first
    ``test_per_task`` in a fixed order (the same for every seed and task).
    """
    train_per_task = positive_int(name, options, "train_per_task")
    pool = len(data.x_train)
    if train_per_task > pool:
        raise StreamError(
            f"stream {name!r}: train_per_task={train_per_task} but the training pool holds "
            f"{pool} images; ask for at most {pool} or pass a data root with MNIST's train split"
        )
    x_test, y_test = data.x_test, data.y_test
    if options["test_per_task"] is not None:
        test_per_task = positive_int(name, options, "test_per_task")
        if test_per_task > len(x_test):
            raise StreamError(
                f"stream {name!r}: test_per_task={test_per_task} but {len(x_test)} test "
                f"images are held out; ask for at most {len(x_test)} or drop the option"
            )
        # A fixed order, not the run's seed: every run tests on the same images.
        keep = torch.from_numpy(derived_rng(0, TEST_ORDER).permutation(len(x_test)))
        keep = keep[:test_per_task].sort().values
        x_test, y_test = x_test[keep], y_test[keep]
    test = {d: (transforms[d](x_test), y_test) for d in sorted(set(schedule))}
    train = []
    for t, d in enumerate(schedule):
        draw = derived_rng(spec.seed, TRAIN_DRAW, t).choice(pool, train_per_task, replace=False)
        index = torch.from_numpy(draw)
        train.append((transforms[d](data.x_train[index]), data.y_train[index]))
    return tensor_stream(
        name,
        Scenario.DOMAIN_INCREMENTAL,
        train,
        [test[d] for d in schedule],
        n_classes=data.n_classes,
        task_identities=tuple(schedule),
    )


def _rotator(angle: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda images: rotate_images(images, angle)


def _permuter(permutation: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda images: permute_pixels(images, permutation)


def _pixels(data: TensorSplit) -> int:
    return int(torch.tensor(data.input_shape).prod())


def _default_tasks(name: str, spec: StreamSpec, n_classes: int, per_task: int, noun: str) -> int:
    """``spec.n_tasks``, or as many tasks as the classes fill (warning about leftovers)."""
    if per_task > n_classes:
        raise StreamError(
            f"stream {name!r}: {per_task} {noun} per task but the data hold {n_classes}; "
            f"ask for at most {n_classes}"
        )
    if spec.n_tasks is not None:
        return spec.n_tasks
    n_tasks, leftover = divmod(n_classes, per_task)
    if leftover:
        warnings.warn(
            f"stream {name!r}: {n_classes} {noun} in tasks of {per_task} leave {leftover} "
            f"unused; pick a divisor of {n_classes} to use them all",
            stacklevel=4,
        )
    return n_tasks


# --- spec and options -----------------------------------------------------------------------
