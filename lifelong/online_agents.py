"""Learners for task-switching streams (test-then-train), registered in ``lifelong.agents``.

Each factory receives, as ``context.model``, a copy of the encoder that ProtoNet
pre-training produced on the stream's pre-training distributions (the same weights for every
agent of a run and seed), and returns an ``OnlineLearner``: ``predict`` a step's batch, then
``observe`` it with its labels.

- ``finetune``: the encoder and a linear head trained online by SGD on every batch, never
  reset: the lower bound.
- ``protonet``: the frozen encoder; prototypes from the current task's labelled batches,
  started afresh when the task is judged to have switched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from lifelong.agents import AgentContext, register_agent
from lifelong.budget import tensor_bytes
from lifelong.pretraining import prototype_logits
from streams import Scenario

__all__ = ["FinetuneLearner", "Predictor", "ProtoNetLearner", "check_support"]

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""Logits over a support set's labels for a batch of inputs."""

ADAPT_STEPS = 10
"""SGD steps ``FinetuneLearner.adapt`` takes on a support set."""


def check_support(support_x: torch.Tensor, support_y: torch.Tensor) -> int:
    """Check a few-shot support set and return its number of labels N.

    Raises:
        ValueError: If the labels are not integers ``0..N-1`` with every one present, or
            inputs and labels differ in number.
    """
    if len(support_x) != len(support_y) or len(support_y) == 0:
        raise ValueError(
            f"support has {len(support_x)} inputs and {len(support_y)} labels; pass one "
            "label per input, at least one"
        )
    if support_y.is_floating_point() or support_y.ndim != 1:
        raise ValueError(
            f"support labels have dtype {support_y.dtype} and shape "
            f"{tuple(support_y.shape)}; pass 1-D integer labels"
        )
    labels = sorted(set(support_y.tolist()))
    ways = max(labels) + 1
    if labels[0] < 0 or labels != list(range(ways)):
        missing = sorted(set(range(max(ways, 0))) - set(labels))
        raise ValueError(
            f"support labels are {labels}; number the classes 0..N-1 with every one present"
            + (f" (missing {missing})" if missing and labels[0] >= 0 else "")
        )
    return ways


SWITCHING = frozenset({Scenario.TASK_SWITCHING})


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
        head = nn.Linear(features, ways)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.model = nn.Sequential(encoder, head)
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
        ways = check_support(support_x, support_y)
        encoder = copy.deepcopy(self.model[0])
        adapted = FinetuneLearner(encoder, self.features, ways, self.lr, ADAPT_STEPS)
        adapted.observe(support_x, support_y, None)
        return adapted.predict

    def observe(self, x: torch.Tensor, y: torch.Tensor, new_segment: bool | None) -> None:
        """``steps`` SGD steps on the labelled batch; boundaries are not used."""
        self.model.train()
        for _ in range(self.steps):
            self.optimizer.zero_grad(set_to_none=True)
            cross_entropy(self.model(x), y).backward()
            self.optimizer.step()


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


def _features(encoder: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        was_training = encoder.training
        encoder.eval()
        width = int(encoder(torch.zeros(1, *input_shape)).shape[1])
        encoder.train(was_training)
    return width


@register_agent(
    "finetune",
    description="Online SGD on every batch from the pre-trained encoder: the lower bound.",
    scenarios=SWITCHING,
)
def finetune(context: AgentContext) -> FinetuneLearner:
    """Fine-tune the pre-trained encoder and a new head on each incoming batch."""
    features = _features(context.model, context.stream.input_shape)
    return FinetuneLearner(
        context.model, features, context.stream.n_classes, context.train.lr, context.train.epochs
    )


@register_agent(
    "protonet",
    description="ProtoNet (Snell et al. 2017): frozen pre-trained encoder, task prototypes.",
    scenarios=SWITCHING,
)
def protonet(context: AgentContext) -> ProtoNetLearner:
    """Classify by the nearest prototype of the current task's labelled drawings."""
    return ProtoNetLearner(context.model, context.stream.n_classes)
