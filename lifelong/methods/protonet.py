"""``protonet``: the frozen pre-trained encoder, prototypes of the current task's batches.

The prototypes start afresh when the task is judged to have switched (Snell et al. 2017).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lifelong.agents import AgentContext, register_agent
from lifelong.budget import tensor_bytes
from lifelong.methods.online import SWITCHING, Predictor, check_support
from lifelong.pretraining import prototype_logits

__all__ = ["ProtoNetLearner"]


class ProtoNetLearner:
    """Nearest-prototype prediction with a frozen pre-trained encoder.

    The prototypes are the mean embeddings of the current task's labelled drawings so far.
    With boundaries known they restart at every new segment. With boundaries hidden they
    restart when the batch just labelled is classified by the current prototypes at less
    than halfway between chance (``1 / ways``) and perfect: within a task the pre-trained
    encoder is far above that, and after a switch to new labels it falls to chance.

    References:
        Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017.

    Args:
        encoder: The pre-trained encoder; never updated.
        ways: Labels per step.
    """

    def __init__(self, encoder: nn.Module, ways: int):
        self.encoder = encoder.eval()
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        self.ways = ways
        self.sums: torch.Tensor | None = None
        self.counts = torch.zeros(ways)
        self.switch_accuracy = (1.0 / ways + 1.0) / 2

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write the prototype sums to ``folder/state.pt`` (the encoder is saved by the caller)."""
        state = {"counts": self.counts}
        if self.sums is not None:
            state["sums"] = self.sums
        torch.save(state, folder / "state.pt")
        return {"ways": self.ways}

    @classmethod
    def load_state(cls, folder: Path, encoder: nn.Module, info: dict[str, Any]) -> ProtoNetLearner:
        """The learner ``save_state`` wrote, around the loaded ``encoder``."""
        learner = cls(encoder, info["ways"])
        state = torch.load(folder / "state.pt", weights_only=True)
        learner.counts = state["counts"]
        learner.sums = state.get("sums")
        return learner

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Negative squared distances to the prototypes; zeros before any prototype."""
        with torch.no_grad():
            return self._logits(self.encoder(x))

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> Predictor:
        """Nearest-prototype logits from the support set's prototypes; the learner is unchanged.

        Raises:
            ValueError: On a malformed support set (see ``check_support``).
        """
        ways = check_support(support_x, support_y)
        with torch.no_grad():
            support = self.encoder(support_x)

        def predict(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return prototype_logits(support, support_y, self.encoder(x), ways)

        return predict

    def observe(self, x: torch.Tensor, y: torch.Tensor, new_segment: bool | None) -> None:
        """Restart the prototypes if the task switched, then add the batch to them."""
        with torch.no_grad():
            embedded = self.encoder(x)
            if new_segment is None:
                accuracy = (self._logits(embedded).argmax(1) == y).double().mean()
                new_segment = self.sums is not None and float(accuracy) < self.switch_accuracy
            if new_segment or self.sums is None:
                self.sums = torch.zeros(self.ways, embedded.shape[1])
                self.counts = torch.zeros(self.ways)
            self.sums.index_add_(0, y, embedded)
            self.counts += torch.bincount(y, minlength=self.ways).to(self.counts)

    def memory_bytes_by_kind(self) -> dict[str, int]:
        """The current task's prototype sums and counts (``records``)."""
        kept = [self.counts] if self.sums is None else [self.sums, self.counts]
        return {"records": tensor_bytes(kept)}

    def _logits(self, embedded: torch.Tensor) -> torch.Tensor:
        if self.sums is None:
            return torch.zeros(len(embedded), self.ways)
        seen = self.counts > 0
        prototypes = self.sums[seen] / self.counts[seen].unsqueeze(1)
        logits = torch.full((len(embedded), self.ways), -torch.inf)
        logits[:, seen] = -torch.cdist(embedded, prototypes).pow(2)
        return logits


@register_agent(
    "protonet",
    description="ProtoNet (Snell et al. 2017): frozen pre-trained encoder, task prototypes.",
    scenarios=SWITCHING,
)
def protonet(context: AgentContext) -> ProtoNetLearner:
    """Classify by the nearest prototype of the current task's labelled drawings."""
    return ProtoNetLearner(context.model, context.stream.n_classes)
