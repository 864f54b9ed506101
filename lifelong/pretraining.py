"""Pre-training on a task-switching stream's pre-training distributions, cached on disk.

ProtoNet training (Snell et al. 2017) of a four-block convolutional encoder, as the
published Omniglot recipe has it: 28x28 inputs with strokes as 1, each character's four
90-degree rotations as classes of their own, 20-way 1-shot training episodes with 5 queries
per class, Adam at 1e-3 halved after each third of training. Only the stream's pre-training
distributions are read. The result is cached by (settings, seed, data), written atomically,
so every agent of a comparison that pre-trains this way starts from the same weights.

Its check (``fewshot_accuracy``): N-way 1-shot accuracy on the test drawings of classes
that pre-training never saw (the stream's new distributions).

References:
    Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.functional import cross_entropy
from tqdm import tqdm

from lifelong.io import atomic_write_bytes
from streams.switching import Distribution

__all__ = [
    "EpisodeShape",
    "ProtoNetSettings",
    "check_episode_fits",
    "conv4",
    "draw_episode",
    "encoder_cache_path",
    "fewshot_accuracy",
    "pretrain_protonet",
    "prototype_logits",
    "rotated_classes",
    "write_cached",
]


def conv4(
    in_channels: int = 1, width: int = 64, *, batch_statistics: bool = False
) -> nn.Sequential:
    """Four blocks of 3x3 convolution, batch norm, ReLU and 2x2 max-pooling, flattened.

    On 28x28 inputs the output has ``width`` features (28 -> 14 -> 7 -> 3 -> 1). With
    ``batch_statistics`` the batch norms keep no running statistics and always normalise
    with the batch's own, as MAML does at training and test time alike.

    References:
        Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (the
        encoder ProtoNet and MAML use on Omniglot).
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for _ in range(4):
        layers += [
            nn.Conv2d(channels, width, 3, padding=1),
            nn.BatchNorm2d(width, track_running_stats=not batch_statistics),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        channels = width
    return nn.Sequential(*layers, nn.Flatten())


def prototype_logits(
    support: torch.Tensor, support_labels: torch.Tensor, queries: torch.Tensor, ways: int
) -> torch.Tensor:
    """Negative squared distances of query embeddings to each label's mean support embedding.

    Args:
        support: ``(n_support, d)`` embeddings.
        support_labels: Their labels in ``[0, ways)``; every label present.
        queries: ``(n_query, d)`` embeddings.
        ways: Number of labels.

    Returns:
        ``(n_query, ways)`` logits.
    """
    one_hot = torch.nn.functional.one_hot(support_labels, ways).to(support.dtype)
    prototypes = one_hot.T @ support / one_hot.sum(0).unsqueeze(1)
    return -torch.cdist(queries, prototypes).pow(2)


@dataclass(frozen=True)
class ProtoNetSettings:
    """ProtoNet pre-training; defaults are the published Omniglot recipe.

    Attributes:
        episodes: Training episodes (3,000 run in about 4 minutes on 2 CPU threads).
        ways: Classes per training episode (20, as Snell et al. train on Omniglot).
        shots: Support drawings per class (1).
        queries: Query drawings per class (5).
        lr: Adam's learning rate, halved after each third of training.
        width: Channels of every convolutional block (64).
    """

    episodes: int = 3000
    ways: int = 20
    shots: int = 1
    queries: int = 5
    lr: float = 1e-3
    width: int = 64

    def __post_init__(self) -> None:
        for name in ("episodes", "ways", "shots", "queries", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ProtoNetSettings.{name} is {value!r}; it must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"ProtoNetSettings.lr is {self.lr!r}; it must be positive")


def rotated_classes(distributions: Sequence[Distribution]) -> list[torch.Tensor]:
    """Each class's training drawings, with every 90-degree rotation as a class of its own."""
    classes = []
    for distribution in distributions:
        for drawings in distribution.train:
            for quarter in range(4):
                classes.append(torch.rot90(drawings, quarter, dims=(-2, -1)))
    return classes


def pretrain_protonet(
    distributions: Sequence[Distribution],
    settings: ProtoNetSettings,
    seed: int,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> nn.Sequential:
    """Train (or load from the cache) a ProtoNet encoder on ``distributions``.

    Args:
        distributions: The pre-training distributions only.
        settings: The recipe.
        seed: Fixes the initialisation and the episodes.
        cache_dir: Where trained encoders are kept; ``None`` trains without caching.
        progress: Show a progress bar on stderr.

    Returns:
        The encoder, in eval mode.

    Raises:
        ValueError: If the distributions hold fewer classes than an episode needs, or a
            class fewer drawings than ``shots + queries``.
    """
    classes = rotated_classes(distributions)
    check_episode_fits(classes, settings)
    path = encoder_cache_path(cache_dir, distributions, settings, seed)
    # The caller's random state is left as it was: the seed fixes everything here.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = conv4(classes[0].shape[1], settings.width)
    if path is not None and path.is_file():
        encoder.load_state_dict(torch.load(path, weights_only=True))
        return encoder.eval()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=settings.lr)
    third = max(settings.episodes // 3, 1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=third, gamma=0.5)
    encoder.train()
    for _ in tqdm(range(settings.episodes), desc="protonet pre-training", disable=not progress):
        support, support_y, query, query_y = draw_episode(classes, settings, generator)
        embedded = encoder(torch.cat([support, query]))
        logits = prototype_logits(
            embedded[: len(support)], support_y, embedded[len(support) :], settings.ways
        )
        loss = cross_entropy(logits, query_y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    encoder.eval()
    if path is not None:
        write_cached(path, encoder)
    return encoder


def fewshot_accuracy(
    encoder: nn.Module,
    distributions: Sequence[Distribution],
    ways: int,
    *,
    episodes: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """N-way 1-shot accuracy of nearest-prototype classification on test drawings.

    Each episode draws ``ways`` classes from all of ``distributions``' classes, one test
    drawing of each as support and the others as queries.

    Returns:
        The mean accuracy over episodes and its 95% confidence half-width.

    Raises:
        ValueError: If there are fewer than ``ways`` classes or a class has fewer than two
            test drawings.
    """
    classes = [drawings for d in distributions for drawings in d.test]
    if len(classes) < ways or min(len(c) for c in classes) < 2:
        raise ValueError(
            f"{ways}-way 1-shot needs {ways} classes with 2+ test drawings each; "
            f"the distributions hold {len(classes)}"
        )
    rng = np.random.default_rng(seed)
    accuracies = []
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        for _ in range(episodes):
            chosen = rng.choice(len(classes), size=ways, replace=False)
            support = torch.stack([classes[c][0] for c in chosen])
            queries = [classes[c][1:] for c in chosen]
            query_y = torch.cat([torch.full((len(q),), i) for i, q in enumerate(queries)])
            logits = prototype_logits(
                encoder(support), torch.arange(ways), encoder(torch.cat(queries)), ways
            )
            accuracies.append(float((logits.argmax(1) == query_y).double().mean()))
    encoder.train(was_training)
    values = np.array(accuracies)
    return float(values.mean()), float(1.96 * values.std(ddof=1) / np.sqrt(len(values)))


class EpisodeShape(Protocol):
    """The shape of a training episode: classes, and support and query drawings per class."""

    @property
    def ways(self) -> int:
        """Classes per episode."""
        ...

    @property
    def shots(self) -> int:
        """Support drawings per class."""
        ...

    @property
    def queries(self) -> int:
        """Query drawings per class."""
        ...


def draw_episode(
    classes: Sequence[torch.Tensor], settings: EpisodeShape, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random episode: support inputs and labels, then query inputs and labels.

    Labels are ``0..ways-1`` in the order the classes were drawn.
    """
    chosen = torch.randperm(len(classes), generator=generator)[: settings.ways]
    support, query = [], []
    per_class = settings.shots + settings.queries
    for drawings in (classes[int(c)] for c in chosen):
        picks = torch.randperm(len(drawings), generator=generator)[:per_class]
        support.append(drawings[picks[: settings.shots]])
        query.append(drawings[picks[settings.shots :]])
    labels = torch.arange(settings.ways)
    return (
        torch.cat(support),
        labels.repeat_interleave(settings.shots),
        torch.cat(query),
        labels.repeat_interleave(settings.queries),
    )


def check_episode_fits(classes: Sequence[torch.Tensor], settings: EpisodeShape) -> None:
    """Raise ``ValueError`` if ``classes`` cannot fill an episode of ``settings``' shape."""
    if len(classes) < settings.ways:
        raise ValueError(
            f"pre-training has {len(classes)} classes (rotations included) but episodes are "
            f"{settings.ways}-way; pre-train on more distributions or lower ways"
        )
    fewest = min(len(c) for c in classes)
    if fewest < settings.shots + settings.queries:
        raise ValueError(
            f"a pre-training class has {fewest} drawings; an episode needs shots + queries = "
            f"{settings.shots + settings.queries}"
        )


def write_cached(path: Path, encoder: nn.Module) -> None:
    """Write a pre-trained encoder's weights to its cache file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(encoder.state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def encoder_cache_path(
    cache_dir: Path | None,
    distributions: Sequence[Distribution],
    settings: Any,
    seed: int,
    method: str = "protonet",
) -> Path | None:
    """Where a pre-training ``method`` keeps the encoder of these settings, seed and data.

    Args:
        cache_dir: The cache folder, or ``None`` for none.
        distributions: The pre-training distributions.
        settings: The method's settings dataclass.
        seed: The pre-training seed.
        method: The file name's prefix (``protonet``, ``maml``, ``anil``).

    Returns:
        The cache file's path, or ``None`` when there is no cache folder.
    """
    if cache_dir is None:
        return None
    # The data enter the key by content, so a changed copy of the data is never mistaken
    # for the one an encoder was trained on.
    digest = hashlib.sha256()
    digest.update(json.dumps({"settings": asdict(settings), "seed": seed}).encode())
    for distribution in distributions:
        digest.update(distribution.name.encode())
        for drawings in distribution.train:
            digest.update(drawings.numpy().tobytes())
    return Path(cache_dir) / f"{method}-{digest.hexdigest()[:16]}.pt"
