"""``omniglot-switching``: OSAKA's task-switching stream from Omniglot alphabets and digits.

The pool: some Omniglot alphabets for pre-training, the other alphabets as new
distributions, and digits as out-of-distribution ones (MNIST, and scikit-learn's 8x8 digits
resized to 28x28). Every class keeps at most ``DRAWINGS_PER_CLASS`` training and
``TEST_DRAWINGS_PER_CLASS`` test drawings, as Omniglot's characters have (15 and 5), so a
class of any distribution offers the same number of shots.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch.nn.functional import interpolate

from streams.base import StreamError, StreamSpec
from streams.data import (
    alphabet_classes,
    load_digits,
    load_mnist,
    load_omniglot,
    resolve_data_root,
)
from streams.data.common import TensorSplit
from streams.data.mnist import find_mnist_files
from streams.options import check_spec, choice, parse_options, positive_int, probability
from streams.registry import register_stream
from streams.switching import (
    Distribution,
    DistributionKind,
    SwitchingStream,
    build_switching_stream,
    check_input_shapes,
    kind_weights_from,
)
from streams.transforms import derived_rng

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_STEPS", "omniglot_switching", "omniglot_switching_pool"]

DEFAULT_STEPS = 1000
"""Steps of the stream unless ``n_tasks`` asks otherwise."""
DRAWINGS_PER_CLASS = 15
"""Training drawings kept per class (Omniglot has 15 per character)."""
TEST_DRAWINGS_PER_CLASS = 5
"""Test drawings kept per class (Omniglot holds out 5 per character)."""
IMAGE_SIZE = 28

_PRETRAIN_CHOICE, _DIGIT_DRAWINGS = 111, 112

_DEFAULTS: Mapping[str, object] = {
    "pretrain_alphabets": 3,
    "mnist_root": None,
    "weights": "0.5,0.25,0.25",
    "p": 0.9,
    "labels": "shuffled",
    "boundaries": "hidden",
    "ways": 5,
    "shots": 1,
}


@register_stream(
    "omniglot-switching",
    description="OSAKA task-switching few-shot stream: Omniglot alphabets, MNIST and digits",
)
def omniglot_switching(spec: StreamSpec) -> SwitchingStream:
    """Build ``omniglot-switching`` from ``spec`` (its options are in ``_DEFAULTS``).

    Options: ``pretrain_alphabets`` (a count, drawn from the seed, or names joined by ``+``
    or given as a list), ``mnist_root`` (default: ``mnist/`` beside the Omniglot folder),
    ``weights`` (pretrain,new,ood; ``0.5,0.25,0.25``), ``p`` (0.9), ``labels``
    (``shuffled`` or ``fixed``), ``boundaries`` (``hidden`` or ``known``), ``ways`` (5) and
    ``shots`` (1). ``n_tasks`` is the number of steps (``DEFAULT_STEPS``).

    Raises:
        StreamError: On missing data or a bad option, in one line naming it and the fix.
    """
    name = "omniglot-switching"
    check_spec(name, spec)
    options = parse_options(name, spec, _DEFAULTS)
    data_root = resolve_data_root(spec.data_root)
    pool = omniglot_switching_pool(
        data_root,
        options["pretrain_alphabets"],
        seed=spec.seed,
        mnist_root=Path(str(options["mnist_root"])) if options["mnist_root"] else None,
        download=spec.download,
    )
    return build_switching_stream(
        name,
        pool,
        n_steps=spec.n_tasks or DEFAULT_STEPS,
        seed=spec.seed,
        ways=positive_int(name, options, "ways"),
        shots=positive_int(name, options, "shots"),
        p_stay=probability(name, options, "p"),
        labels=choice(name, options, "labels", ("shuffled", "fixed")),
        boundaries=choice(name, options, "boundaries", ("hidden", "known")),
        kind_weights=kind_weights_from(str(options["weights"])),
    )


def omniglot_switching_pool(
    data_root: Path,
    pretrain_alphabets: object,
    *,
    seed: int,
    mnist_root: Path | None = None,
    download: bool = False,
) -> tuple[Distribution, ...]:
    """The pool: alphabets for pre-training, the other alphabets, then the digit sets.

    Args:
        data_root: The Omniglot copy (a folder or zip, see ``streams.data.find_omniglot``).
        pretrain_alphabets: How many alphabets pre-train (drawn from ``seed``), or their
            names (a list, or one string joined by ``+``).
        seed: Draws the pre-training alphabets when a count is given.
        mnist_root: MNIST's folder; ``None`` looks for ``mnist/`` beside the Omniglot data.
            Without MNIST the out-of-distribution digits are scikit-learn's alone (logged).
        download: Let torchvision fetch Omniglot when it is missing.

    Raises:
        StreamError: If an alphabet name is unknown, the count leaves no new alphabet, or
            data are missing.
    """
    omniglot = load_omniglot(data_root, image_size=IMAGE_SIZE, download=download)
    alphabets = alphabet_classes(omniglot)
    chosen = _pretraining_alphabets(list(alphabets), pretrain_alphabets, seed)
    pool = [
        _distribution(name, DistributionKind.PRETRAIN, omniglot, alphabets[name])
        for name in chosen
    ] + [
        _distribution(name, DistributionKind.NEW, omniglot, classes)
        for name, classes in alphabets.items()
        if name not in chosen
    ]
    mnist = _find_mnist(data_root, mnist_root)
    if mnist is None:
        logger.warning(
            "omniglot-switching: no MNIST beside %s and no mnist_root; the out-of-"
            "distribution digits are scikit-learn's alone",
            data_root,
        )
    else:
        pool.append(_digit_distribution("mnist", load_mnist(mnist), seed))
    pool.append(_digit_distribution("digits", _resized(load_digits()), seed))
    check_input_shapes("omniglot-switching", pool)
    return tuple(pool)


def _pretraining_alphabets(names: list[str], asked: object, seed: int) -> list[str]:
    where = "stream 'omniglot-switching'"
    if isinstance(asked, str) and not asked.strip().isdigit():
        asked = [part.strip() for part in asked.split("+") if part.strip()]
    if isinstance(asked, Sequence) and not isinstance(asked, str):
        unknown = [a for a in asked if a not in names]
        if unknown:
            raise StreamError(
                f"{where}: pretrain_alphabets names {unknown[0]!r}, which the data do not "
                f"hold; choose from {', '.join(names)}"
            )
        chosen = list(dict.fromkeys(str(a) for a in asked))
    else:
        count = int(str(asked)) if str(asked).strip().isdigit() else -1
        if isinstance(asked, bool) or count < 1:
            raise StreamError(
                f"{where}: pretrain_alphabets={asked!r}; pass a positive count or alphabet names"
            )
        order = derived_rng(seed, _PRETRAIN_CHOICE).permutation(len(names))
        chosen = [names[i] for i in sorted(order[:count])]
    if len(chosen) >= len(names):
        raise StreamError(
            f"{where}: pretrain_alphabets takes {len(chosen)} of the {len(names)} alphabets "
            f"and leaves none new; ask for at most {len(names) - 1}"
        )
    return chosen


def _distribution(
    name: str, kind: DistributionKind, data: TensorSplit, classes: Sequence[int]
) -> Distribution:
    train = tuple(data.x_train[data.y_train == c][:DRAWINGS_PER_CLASS] for c in classes)
    test = tuple(data.x_test[data.y_test == c][:TEST_DRAWINGS_PER_CLASS] for c in classes)
    return Distribution(name, kind, train, test)


def _digit_distribution(name: str, data: TensorSplit, seed: int) -> Distribution:
    """Ten classes of digits, a seeded choice of drawings per class."""
    train, test = [], []
    for digit in range(data.n_classes):
        rng = derived_rng(seed, _DIGIT_DRAWINGS, digit)
        pool_train = data.x_train[data.y_train == digit]
        pool_test = data.x_test[data.y_test == digit]
        train_order = torch.from_numpy(rng.permutation(len(pool_train)))
        test_order = torch.from_numpy(rng.permutation(len(pool_test)))
        train.append(pool_train[train_order[:DRAWINGS_PER_CLASS]])
        test.append(pool_test[test_order[:TEST_DRAWINGS_PER_CLASS]])
    return Distribution(name, DistributionKind.OOD, tuple(train), tuple(test))


def _resized(data: TensorSplit) -> TensorSplit:
    """The 8x8 digits at 28x28, bilinear, in ``[0, 1]``."""

    def up(x: torch.Tensor) -> torch.Tensor:
        size = (IMAGE_SIZE, IMAGE_SIZE)
        return interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(0, 1)

    return TensorSplit(
        up(data.x_train), data.y_train, up(data.x_test), data.y_test, data.class_names
    )


def _find_mnist(data_root: Path, mnist_root: Path | None) -> Path | None:
    if mnist_root is not None:
        if find_mnist_files(mnist_root) is None:
            raise StreamError(
                "stream 'omniglot-switching': no MNIST files under "
                f"mnist_root={str(mnist_root)!r}; point it at a folder with "
                "t10k-images-idx3-ubyte(.gz), or drop the option"
            )
        return mnist_root
    folder = data_root if data_root.is_dir() else data_root.parent
    beside = folder.parent / "mnist"
    return beside if beside.is_dir() and find_mnist_files(beside) is not None else None
