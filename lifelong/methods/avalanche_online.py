"""Avalanche strategies on task-switching streams: each labelled step is one experience.

An agent registered with ``online_strategy=True`` (replay, der, er-ace, mir, lamaml, mer)
runs online there as it would on any stream: the switching run hands its factory, as
``context.model``, the pre-trained encoder with a zero-initialised linear head over the
step's ``ways`` labels (``online_classifier``), and wraps the strategy it returns in
``AvalancheOnlineLearner``. Each step's batch is predicted by the strategy's
model, then trained on as an experience of its own with ``strategy.train`` (one pass, one
mini-batch when the step fits ``batch_size``), so every plugin (replay buffer, DER's
logits, MIR's retrieval, La-MAML's and MER's meta-updates) runs exactly as Avalanche runs
it. Boundaries are never passed on: on these streams an Avalanche experience is a step, not
a task. Labels are the step's, so after a switch with ``labels=shuffled`` the buffer holds
samples whose label numbers mean other classes; that is the setting, as in OSAKA.

The network is trained from the same ProtoNet-pre-trained encoder as ``finetune``, at the
run's ``lr`` and ``epochs``: a strategy differs from ``finetune`` only by what it adds.
These learners have no ``save_state``: a run saves no agent for them and takes no mid-job
checkpoint, so a killed job of theirs restarts from its first step on ``--resume``.
"""

from __future__ import annotations

import torch
from avalanche.benchmarks.scenarios import benchmark_from_datasets
from avalanche.models.utils import avalanche_forward
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from lifelong.agents import StreamFacts
from lifelong.budget import memory_bytes_by_kind
from lifelong.methods.finetune import finetuned_predictor, zero_head
from lifelong.methods.online import Predictor, encoder_width
from streams.tensors import tensor_dataset

__all__ = ["AvalancheOnlineLearner", "online_classifier"]


def online_classifier(encoder: nn.Module, facts: StreamFacts) -> nn.Sequential:
    """The encoder followed by a zero-initialised linear head over the step's labels.

    The head starts at zero, as ``finetune``'s does, so the first prediction is uniform.
    """
    features = encoder_width(encoder, facts.input_shape)
    return nn.Sequential(encoder, zero_head(features, facts.n_classes))


class AvalancheOnlineLearner:
    """An Avalanche strategy run test-then-train: predict a step, then train on it.

    Args:
        strategy: The strategy a registered factory built around ``online_classifier``.
        facts: The stream's facts (input shape and ways), for the bytes it stores.
    """

    def __init__(self, strategy: SupervisedTemplate, facts: StreamFacts) -> None:
        self.strategy = strategy
        self.facts = facts
        self.decisions = {"experiences": 0}
        self._batch_size = strategy.train_mb_size

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the batch from the strategy's model, in eval mode."""
        model = self.strategy.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = avalanche_forward(model, x, torch.zeros(len(x), dtype=torch.long))
        model.train(was_training)
        return logits

    def observe(self, x: torch.Tensor, y: torch.Tensor, new_segment: bool | None) -> None:
        """Train the strategy on the labelled batch as one experience of its own."""
        experience = benchmark_from_datasets(train=[tensor_dataset(x, y, 0)]).train_stream[0]
        # Numbered as the stream's steps: strategies that replay only after the first
        # experience (ER-ACE) read this number.
        experience.current_experience = self.decisions["experiences"]
        # A step no larger than batch_size is one mini-batch of its own size: La-MAML drops
        # an incomplete last mini-batch, and on a 5-sample step would train on nothing.
        self.strategy.train_mb_size = min(self._batch_size, len(x))
        self.strategy.train(experience)
        self.decisions["experiences"] += 1

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> Predictor:
        """``finetune``'s route from the strategy's current encoder: a new zero head, SGD.

        The learner itself is unchanged.

        Raises:
            ValueError: On a malformed support set (see ``check_support``).
        """
        encoder = self._encoder()
        features = encoder_width(encoder, tuple(support_x.shape[1:]))
        return finetuned_predictor(encoder, features, self._lr(), support_x, support_y)

    def memory_bytes_by_kind(self) -> dict[str, int]:
        """What the strategy stores beside its network, by kind (``lifelong.budget``)."""
        return memory_bytes_by_kind(self.strategy, self.facts)

    def _encoder(self) -> nn.Module:
        model = self.strategy.model
        # La-MAML wraps the network to drop task labels; the classifier is inside.
        inner = getattr(model, "net", model)
        assert isinstance(inner, nn.Sequential)
        return inner[0]

    def _lr(self) -> float:
        groups = self.strategy.optimizer.param_groups
        return float(groups[0]["lr"])
