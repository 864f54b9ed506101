"""The agent's maths as pure functions over explicit parameter dicts.

Nothing here mutates its arguments: every function takes tensors (a model is used only as a
stateless function through ``torch.func.functional_call``) and returns new ones. The stateful
``LifelongAgent`` calls these in order.

Parameter dicts map the model's ``named_parameters()`` names to tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.functional import cross_entropy, mse_loss

from lifelong.models import MLP

Params = dict[str, torch.Tensor]


class MetaStep(NamedTuple):
    """The result of one look-ahead meta step.

    Attributes:
        params: Updated weights (detached).
        inner_loss: Loss on the incoming batch at the old weights.
        meta_loss: Loss on incoming plus replayed samples at the look-ahead weights.
        logits: Logits of the incoming batch at the old weights (detached), for metrics.
        lr_grads: With learned look-ahead learning rates, the meta-loss's gradient with
            respect to each of them (same keys and shapes); ``None`` otherwise.
    """

    params: Params
    inner_loss: torch.Tensor
    meta_loss: torch.Tensor
    logits: torch.Tensor
    lr_grads: Params | None = None


def forward(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    task_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits of ``model`` evaluated at ``params`` (buffers come from the model).

    Args:
        model: Used as a stateless function; its own parameters are ignored.
        params: A full parameter dict of ``model``.
        x: A batch of inputs.
        task_labels: Passed as the second argument when given (multi-head models).

    Returns:
        The logits.
    """
    if task_labels is None and type(model) is MLP:
        return model.forward_with(params, x)
    args = (x,) if task_labels is None else (x, task_labels)
    return functional_call(model, dict(params), args)


class LogitTargets(NamedTuple):
    """Stored logits that the last rows of a batch are pulled towards (dark-knowledge replay).

    Attributes:
        logits: ``(m, n_classes)`` logits the model gave the samples when they were stored.
        weight: Multiplier of the mean squared error against them.
    """

    logits: torch.Tensor
    weight: float


def loss_and_grads(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    task_labels: torch.Tensor | None = None,
    targets: LogitTargets | None = None,
) -> tuple[torch.Tensor, Params, torch.Tensor]:
    """Cross-entropy of ``model`` at ``params`` on ``(x, y)`` and its gradient.

    With ``targets``, the loss adds ``weight`` times the mean squared error between the
    logits of the last ``len(targets.logits)`` rows and the stored logits.

    Returns:
        ``(loss, grads, logits)``, all detached; ``grads`` has the keys of ``params``.
    """
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    logits = forward(model, leaves, x, task_labels)
    loss = cross_entropy(logits, y)
    if targets is not None and len(targets.logits):
        replayed = logits[len(logits) - len(targets.logits) :]
        loss = loss + targets.weight * mse_loss(replayed, targets.logits)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    out = {
        k: torch.zeros_like(v) if g is None else g
        for (k, v), g in zip(leaves.items(), grads, strict=True)
    }
    return loss.detach(), out, logits.detach()


def inner_step(
    params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor], lr: float
) -> Params:
    """One SGD step, θ' = θ − lr · g, first-order: the result is detached from θ's graph."""
    names = list(params)
    # One fused call for all tensors: on the small networks of online continual learning,
    # a separate multiply and subtract per tensor costs more than the arithmetic itself.
    with torch.no_grad():
        stepped = torch._foreach_add(
            [params[k] for k in names], [grads[k] for k in names], alpha=-lr
        )
    return dict(zip(names, stepped, strict=True))


def unit_lrs(rates: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]) -> Params:
    """Per-output-unit learning rates broadcast to their parameters' shapes.

    ``rates[k]`` has one entry per output unit of parameter ``k`` (its first dimension): a
    weight matrix's row and the matching bias entry of a layer each have their own rate.
    """
    return {
        k: rates[k].reshape(-1, *([1] * (params[k].dim() - 1))).expand_as(params[k])
        for k in params
    }


