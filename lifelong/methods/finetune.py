"""``finetune``: the pre-trained encoder and a linear head trained online by SGD, never reset.

The lower bound of task-switching streams.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from lifelong.agents import AgentContext, register_agent
from lifelong.methods.online import SWITCHING, Predictor, check_support, encoder_width

__all__ = ["FinetuneLearner"]

ADAPT_STEPS = 10
"""SGD steps ``FinetuneLearner.adapt`` takes on a support set."""


class FinetuneLearner:
    """Online SGD on every batch from the pre-trained encoder and a zero-initialised head.

    Args:
        encoder: The pre-trained encoder; trained in place.
        features: Its output width.
        ways: Labels per step.
        lr: SGD learning rate.
        steps: SGD steps per batch.
    """

    def __init__(self, encoder: nn.Module, features: int, ways: int, lr: float, steps: int):
        self.model = nn.Sequential(encoder, zero_head(features, ways))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.lr = lr
        self.features = features
        self.head_ways = ways
        self.steps = steps

    @property
    def encoder(self) -> nn.Module:
        """The encoder, trained in place."""
        return self.model[0]

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write the head to ``folder/state.pt`` (the encoder is saved by the caller)."""
        torch.save({"head": self.model[1].state_dict()}, folder / "state.pt")
        return {
            "features": self.features,
            "ways": self.head_ways,
            "lr": self.lr,
            "steps": self.steps,
        }

    @classmethod
    def load_state(cls, folder: Path, encoder: nn.Module, info: dict[str, Any]) -> FinetuneLearner:
        """The learner ``save_state`` wrote, around the loaded ``encoder``."""
        learner = cls(encoder, info["features"], info["ways"], info["lr"], info["steps"])
        learner.model[1].load_state_dict(torch.load(folder / "state.pt", weights_only=True)["head"])
        return learner

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the batch, in eval mode (batch norm uses its running statistics)."""
        self.model.eval()
        with torch.no_grad():
            return self.model(x)

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> Predictor:
        """A copy of the encoder with a new zero head, ``ADAPT_STEPS`` SGD steps on the support.

        The learner itself is unchanged.

        Raises:
            ValueError: On a malformed support set (see ``check_support``).
        """
        return finetuned_predictor(self.model[0], self.features, self.lr, support_x, support_y)

    def observe(self, x: torch.Tensor, y: torch.Tensor, new_segment: bool | None) -> None:
        """``steps`` SGD steps on the labelled batch; boundaries are not used."""
        self.model.train()
        for _ in range(self.steps):
            self.optimizer.zero_grad(set_to_none=True)
            cross_entropy(self.model(x), y).backward()
            self.optimizer.step()


@register_agent(
    "finetune",
    description="Online SGD on every batch from the pre-trained encoder: the lower bound.",
    scenarios=SWITCHING,
)
def finetune(context: AgentContext) -> FinetuneLearner:
    """Fine-tune the pre-trained encoder and a new head on each incoming batch."""
    features = encoder_width(context.model, context.stream.input_shape)
    return FinetuneLearner(
        context.model, features, context.stream.n_classes, context.train.lr, context.train.epochs
    )


def zero_head(features: int, ways: int) -> nn.Linear:
    """A linear head with zero weights and bias: the first prediction is uniform."""
    head = nn.Linear(features, ways)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def finetuned_predictor(
    encoder: nn.Module,
    features: int,
    lr: float,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
) -> Predictor:
    """A copy of ``encoder`` with a new zero head after ``ADAPT_STEPS`` SGD steps on the support.

    ``encoder`` itself is unchanged.

    Raises:
        ValueError: On a malformed support set (see ``check_support``).
    """
    ways = check_support(support_x, support_y)
    adapted = FinetuneLearner(copy.deepcopy(encoder), features, ways, lr, ADAPT_STEPS)
    adapted.observe(support_x, support_y, None)
    return adapted.predict
