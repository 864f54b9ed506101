"""Fast weights over a frozen encoder, and the meta-parameters learned through their adaptation.

The maths of the ``lifelong`` agent on task-switching streams, as pure functions over
explicit tensors. A task's fast weights are a linear head over meta-learned features:

- features ``z = P f + beta``: an affine map of the frozen encoder's output ``f`` (a learned
  projection ``P``, started at the identity), the slow representation learned across the
  whole stream;
- the head starts from the task's class prototypes ``c`` in that space, ``W = 2c`` and
  ``b = -|c|^2``, which gives exactly ProtoNet's logits ``-|z - c|^2`` up to a term constant
  per sample (Proto-MAML);
- it then takes a few SGD steps on the task's labelled samples with meta-learned per-feature
  learning rates (La-MAML), and logits are scaled by a meta-learned temperature.

``meta_gradients`` differentiates a query loss through those inner steps (second order: the
head is small) with respect to every meta-parameter, so the initialisation's features, the
learning rates and the temperature are all learned by gradient through the adaptation.

A task may also own offsets of the encoder's last block's parameters (``split_encoder``,
``BlockOffsets``): the raw features of its samples are then the block's output under them,
and they are learned as the feature map is, by the query loss's gradient through the head's
adaptation (``block_meta_gradients``), one clipped step per labelled batch. The agent
meta-learns their starting point for new tasks by Reptile (``moved_towards``).

References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning", ICML 2017.
    Triantafillou et al., "Meta-Dataset" (Proto-MAML), ICLR 2020.
    Gupta, Yadav & Paull, "La-MAML: Look-ahead Meta Learning for Continual Learning",
    NeurIPS 2020.
    Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms" (Reptile), 2018.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.functional import cross_entropy

__all__ = [
    "BlockOffsets",
    "FastWeights",
    "MetaParameters",
    "adapt_head",
    "block_features",
    "block_meta_gradients",
    "class_means",
    "clipped_step",
    "head_logits",
    "initial_head",
    "meta_gradients",
    "moved_towards",
    "split_encoder",
    "transform",
    "zero_offsets",
]

BlockOffsets = dict[str, torch.Tensor]
"""Offsets of the last block's parameters, by the names ``block.named_parameters`` gives."""


class MetaParameters(NamedTuple):
    """The quantities learned across tasks, each a tensor the meta-gradient reaches.

    Attributes:
        projection: ``(d, d)`` linear map of the slow features.
        beta: ``(d,)`` their shift.
        log_lr: ``(d,)`` log of the inner learning rate of each feature's head weights.
        log_lr_bias: ``(1,)`` log of the inner learning rate of the head's biases.
        log_temperature: ``(1,)`` log of the logits' scale.
    """

    projection: torch.Tensor
    beta: torch.Tensor
    log_lr: torch.Tensor
    log_lr_bias: torch.Tensor
    log_temperature: torch.Tensor

    @classmethod
    def initial(cls, dim: int, inner_lr: float) -> MetaParameters:
        """The identity feature map, ``inner_lr`` everywhere, temperature 1."""
        log_lr = torch.full((dim,), float(torch.tensor(inner_lr).log()))
        return cls(
            projection=torch.eye(dim),
            beta=torch.zeros(dim),
            log_lr=log_lr,
            log_lr_bias=log_lr[:1].clone(),
            log_temperature=torch.zeros(1),
        )


class FastWeights(NamedTuple):
    """A task's linear head: ``weight`` ``(ways, d)`` and ``bias`` ``(ways,)``."""

    weight: torch.Tensor
    bias: torch.Tensor


def transform(features: torch.Tensor, meta: MetaParameters) -> torch.Tensor:
    """The slow features ``P f + beta`` of encoder outputs ``(n, d)``."""
    return features @ meta.projection.T + meta.beta