def lookahead_lr_grads(
    g_meta: Mapping[str, torch.Tensor], g_in: Mapping[str, torch.Tensor]
) -> Params:
    """The meta-loss's gradient with respect to per-unit look-ahead learning rates.

    With θ' = θ − α ⊙ g_in and g_in independent of α, ∂L_meta(θ')/∂α = −g_meta(θ') ⊙ g_in,
    summed over each unit's parameters (La-MAML's learning-rate update, exact for one step).
    """
    return {k: -(g_meta[k] * g_in[k]).reshape(g_in[k].shape[0], -1).sum(1) for k in g_in}


def meta_step(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    incoming: tuple[torch.Tensor, torch.Tensor],
    combined: tuple[torch.Tensor, torch.Tensor],
    *,
    lr: float,
    lookahead: bool = True,
    commit_lookahead: bool = True,
    targets: LogitTargets | None = None,
    lookahead_lrs: Mapping[str, torch.Tensor] | None = None,
) -> MetaStep:
    """One first-order look-ahead step on an incoming batch and its replay-augmented batch.

    1. g_in = ∇L_in(θ) on the incoming batch; look ahead θ' = θ − lr · g_in.
    2. g_meta = ∇L_meta(θ') on incoming + replayed samples (+ the stored-logit loss).
    3. θ ← θ₀ − lr · g_meta, where θ₀ is θ' (``commit_lookahead``, the default) or θ
       (La-MAML's first-order update with fixed learning rates).

    Without ``lookahead`` (the ablation) step 1 is skipped: θ' = θ, so the step is one SGD
    step on the combined batch, as experience replay takes.

    Why commit the look-ahead: with one look-ahead step per batch, θ' often fits the incoming
    batch already, so g_meta is near zero and θ, updated from θ alone, barely moves (measured
    on split-digits: the first task stayed at chance). Starting the update from θ' keeps the
    fast step and adds the replay-aware correction.

    Args:
        model: The network, used as a stateless function.
        params: Current weights θ.
        incoming: The incoming batch ``(x, y)``.
        combined: Incoming plus replayed samples ``(x, y)``; may equal ``incoming``.
        lr: Learning rate of both steps (the run's ``lr``).
        lookahead: Take the look-ahead step on the incoming batch first.
        commit_lookahead: Update from θ' rather than θ (see above).
        targets: Stored logits of the replayed rows (the last rows of ``combined``), added
            to the meta-loss as a mean squared error.
        lookahead_lrs: Per-output-unit learning rates of the look-ahead step (``unit_lrs``)
            instead of ``lr``; the step then returns their meta-gradients in ``lr_grads``.

    Returns:
        A ``MetaStep`` with the new weights.

    References:
        Gupta, Yadav & Paull, "La-MAML: Look-ahead Meta Learning for Continual Learning",
        NeurIPS 2020.
    """
    if not lookahead:
        meta_loss, g_meta, logits = loss_and_grads(model, params, *combined, targets=targets)
        incoming_logits = logits[: len(incoming[1])]
        inner_loss = cross_entropy(incoming_logits, incoming[1])
        return MetaStep(inner_step(params, g_meta, lr), inner_loss, meta_loss, incoming_logits)
    inner_loss, g_in, logits = loss_and_grads(model, params, *incoming)
    if lookahead_lrs is None:
        ahead = inner_step(params, g_in, lr)
    else:
        rates = unit_lrs(lookahead_lrs, params)
        with torch.no_grad():
            ahead = {k: params[k] - rates[k] * g_in[k] for k in params}
    meta_loss, g_meta, _ = loss_and_grads(model, ahead, *combined, targets=targets)
    start = ahead if commit_lookahead else params
    lr_grads = None if lookahead_lrs is None else lookahead_lr_grads(g_meta, g_in)
    return MetaStep(inner_step(start, g_meta, lr), inner_loss, meta_loss, logits, lr_grads)
