"""Network builders: the same architecture for every agent on a stream, so comparisons are fair."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from avalanche.models import MultiHeadClassifier, MultiTaskModule
from torch import nn
from torch.nn import functional

from streams import Scenario


class MLP(nn.Module):
    """A fully connected classifier over flattened inputs.

    The GEM protocol's network is ``MLP(784, 10, hidden=(100, 100))``.

    References:
        Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.
    """

    def __init__(self, in_features: int, n_classes: int, hidden: tuple[int, ...] = (100, 100)):
        super().__init__()
        self.features = _trunk(in_features, hidden)
        self.classifier = nn.Linear(hidden[-1] if hidden else in_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits for a batch ``x`` of any shape ``(batch, ...)``."""
        return self.classifier(self.features(x))

    def forward_with(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``forward`` at ``params`` (keyed as ``named_parameters()``) instead of its own.

        The same operations as ``torch.func.functional_call(self, params, (x,))``, so the
        same numbers, without swapping the module's tensors in and out at every call, which
        costs more than the arithmetic of a small network's step (about 80 us a call).
        """
        h = x
        for index, layer in enumerate(self.features):
            if isinstance(layer, nn.Linear):
                h = functional.linear(
                    h, params[f"features.{index}.weight"], params[f"features.{index}.bias"]
                )
            else:  # the trunk's other layers (Flatten, ReLU) hold no parameters
                h = layer(h)
        return functional.linear(h, params["classifier.weight"], params["classifier.bias"])


class MultiHeadMLP(MultiTaskModule):
    """The MLP trunk with one output head per task, for task-incremental streams.

    Avalanche's ``MultiHeadClassifier`` runs with ``masking=False`` because its default
    masking crashes on the new benchmark API (../shared/AVALANCHE_NOTES.md).
    """

    def __init__(self, in_features: int, n_classes: int, hidden: tuple[int, ...] = (100, 100)):
        super().__init__()
        self.features = _trunk(in_features, hidden)
        self.classifier = MultiHeadClassifier(
            hidden[-1] if hidden else in_features, initial_out_features=n_classes, masking=False
        )
        # MultiTaskModule.forward writes each head's logits into a buffer max_class_label
        # wide, which starts at 0 and grows only with the labels seen; the heads start
        # n_classes wide, so without this every task-labelled forward before the highest
        # label was seen fails with a shape mismatch (e.g. the evaluation before training).
        self.max_class_label = n_classes

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        """Return the logits of ``task_label``'s head."""
        return self.classifier(self.features(x), task_label)


def _trunk(in_features: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    return nn.Sequential(*layers)


def build_model(
    scenario: Scenario,
    input_shape: tuple[int, ...],
    n_classes: int,
    hidden: tuple[int, ...] = (100, 100),
) -> nn.Module:
    """Build the network every agent gets on a stream.

    Args:
        scenario: Task-incremental streams get one head per task, the others one head.
        input_shape: Shape of one input, without the batch dimension.
        n_classes: Output units of a head.
        hidden: Widths of the hidden layers.

    Returns:
        A freshly initialised model; seed torch first for a reproducible init.
    """
    in_features = math.prod(input_shape)
    if scenario is Scenario.TASK_INCREMENTAL:
        return MultiHeadMLP(in_features, n_classes, hidden)
    return MLP(in_features, n_classes, hidden)
