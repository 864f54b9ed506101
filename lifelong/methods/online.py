"""What the learners of task-switching streams share (test-then-train).

Each factory of such a learner receives, as ``context.model``, a copy of the encoder that
ProtoNet pre-training produced on the stream's pre-training distributions (the same weights
for every agent of a run and seed), and returns an ``OnlineLearner``: ``predict`` a step's
batch, then ``observe`` it with its labels. ``lifelong.methods.finetune`` and
``lifelong.methods.protonet`` are the two built in; the project's own agent has one too
(``lifelong.agent.switching``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from streams import Scenario

__all__ = ["SWITCHING", "Predictor", "check_support", "encoder_width"]

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""Logits over a support set's labels for a batch of inputs."""


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


def encoder_width(encoder: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The width of the encoder's output for one input of ``input_shape``."""
    with torch.no_grad():
        was_training = encoder.training
        encoder.eval()
        width = int(encoder(torch.zeros(1, *input_shape)).shape[1])
        encoder.train(was_training)
    return width
