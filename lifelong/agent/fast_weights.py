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

References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning", ICML 2017.
    Triantafillou et al., "Meta-Dataset" (Proto-MAML), ICLR 2020.
    Gupta, Yadav & Paull, "La-MAML: Look-ahead Meta Learning for Continual Learning",
    NeurIPS 2020.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn.functional import cross_entropy

__all__ = [
    "FastWeights",
    "MetaParameters",
    "adapt_head",
    "head_logits",
    "initial_head",
    "meta_gradients",
    "transform",
]


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
        head = initial_head(prototypes, leaves)
        support_x, support_y = support
        adapted = adapt_head(
            head, transform(support_x, leaves), support_y, leaves, steps, create_graph=True
        )
        query_x, query_y = query
        loss = cross_entropy(head_logits(transform(query_x, leaves), adapted, leaves), query_y)
        grads = torch.autograd.grad(loss, tuple(leaves))
    return float(loss.detach()), MetaParameters(*grads)