def initial_head(prototypes: torch.Tensor, meta: MetaParameters) -> FastWeights:
    """The head whose logits are ProtoNet's for prototypes ``(ways, d)`` of raw features.

    The feature map is affine, so the prototype of the mapped features is the mapped
    prototype: raw prototypes stay valid while the meta-parameters move.
    """
    centres = transform(prototypes, meta)
    return FastWeights(weight=2 * centres, bias=-(centres * centres).sum(1))


def head_logits(z: torch.Tensor, head: FastWeights, meta: MetaParameters) -> torch.Tensor:
    """Temperature-scaled logits ``(n, ways)`` of slow features ``z``."""
    return meta.log_temperature.exp() * (z @ head.weight.T + head.bias)


def adapt_head(
    head: FastWeights,
    z: torch.Tensor,
    y: torch.Tensor,
    meta: MetaParameters,
    steps: int,
    *,
    create_graph: bool = False,
) -> FastWeights:
    """``steps`` SGD steps of cross-entropy on ``(z, y)`` with the meta-learned learning rates.

    Args:
        head: Where adaptation starts.
        z: ``(n, d)`` slow features of the labelled samples.
        y: ``(n,)`` labels in ``0..ways-1``.
        meta: Learning rates and temperature.
        steps: Inner steps (0 returns ``head``).
        create_graph: Keep the graph through the steps, for ``meta_gradients``.

    Returns:
        The adapted head (detached unless ``create_graph``).
    """
    weight, bias = head
    with torch.enable_grad():
        if not create_graph:
            weight = weight.detach().requires_grad_(True)
            bias = bias.detach().requires_grad_(True)
            z, meta = z.detach(), MetaParameters(*(t.detach() for t in meta))
        for _ in range(steps):
            loss = cross_entropy(head_logits(z, FastWeights(weight, bias), meta), y)
            grad_weight, grad_bias = torch.autograd.grad(
                loss, (weight, bias), create_graph=create_graph
            )
            weight = weight - meta.log_lr.exp() * grad_weight
            bias = bias - meta.log_lr_bias.exp() * grad_bias
    if create_graph:
        return FastWeights(weight, bias)
    return FastWeights(weight.detach(), bias.detach())


def meta_gradients(
    meta: MetaParameters,
    prototypes: torch.Tensor,
    support: tuple[torch.Tensor, torch.Tensor],
    query: tuple[torch.Tensor, torch.Tensor],
    steps: int,
) -> tuple[float, MetaParameters]:
    """The query loss after adapting on the support, and its gradient for each meta-parameter.

    Args:
        meta: The current meta-parameters (not modified).
        prototypes: ``(ways, d)`` raw-feature prototypes the head starts from.
        support: Raw features ``(n, d)`` and labels of the samples adapted on.
        query: Raw features and labels of samples the adapted head is judged on.
        steps: Inner steps.

    Returns:
        The query loss and one gradient per field of ``MetaParameters``.
    """
    with torch.enable_grad():
        leaves = MetaParameters(*(t.detach().requires_grad_(True) for t in meta))
        loss = _query_loss(leaves, prototypes, support, query, steps)
        grads = torch.autograd.grad(loss, tuple(leaves))
    return float(loss.detach()), MetaParameters(*grads)


def _query_loss(
    meta: MetaParameters,
    prototypes: torch.Tensor,
    support: tuple[torch.Tensor, torch.Tensor],
    query: tuple[torch.Tensor, torch.Tensor],
    steps: int,
) -> torch.Tensor:
    """Cross-entropy on the query of the head adapted on the support, graph kept."""
    head = initial_head(prototypes, meta)
    support_x, support_y = support
    z = transform(support_x, meta)
    adapted = adapt_head(head, z, support_y, meta, steps, create_graph=True)
    query_x, query_y = query
    return cross_entropy(head_logits(transform(query_x, meta), adapted, meta), query_y)


