"""``maml`` and ``anil``: a meta-learned initialisation, adapted afresh to every labelled batch.

OSAKA's MAML and ANIL baselines: the initialisation meta-trained on the pre-training
distributions (``lifelong.maml``) is never updated during the stream; each labelled batch
is adapted to from it, and those fast weights predict the next batch. ``maml`` adapts every
weight, ``anil`` only the head over the initialisation's features.

References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning", ICML 2017.
    Raghu et al., "Rapid Learning or Feature Reuse?" (ANIL), ICLR 2020.
    Caccia et al., "Online Fast Adaptation and Knowledge Accumulation (OSAKA)", NeurIPS 2020.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lifelong.agents import AgentContext, register_agent
from lifelong.budget import tensor_bytes
from lifelong.maml import Inner, MAMLSettings, Weights, adapt, initial_weights, logits_of
from lifelong.methods.online import SWITCHING, Predictor, check_support, encoder_width

__all__ = [
    "MAMLLearner", "MAMLOptions", "load_weights", "predictor_of", "save_weights", "weight_tensors",
]


@dataclass(frozen=True)
class MAMLOptions:
    """How ``maml`` and ``anil`` adapt to a labelled batch.

    Attributes:
        steps: SGD steps from the initialisation; ``None``: pre-training's ``test_steps``.
        lr: Their learning rate; ``None``: pre-training's ``inner_lr``.
    """

    steps: int | None = None
    lr: float | None = None

    def __post_init__(self) -> None:
        steps = self.steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                                  or steps < 1):
            raise ValueError(f"steps is {steps!r}; it must be an integer >= 1")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr is {self.lr!r}; it must be positive")

    def resolved(self, method: str) -> tuple[int, float]:
        """Steps and learning rate, ``method``'s pre-training values where these are ``None``."""
        settings = MAMLSettings.of(method)
        return (
            settings.test_steps if self.steps is None else self.steps,
            settings.inner_lr if self.lr is None else self.lr,
        )


def save_weights(weights: Weights | None) -> dict[str, torch.Tensor]:
    """``weights`` as a flat dict of tensors for ``torch.save`` (empty for ``None``)."""
    if weights is None:
        return {}
    flat = {f"body.{name}": t.detach() for name, t in weights.body.items()}
    head = {"head_weight": weights.head_weight.detach(), "head_bias": weights.head_bias.detach()}
    return {**flat, **head}


def load_weights(flat: dict[str, torch.Tensor]) -> Weights | None:
    """The ``Weights`` that ``save_weights`` flattened (``None`` for an empty dict)."""
    if not flat:
        return None
    body = {name[len("body.") :]: t for name, t in flat.items() if name.startswith("body.")}
    return Weights(body, flat["head_weight"], flat["head_bias"]).detached()


class MAMLLearner:
    """Fast weights adapted from a fixed meta-learned initialisation on the last labelled batch.

    Args:
        encoder: The meta-learned encoder (the initialisation); never updated.
        ways: Labels per step.
        features: The encoder's output width.
        inner: ``all`` (MAML) or ``head`` (ANIL).
        steps: SGD steps of each adaptation.
        lr: Their learning rate.
    """

    def __init__(
        self, encoder: nn.Module, ways: int, features: int, inner: Inner, steps: int, lr: float
    ):
        self.encoder = encoder.eval()
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        self.ways = ways
        self.features = features
        self.inner = inner
        self.steps = steps
        self.lr = lr
        self.fast: Weights | None = None

    def start(self, ways: int) -> Weights:
        """The initialisation with a zero ``ways`` head, as fresh leaves."""
        return initial_weights(self.encoder, ways, self.features).detached()

    def adapted(self, start: Weights, x: torch.Tensor, y: torch.Tensor) -> Weights:
        """``steps`` SGD steps on ``(x, y)`` from ``start``."""
        return adapt(self.encoder, start, x, y, steps=self.steps, lr=self.lr, inner=self.inner)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the batch under the last fast weights (all zero before any label)."""
        with torch.no_grad():
            return logits_of(self.encoder, self.fast or self.start(self.ways), x)

    def observe(self, x: torch.Tensor, y: torch.Tensor, new_segment: bool | None) -> None:
        """Adapt from the initialisation to the labelled batch; boundaries are not used."""
        self.fast = self.adapted(self.start(self.ways), x, y)

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> Predictor:
        """A predictor adapted from the initialisation on the support; the learner is unchanged.

        Raises:
            ValueError: On a malformed support set (see ``check_support``).
        """
        ways = check_support(support_x, support_y)
        return predictor_of(self.encoder, self.adapted(self.start(ways), support_x, support_y))

    def memory_bytes_by_kind(self) -> dict[str, int]:
        """The fast weights kept beside the initialisation, as ``records``."""
        return {"records": 0 if self.fast is None else tensor_bytes(weight_tensors(self.fast))}

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write the fast weights to ``folder/state.pt`` (the encoder is saved by the caller)."""
        torch.save({"fast": save_weights(self.fast)}, folder / "state.pt")
        return {
            "ways": self.ways, "features": self.features, "inner": self.inner,
            "steps": self.steps, "lr": self.lr,
        }

    @classmethod
    def load_state(cls, folder: Path, encoder: nn.Module, info: dict[str, Any]) -> MAMLLearner:
        """The learner ``save_state`` wrote, around the loaded ``encoder``."""
        learner = cls(
            encoder, info["ways"], info["features"], info["inner"], info["steps"], info["lr"]
        )
        learner.fast = load_weights(torch.load(folder / "state.pt", weights_only=True)["fast"])
        return learner


def weight_tensors(weights: Weights) -> list[torch.Tensor]:
    """Every tensor of ``weights``: the body's, then the head's."""
    return [*weights.body.values(), weights.head_weight, weights.head_bias]


def predictor_of(encoder: nn.Module, weights: Weights) -> Predictor:
    """The logits of ``weights`` through ``encoder``, without gradients."""

    def predictor(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return logits_of(encoder, weights, x)

    return predictor


def _learner(context: AgentContext, method: str) -> MAMLLearner:
    features = encoder_width(context.model, context.stream.input_shape)
    inner: Inner = "all" if method == "maml" else "head"
    steps, lr = context.options.resolved(method)
    return MAMLLearner(context.model, context.stream.n_classes, features, inner, steps, lr)


@register_agent(
    "maml",
    description="MAML initialisation, every weight adapted afresh to each batch (OSAKA's MAML).",
    scenarios=SWITCHING,
    options=MAMLOptions,
    pretraining="maml",
)
def maml(context: AgentContext) -> MAMLLearner:
    """Adapt every weight of the MAML initialisation to each labelled batch."""
    return _learner(context, "maml")


@register_agent(
    "anil",
    description="ANIL initialisation, its head adapted afresh to each batch (OSAKA's ANIL).",
    scenarios=SWITCHING,
    options=MAMLOptions,
    pretraining="anil",
)
def anil(context: AgentContext) -> MAMLLearner:
    """Adapt the head of the ANIL initialisation to each labelled batch."""
    return _learner(context, "anil")
