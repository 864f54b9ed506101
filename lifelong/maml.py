"""MAML and ANIL: inner-loop adaptation as pure functions, and their cached pre-training.

A network is a ``conv4`` encoder (batch norm on batch statistics, as MAML trains it) and a
linear head. ``Weights`` holds both as explicit tensors, so that adaptation is a function
over them (``torch.func.functional_call``) and never touches a module's parameters:

- ``adapt`` takes SGD steps on a labelled batch, either on every weight (MAML) or on the
  head alone over fixed features (ANIL);
- the head always starts at zero (the "zeroing trick" of Kao et al. 2022): an N-way task of
  any N starts from the same function, which suits streams whose labels are shuffled, and
  what is meta-learned is the encoder's initialisation.

``pretrain_maml`` meta-trains that initialisation on the pre-training distributions only:
first-order MAML (Finn et al. 2017, its first-order form) when every weight adapts, and
ANIL's exact second-order gradient through the head's steps when only the head does (cheap,
the head being small). Episodes are those of ProtoNet pre-training (every 90-degree
rotation of a character a class of its own). The result is cached by (settings, seed, data)
and written atomically, like ProtoNet's encoder.

References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
    Networks", ICML 2017.
    Raghu et al., "Rapid Learning or Feature Reuse? Towards Understanding the
    Effectiveness of MAML" (ANIL), ICLR 2020.
    Kao, Chiu & Chen, "MAML is a Noisy Contrastive Learner in Classification", ICLR 2022.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.functional import cross_entropy
from tqdm import tqdm

from lifelong.pretraining import (
    check_episode_fits,
    conv4,
    draw_episode,
    encoder_cache_path,
    rotated_classes,
    write_cached,
)
from streams.switching import Distribution

__all__ = [
    "MAMLSettings",
    "Weights",
    "adapt",
    "adapted_fewshot_accuracy",
    "initial_weights",
    "logits_of",
    "meta_gradient",
    "pretrain_maml",
]

Inner = Literal["all", "head"]


class Weights(NamedTuple):
    """A network's weights as explicit tensors.

    Attributes:
        body: The encoder's parameters by name (as ``named_parameters`` gives them).
        head_weight: ``(ways, features)`` weights of the linear head.
        head_bias: ``(ways,)`` its biases.
    """

    body: dict[str, torch.Tensor]
    head_weight: torch.Tensor
    head_bias: torch.Tensor

    def detached(self) -> Weights:
        """A copy cut from any graph, every tensor a leaf that requires a gradient."""
        return Weights(
            {name: _leaf(t) for name, t in self.body.items()},
            _leaf(self.head_weight),
            _leaf(self.head_bias),
        )


@dataclass(frozen=True)
class MAMLSettings:
    """MAML or ANIL pre-training and adaptation (``of`` gives each method's defaults).

    Steps and learning rates were chosen on the pre-training alphabets' test drawings, never
    on the stream's (``benchmarks/results/maml_settings/``).

    Attributes:
        inner: ``all`` (MAML: every weight adapts, first-order meta-gradient) or ``head``
            (ANIL: the head adapts over fixed features, exact meta-gradient).
        episodes: Training tasks (ProtoNet pre-training's 3,000 episodes by default).
        meta_batch: Tasks per meta-update (4).
        ways: Classes per training task (5, the stream's).
        shots: Support drawings per class (1).
        queries: Query drawings per class (5).
        inner_steps: SGD steps of the inner loop in training (5, Finn et al.'s 20-way value).
        test_steps: SGD steps when adapting after training (10).
        inner_lr: Inner SGD learning rate (0.1 for MAML, Finn et al.'s 20-way value; 0.4
            for ANIL, their 5-way value).
        meta_lr: Adam's learning rate for the meta-update (1e-3, Finn et al.'s).
        width: Channels of every convolutional block (64).
    """

    inner: Inner = "all"
    episodes: int = 3000
    meta_batch: int = 4
    ways: int = 5
    shots: int = 1
    queries: int = 5
    inner_steps: int = 5
    test_steps: int = 10
    inner_lr: float = 0.1
    meta_lr: float = 1e-3
    width: int = 64

    @classmethod
    def of(cls, method: str, **changes: Any) -> MAMLSettings:
        """The settings ``method`` (``maml`` or ``anil``) pre-trains and adapts with.

        Raises:
            ValueError: If ``method`` is neither.
        """
        if method not in _METHOD_DEFAULTS:
            raise ValueError(f"method is {method!r}; use 'maml' or 'anil'")
        return cls(**{**_METHOD_DEFAULTS[method], **changes})

    def __post_init__(self) -> None:
        if self.inner not in ("all", "head"):
            raise ValueError(f"MAMLSettings.inner is {self.inner!r}; use 'all' or 'head'")
        for name in (
            "episodes", "meta_batch", "ways", "shots", "queries", "inner_steps", "test_steps",
            "width",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MAMLSettings.{name} is {value!r}; it must be >= 1")
        for name in ("inner_lr", "meta_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"MAMLSettings.{name} is {getattr(self, name)!r}; it must be > 0")

    @property
    def method(self) -> str:
        """``maml`` or ``anil``: the name of the method these settings train."""
        return "maml" if self.inner == "all" else "anil"


_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "maml": {"inner": "all"},
    "anil": {"inner": "head", "inner_lr": 0.4},
}


def _leaf(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().clone().requires_grad_(True)


def initial_weights(encoder: nn.Module, ways: int, features: int) -> Weights:
    """The encoder's live parameters (a meta-gradient reaches them) and a zero ``ways`` head."""
    like = next(encoder.parameters())
    return Weights(
        dict(encoder.named_parameters()),
        torch.zeros(ways, features, dtype=like.dtype, device=like.device, requires_grad=True),
        torch.zeros(ways, dtype=like.dtype, device=like.device, requires_grad=True),
    )


def logits_of(encoder: nn.Module, weights: Weights, x: torch.Tensor) -> torch.Tensor:
    """The network's logits on ``x`` with ``weights`` in place of the encoder's own."""
    features = functional_call(encoder, weights.body, (x,))
    return features @ weights.head_weight.T + weights.head_bias


def adapt(
    encoder: nn.Module,
    start: Weights,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float,
    inner: Inner,
    create_graph: bool = False,
) -> Weights:
    """``steps`` SGD steps of cross-entropy on ``(x, y)`` from ``start``.

    Args:
        encoder: The module whose forward pass the body weights run through.
        start: The weights to start from; with ``create_graph`` the result is a function
            of them (the meta-gradient), otherwise each step's result is a fresh leaf.
        x: Inputs.
        y: Their labels, in ``[0, ways)``.
        steps: SGD steps.
        lr: Their learning rate.
        inner: ``all`` adapts every weight; ``head`` the head only, on features computed
            once (the body is returned as given).
        create_graph: Keep the graph of the steps, for a gradient through them.

    Returns:
        The adapted weights.
    """
    with torch.enable_grad():
        if inner == "head":
            features = functional_call(encoder, start.body, (x,))
            if not create_graph:
                features = features.detach()
            weight, bias = start.head_weight, start.head_bias
            for _ in range(steps):
                loss = cross_entropy(features @ weight.T + bias, y)
                grads = torch.autograd.grad(loss, (weight, bias), create_graph=create_graph)
                weight = _step(weight, grads[0], lr, create_graph)
                bias = _step(bias, grads[1], lr, create_graph)
            return Weights(start.body, weight, bias)
        weights = start
        for _ in range(steps):
            tensors = [*weights.body.values(), weights.head_weight, weights.head_bias]
            loss = cross_entropy(logits_of(encoder, weights, x), y)
            grads = torch.autograd.grad(loss, tensors, create_graph=create_graph)
            stepped = [_step(t, g, lr, create_graph) for t, g in zip(tensors, grads, strict=True)]
            weights = Weights(dict(zip(weights.body, stepped[:-2], strict=True)), *stepped[-2:])
        return weights


def _step(tensor: torch.Tensor, grad: torch.Tensor, lr: float, keep: bool) -> torch.Tensor:
    stepped = tensor - lr * grad
    return stepped if keep else stepped.detach().requires_grad_(True)


def meta_gradient(
    encoder: nn.Module,
    episode: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    ways: int,
    features: int,
    *,
    steps: int,
    lr: float,
    inner: Inner,
    scale: float = 1.0,
) -> float:
    """Add ``scale`` times the meta-gradient of one episode to the encoder's ``.grad``.

    The query loss after adapting on the support, differentiated with respect to the
    encoder's initialisation: first-order when every weight adapts (the gradient at the
    adapted weights, Finn et al.'s approximation), exact through the head's steps when only
    the head adapts.

    Returns:
        The query loss after adaptation.
    """
    support_x, support_y, query_x, query_y = episode
    if inner == "head":
        adapted = adapt(
            encoder, initial_weights(encoder, ways, features), support_x, support_y,
            steps=steps, lr=lr, inner="head", create_graph=True,
        )
        loss = cross_entropy(logits_of(encoder, adapted, query_x), query_y)
        (scale * loss).backward()
        return float(loss.detach())
    start = initial_weights(encoder, ways, features).detached()
    adapted = adapt(encoder, start, support_x, support_y, steps=steps, lr=lr, inner="all")
    loss = cross_entropy(logits_of(encoder, adapted, query_x), query_y)
    grads = torch.autograd.grad(loss, list(adapted.body.values()))
    for parameter, grad in zip(encoder.parameters(), grads, strict=True):
        contribution = scale * grad
        parameter.grad = contribution if parameter.grad is None else parameter.grad + contribution
    return float(loss.detach())


def pretrain_maml(
    distributions: Sequence[Distribution],
    settings: MAMLSettings,
    seed: int,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> nn.Sequential:
    """Meta-train (or load from the cache) a MAML or ANIL initialisation on ``distributions``.

    Args:
        distributions: The pre-training distributions only.
        settings: The recipe.
        seed: Fixes the initialisation and the episodes.
        cache_dir: Where trained encoders are kept; ``None`` trains without caching.
        progress: Show a progress bar on stderr.

    Returns:
        The meta-learned encoder (``conv4`` on batch statistics); its head starts at zero.

    Raises:
        ValueError: If the distributions cannot fill an episode of ``settings``.
    """
    classes = rotated_classes(distributions)
    check_episode_fits(classes, settings)
    path = encoder_cache_path(cache_dir, distributions, settings, seed, settings.method)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = conv4(classes[0].shape[1], settings.width, batch_statistics=True)
    if path is not None and path.is_file():
        encoder.load_state_dict(torch.load(path, weights_only=True))
        return encoder.eval()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=settings.meta_lr)
    encoder.train()
    updates = max(settings.episodes // settings.meta_batch, 1)
    for _ in tqdm(range(updates), desc=f"{settings.method} pre-training", disable=not progress):
        optimizer.zero_grad(set_to_none=True)
        for _ in range(settings.meta_batch):
            meta_gradient(
                encoder,
                draw_episode(classes, settings, generator),
                settings.ways,
                settings.width,
                steps=settings.inner_steps,
                lr=settings.inner_lr,
                inner=settings.inner,
                scale=1.0 / settings.meta_batch,
            )
        optimizer.step()
    encoder.eval()
    if path is not None:
        write_cached(path, encoder)
    return encoder


def adapted_fewshot_accuracy(
    encoder: nn.Module,
    distributions: Sequence[Distribution],
    ways: int,
    settings: MAMLSettings,
    *,
    episodes: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """N-way 1-shot accuracy after ``settings.test_steps`` steps from the initialisation.

    Each episode draws ``ways`` classes from the test drawings of ``distributions``, one
    drawing of each as support and the others as queries (as
    ``lifelong.pretraining.fewshot_accuracy`` does for ProtoNet).

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
    for _ in range(episodes):
        chosen = rng.choice(len(classes), size=ways, replace=False)
        support = torch.stack([classes[c][0] for c in chosen])
        queries = [classes[c][1:] for c in chosen]
        query_y = torch.cat([torch.full((len(q),), i) for i, q in enumerate(queries)])
        adapted = adapt(
            encoder,
            initial_weights(encoder, ways, settings.width).detached(),
            support,
            torch.arange(ways),
            steps=settings.test_steps,
            lr=settings.inner_lr,
            inner=settings.inner,
        )
        with torch.no_grad():
            logits = logits_of(encoder, adapted, torch.cat(queries))
        accuracies.append(float((logits.argmax(1) == query_y).double().mean()))
    values = np.array(accuracies)
    return float(values.mean()), float(1.96 * values.std(ddof=1) / np.sqrt(len(values)))