def split_encoder(encoder: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """The encoder as ``(trunk, block)``: the block from its last layer with weights on.

    ``block(trunk(x))`` is ``encoder(x)``. For the four-block convolutional encoder the block
    is the last convolution, batch norm, ReLU, pooling and flattening.

    Returns:
        ``None`` when the encoder is not an ``nn.Sequential`` of layers or has no
        convolution or linear layer, so there is no block to adapt.
    """
    if not isinstance(encoder, nn.Sequential):
        return None
    layers = list(encoder)
    weighted = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d | nn.Linear)]
    if not weighted:
        return None
    return nn.Sequential(*layers[: weighted[-1]]), nn.Sequential(*layers[weighted[-1] :])


def zero_offsets(block: nn.Module) -> BlockOffsets:
    """Offsets that leave every parameter of ``block`` as it is."""
    return {name: torch.zeros_like(p) for name, p in block.named_parameters()}


def block_features(block: nn.Module, hidden: torch.Tensor, offsets: BlockOffsets) -> torch.Tensor:
    """The block's output on ``hidden`` with its parameters moved by ``offsets``."""
    moved = {name: p + offsets[name] for name, p in block.named_parameters()}
    return functional_call(block, moved, (hidden,))


def class_means(features: torch.Tensor, y: torch.Tensor, ways: int) -> torch.Tensor:
    """``(ways, d)`` mean feature of each label; a label with no sample sits at the origin."""
    sums = torch.zeros(ways, features.shape[1], dtype=features.dtype).index_add_(0, y, features)
    counts = torch.bincount(y, minlength=ways).to(sums)
    return sums / counts.clamp(min=1).unsqueeze(1)


def block_meta_gradients(
    meta: MetaParameters,
    block: nn.Module,
    offsets: BlockOffsets,
    support: tuple[torch.Tensor, torch.Tensor],
    query: tuple[torch.Tensor, torch.Tensor],
    ways: int,
    steps: int,
) -> tuple[float, MetaParameters, BlockOffsets]:
    """``meta_gradients`` when raw features are the block's output under ``offsets``.

    The head starts from the support's prototypes under the offsets, so the gradient
    reaches the offsets through the prototypes, the inner steps and the query's features.

    Args:
        meta: The current meta-parameters (not modified).
        block: The encoder's last block (not modified).
        offsets: The task's block offsets (not modified).
        support: The trunk's output ``(n, ...)`` and labels of the samples adapted on.
        query: The trunk's output and labels of the samples the adapted head is judged on.
        ways: Labels of the task.
        steps: Inner steps.

    Returns:
        The query loss, one gradient per meta-parameter and one per offset.
    """
    with torch.enable_grad():
        leaves = MetaParameters(*(t.detach().requires_grad_(True) for t in meta))
        moved = {name: t.detach().requires_grad_(True) for name, t in offsets.items()}
        support_f = block_features(block, support[0], moved)
        prototypes = class_means(support_f, support[1], ways)
        query_f = block_features(block, query[0], moved)
        loss = _query_loss(leaves, prototypes, (support_f, support[1]), (query_f, query[1]), steps)
        grads = torch.autograd.grad(loss, (*leaves, *moved.values()))
    count = len(leaves)
    return (
        float(loss.detach()),
        MetaParameters(*grads[:count]),
        dict(zip(moved, grads[count:], strict=True)),
    )


def clipped_step(offsets: BlockOffsets, grads: BlockOffsets, length: float) -> BlockOffsets:
    """A gradient step on the offsets, ``length`` times the gradient clipped to norm 1.

    Far from the pre-training images (out-of-distribution tasks) the block's gradient can
    be large: a first design's unclipped steps, carried batch after batch, diverged there.
    """
    norm = float(torch.cat([g.flatten() for g in grads.values()]).norm())
    scale = length / max(1.0, norm)
    return {name: t - scale * grads[name] for name, t in offsets.items()}


def moved_towards(start: BlockOffsets, target: BlockOffsets, share: float) -> BlockOffsets:
    """``start`` moved ``share`` of the way to ``target``, offset by offset.

    Reptile's update of a starting point towards a task's adapted offsets, and the blend of
    that starting point with a retrieved task's offsets that a new task starts from.
    """
    return {name: t + share * (target[name] - t) for name, t in start.items()}
