"""The agent's maths as pure functions over explicit parameter dicts.

Nothing here mutates its arguments: every function takes tensors (a model is used only as a
stateless function through ``torch.func.functional_call``) and returns new ones. The stateful
``LifelongAgent`` calls these in order.

Parameter dicts map the model's ``named_parameters()`` names to tensors. Learning rates are
kept as log learning rates, one tensor per parameter with the parameter's shape, so they stay
positive; the weights move by the learned rates clipped to ``[0, max_lr]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.functional import cross_entropy, mse_loss

Params = dict[str, torch.Tensor]


class MetaStep(NamedTuple):
    """The result of one look-ahead meta step.

    Attributes:
        params: Updated weights (detached).
        log_lrs: Updated log learning rates (detached).
        inner_loss: Loss on the incoming batch at the old weights.
        meta_loss: Loss on incoming plus replayed samples at the look-ahead weights.
        logits: Logits of the incoming batch at the old weights (detached), for metrics.
    """

    params: Params
    log_lrs: Params
    inner_loss: torch.Tensor
    meta_loss: torch.Tensor
    logits: torch.Tensor


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
    params: Mapping[str, torch.Tensor],
    grads: Mapping[str, torch.Tensor],
    log_lrs: Mapping[str, torch.Tensor],
) -> Params:
    """One look-ahead SGD step with per-parameter learning rates: θ' = θ − exp(a) ⊙ g."""
    return {k: params[k] - log_lrs[k].exp() * grads[k] for k in params}


def log_lr_meta_gradient(
    inner_grads: Mapping[str, torch.Tensor],
    meta_grads: Mapping[str, torch.Tensor],
    log_lrs: Mapping[str, torch.Tensor],
) -> Params:
    """Exact first-order gradient of the meta-loss with respect to the log learning rates.

    With θ' = θ − exp(a) ⊙ g_in, dL_meta(θ')/da = −∇L_meta(θ') ⊙ g_in ⊙ exp(a).
    """
    return {k: -meta_grads[k] * inner_grads[k] * log_lrs[k].exp() for k in log_lrs}


def meta_step(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    log_lrs: Mapping[str, torch.Tensor],
    incoming: tuple[torch.Tensor, torch.Tensor],
    combined: tuple[torch.Tensor, torch.Tensor],
    *,
    lr_meta_lr: float,
    max_lr: float,
    learn_lrs: bool = True,
    commit_lookahead: bool = True,
    targets: LogitTargets | None = None,
) -> MetaStep:
    """One first-order La-MAML step on an incoming batch and its replay-augmented batch.

    1. g_in = ∇L_in(θ) on the incoming batch; look ahead θ' = θ − exp(a) ⊙ g_in.
    2. g_meta = ∇L_meta(θ') on incoming + replayed samples.
    3. a ← a − lr_meta_lr · dL_meta/da (first order, see ``log_lr_meta_gradient``).
    4. θ ← θ₀ − clip(exp(a), 0, max_lr) ⊙ g_meta, where θ₀ is θ' (``commit_lookahead``,
       the default) or θ (La-MAML's own update).

    Why commit the look-ahead: with one look-ahead step per batch, θ' often fits the incoming
    batch already, so g_meta is near zero and θ, updated from θ alone, barely moves (measured
    on split-digits: the first task stayed at chance). Starting the update from θ' keeps the
    fast step and adds the replay-aware correction.

    Args:
        model: The network, used as a stateless function.
        params: Current weights θ.
        log_lrs: Current log learning rates a, shaped like ``params``.
        incoming: The incoming batch ``(x, y)``.
        combined: Incoming plus replayed samples ``(x, y)``; may equal ``incoming``.
        lr_meta_lr: Step size on the log learning rates.
        max_lr: Upper clip of the learning rates used for the weight update.
        learn_lrs: If false the learning rates stay fixed (an ablation).
        commit_lookahead: Update from θ' rather than θ (see above).
        targets: Stored logits of the replayed rows (the last rows of ``combined``), added
            to the meta-loss as a mean squared error.

    Returns:
        A ``MetaStep`` with the new weights and log learning rates.

    References:
        Gupta, Yadav & Paull, "La-MAML: Look-ahead Meta Learning for Continual Learning",
        NeurIPS 2020.
    """
    inner_loss, g_in, logits = loss_and_grads(model, params, *incoming)
    lookahead = inner_step(params, g_in, log_lrs)
    meta_loss, g_meta, _ = loss_and_grads(model, lookahead, *combined, targets=targets)
    if learn_lrs:
        grad_a = log_lr_meta_gradient(g_in, g_meta, log_lrs)
        new_log_lrs = {k: (log_lrs[k] - lr_meta_lr * grad_a[k]).detach() for k in log_lrs}
    else:
        new_log_lrs = {k: v.detach() for k, v in log_lrs.items()}
    start = lookahead if commit_lookahead else params
    new_params = {
        k: (start[k] - new_log_lrs[k].exp().clamp(max=max_lr) * g_meta[k]).detach() for k in params
    }
    return MetaStep(new_params, new_log_lrs, inner_loss, meta_loss, logits)


# --- Task embedding ----------------------------------------------------------------------


def make_probe(in_features: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random projection for task embeddings: ``(weight, bias)``.

    The weight is Gaussian scaled by ``1/sqrt(in_features)``; the bias is Gaussian. The same
    seed always gives the same probe, so embeddings stay comparable across a whole stream.
    """
    if in_features < 1 or dim < 1:
        raise ValueError(f"probe needs in_features >= 1 and dim >= 1, got {in_features} and {dim}")
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(in_features, dim, generator=generator) / in_features**0.5
    bias = torch.randn(dim, generator=generator) * 0.5
    return weight, bias


def embed_task(x: torch.Tensor, probe: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Embed a task from a sample of its inputs, without labels.

    Each input is flattened and standardised (zero mean, unit variance over its own
    features), projected by the fixed probe and passed through a ReLU; the embedding is the
    mean and standard deviation of these probe features over the samples, centred by their
    own mean so that cosine similarity compares the pattern, not the common offset.

    Args:
        x: ``(n, ...)`` inputs of one task, ``n >= 2``.
        probe: ``(weight, bias)`` from ``make_probe``.

    Returns:
        A ``(2 * probe_dim,)`` float32 embedding.
    """
    weight, bias = probe
    flat = x.reshape(len(x), -1).float()
    if flat.shape[1] != weight.shape[0]:
        raise ValueError(
            f"inputs have {flat.shape[1]} features but the probe expects {weight.shape[0]}; "
            "build the probe for this stream's input shape"
        )
    flat = (flat - flat.mean(dim=1, keepdim=True)) / (flat.std(dim=1, keepdim=True) + 1e-6)
    feats = torch.relu(flat @ weight + bias)
    stats = torch.cat([feats.mean(dim=0), feats.std(dim=0)])
    return stats - stats.mean()


# --- Retrieval weights --------------------------------------------------------------------


def softmax_weights(similarities: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax of similarities at ``temperature`` (lower is sharper)."""
    return torch.softmax(similarities.float() / temperature, dim=0)
