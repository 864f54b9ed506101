"""A validation stream with an alphabet that pre-training never saw, as a stream plug-in.

The pre-training-only validation streams of ``switching_validation.sh`` hold no alphabet
the encoder has not learned, so nothing on them depends on how the agent meets one, while
half of a test stream's draws (new alphabets and digits) are such. This one takes seed 0's
three pre-training alphabets and nothing else: Early_Aramaic and Korean pre-train the
encoder and recur in the stream; Latin, held out of pre-training, comes as a new
distribution (a third of the draws). No digit is drawn (the test streams' out-of-distribution
data)::

    python run_stream.py --stream benchmarks/validation_stream.py:held_out_alphabet \\
        --data-root ../shared/data/omniglot --seeds 100 --agents lifelong

``held_out_and_negated`` adds an out-of-distribution kind without the test streams' digits:
the held-out alphabet again with its intensities negated (dark strokes on a light ground,
which the encoder never saw), drawn a quarter of the time as the digits are in the test
streams.

``loose_held_out_and_negated`` makes the held-out alphabet loose: every drawing gets fixed
Gaussian pixel noise (option ``noise``, its standard deviation, 0.7 by default; drawn from
the stream seed), so its samples sit far from their class prototypes under the encoder, as
one new alphabet's do on a test stream (for choosing how a switch is told from a hard
batch of a loose task).

``turned_held_out_and_negated`` adds a second new alphabet: Latin turned a quarter turn, its
characters as 26 more classes (rotated characters as new classes, as in Santoro et al. 2016
and Vinyals et al. 2016). Its 52 new characters are as many as a test stream's two new
alphabets bring (48 or 62), where Latin alone makes every 20-way few-shot episode nearly the
same classes; no other alphabet is free for this, as Latin is the only one that no test seed
(0-2) draws few-shot episodes from::

    python run_stream.py --stream benchmarks/validation_stream.py:turned_held_out_and_negated \\
        --data-root ../shared/data/omniglot --seeds 100 --agents lifelong

``few_negated`` keeps only Latin's first 10 characters in the negated kind, as many classes as
the test streams' digits, so that each comes back as often as a digit does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from streams.base import StreamSpec
from streams.data.common import resolve_data_root
from streams.omniglot_switching import DEFAULT_STEPS, omniglot_switching_pool
from streams.options import choice, parse_options, probability
from streams.switching import (
    Distribution,
    DistributionKind,
    SwitchingStream,
    build_switching_stream,
)

NAME = "held-out-alphabet"
NEGATED_NAME = "held-out-and-negated"
LOOSE_NAME = "loose-held-out-and-negated"
TURNED_NAME = "turned-held-out-and-negated"
FEW_NEGATED_NAME = "few-negated"
OOD_CLASSES = 10
"""Characters of ``few_negated``'s out-of-distribution kind: as many as the test's digits."""
PRETRAINING = "Early_Aramaic+Korean"
HELD_OUT = "Latin"
TURNED = "Latin-turned"


def held_out_alphabet(spec: StreamSpec) -> SwitchingStream:
    """Seed 0's pre-training alphabets, one of them held out of pre-training.

    Options: ``p`` (0.9) and ``labels`` (``shuffled`` or ``fixed``), as ``omniglot-switching``.
    """
    return _build(NAME, spec, negated=False)


def held_out_and_negated(spec: StreamSpec) -> SwitchingStream:
    """``held_out_alphabet`` plus the held-out alphabet negated, as the out-of-distribution kind.

    Options: ``p`` (0.9) and ``labels`` (``shuffled`` or ``fixed``), as ``omniglot-switching``.
    """
    return _build(NEGATED_NAME, spec, negated=True)


def loose_held_out_and_negated(spec: StreamSpec) -> SwitchingStream:
    """``held_out_and_negated`` with the held-out alphabet's drawings made noisy (loose).

    Options: ``p``, ``labels`` and ``noise`` (0.7: the pixel noise's standard deviation).
    """
    return _build(LOOSE_NAME, spec, negated=True, loose=True)


def turned_held_out_and_negated(spec: StreamSpec) -> SwitchingStream:
    """``held_out_and_negated`` plus Latin turned a quarter turn, as a second new alphabet.

    Options: ``p`` (0.9) and ``labels`` (``shuffled`` or ``fixed``), as ``omniglot-switching``.
    """
    return _build(TURNED_NAME, spec, negated=True, turned=True)


def few_negated(spec: StreamSpec) -> SwitchingStream:
    """``held_out_and_negated`` whose out-of-distribution kind holds only 10 characters.

    The test streams' out-of-distribution kind is the 10 digits, so each of its classes comes
    back often; the negated alphabet's 26 characters come back less than half as often.
    Here the negated kind is Latin's first ``OOD_CLASSES`` characters, negated, for choices
    that depend on how often a class recurs (borrowing a class met before).

    Options: ``p`` (0.9) and ``labels`` (``shuffled`` or ``fixed``), as ``omniglot-switching``.
    """
    return _build(FEW_NEGATED_NAME, spec, negated=True, ood_classes=OOD_CLASSES)


def _build(
    name: str,
    spec: StreamSpec,
    *,
    negated: bool,
    loose: bool = False,
    turned: bool = False,
    ood_classes: int | None = None,
) -> SwitchingStream:
    defaults: dict[str, object] = {"p": 0.9, "labels": "shuffled"}
    if loose:
        defaults["noise"] = 0.7
    options = parse_options(name, spec, defaults)
    pool = omniglot_switching_pool(resolve_data_root(spec.data_root), PRETRAINING, seed=spec.seed)
    kept = [d for d in pool if d.kind is DistributionKind.PRETRAIN or d.name == HELD_OUT]
    latin = next(d for d in kept if d.name == HELD_OUT)
    if turned:
        kept.append(_turned(latin))
    if negated:
        kept.append(_negated(_first_classes(latin, ood_classes)))
    if loose:
        # Only the new alphabet is loosened; its negated form stays the clean one's.
        noise = probability(name, options, "noise")  # a standard deviation in [0, 1]
        kept = [_noisy(d, noise, spec.seed) if d.name == HELD_OUT else d for d in kept]
    return build_switching_stream(
        name,
        kept,
        n_steps=spec.n_tasks or DEFAULT_STEPS,
        seed=spec.seed,
        p_stay=probability(name, options, "p"),
        labels=choice(name, options, "labels", ("shuffled", "fixed")),
    )


def _first_classes(distribution: Distribution, count: int | None) -> Distribution:
    """The distribution's first ``count`` classes (all of them when ``None``)."""
    if count is None:
        return distribution
    return Distribution(
        distribution.name, distribution.kind, distribution.train[:count], distribution.test[:count]
    )


def _negated(distribution: Distribution) -> Distribution:
    """The distribution with every drawing's intensities negated, as out-of-distribution."""
    name = f"{distribution.name}-negated"
    return _mapped(distribution, name, DistributionKind.OOD, lambda x: 1 - x)


def _turned(distribution: Distribution) -> Distribution:
    """The distribution's drawings turned a quarter turn anticlockwise, as another alphabet."""
    return _mapped(
        distribution, TURNED, DistributionKind.NEW, lambda x: torch.rot90(x, 1, dims=(-2, -1))
    )


def _noisy(distribution: Distribution, std: float, seed: int) -> Distribution:
    """The distribution with fixed Gaussian pixel noise on every drawing, clipped to [0, 1]."""
    generator = torch.Generator().manual_seed(seed)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return (x + std * torch.randn(x.shape, generator=generator)).clamp(0, 1)

    return _mapped(distribution, distribution.name, distribution.kind, noisy)


def _mapped(
    distribution: Distribution,
    name: str,
    kind: DistributionKind,
    each: Callable[[torch.Tensor], torch.Tensor],
) -> Distribution:
    """``each`` applied to every drawing, the training ones first, as a distribution ``name``."""
    return Distribution(
        name,
        kind,
        tuple(each(x) for x in distribution.train),
        tuple(each(x) for x in distribution.test),
    )
