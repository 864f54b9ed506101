"""``expert-gate``: one expert network and one autoencoder per task; the autoencoders gate.

At each experience a small autoencoder learns to reconstruct the experience's inputs; the
experience's expert starts as a copy of the most related earlier expert (relatedness from
how well each earlier autoencoder reconstructs the new data) and is trained on the
experience alone. At test time every input goes to the expert whose autoencoder
reconstructs it best. Nothing is replayed and no expert changes after its experience, so
there is no forgetting inside an expert: what can be lost is the gate's choice.

Written here rather than taken from Avalanche: Avalanche 0.6's ``ExpertGateStrategy`` is
built on an ImageNet-pretrained AlexNet from torchvision (a download, 227x227 inputs) and
keys experts by task label, which class- and domain-incremental streams do not change. This
version keys them by experience and uses the run's network as every expert, the inputs
themselves (through a sigmoid, as Avalanche preprocesses its features) as what the
autoencoders reconstruct. The paper's Learning-without-Forgetting step for highly related
tasks is left out: it only shapes the new expert's own training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, cast

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from lifelong.agents import AgentContext, register_agent
from lifelong.budget import tensor_bytes
from lifelong.methods.common import (
    SINGLE_HEAD_SCENARIOS,
    common_arguments,
    records_within,
    settings,
)
from streams import dataset_tensors

__all__ = ["ExpertGateHParams", "ExpertGateNetwork", "relatedness"]


@dataclass(frozen=True)
class ExpertGateHParams:
    """Expert Gate's autoencoders and gate, at Avalanche's values.

    Avalanche's ``ExpertGateStrategy`` defaults and ``_ExpertGatePlugin`` constants, which it
    takes from the paper; the experts train at the run's SGD settings.

    References:
        Aljundi, Chakravarty & Tuytelaars, "Expert Gate: Lifelong Learning with a Network of
        Experts", CVPR 2017.
    """

    code_size: int = 100
    """Units of the autoencoder's code (``ae_latent_dim=100``)."""
    ae_epochs: int = 2
    """Epochs each autoencoder trains on its experience (``ae_train_epochs=2``)."""
    ae_lr: float = 1e-3
    """Autoencoder SGD learning rate (``ae_lr=1e-3``; momentum 0.9, weight decay 5e-4)."""
    temperature: float = 2.0
    """Softmax temperature over negative reconstruction errors at test time (``temp=2``)."""


def relatedness(own_error: float, other_error: float) -> float:
    """The paper's task relatedness: ``1 - (other_error - own_error) / own_error``.

    Args:
        own_error: The new task's autoencoder's reconstruction error on the new data.
        other_error: An earlier task's autoencoder's error on the same data.
    """
    return 1.0 - (other_error - own_error) / own_error


class Autoencoder(nn.Module):
    """One hidden layer, ReLU code, sigmoid output; reconstructs ``sigmoid(x)``."""

    def __init__(self, in_features: int, code_size: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(in_features, code_size), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(code_size, in_features), nn.Sigmoid())

    def errors(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error of each input."""
        target = torch.sigmoid(x.flatten(1))
        return (self.decoder(self.encoder(x)) - target).pow(2).mean(dim=1)


class ExpertGateNetwork(nn.Module):
    """The experts and their autoencoders; trains the current expert, gates at test time.

    Args:
        first_expert: The run's network, which becomes the first experience's expert.
        temperature: The gate's softmax temperature.
    """

    def __init__(self, first_expert: nn.Module, temperature: float):
        super().__init__()
        self.experts = nn.ModuleList([first_expert])
        self.autoencoders = nn.ModuleList()
        self.current = 0
        self.temperature = temperature

    def gates(self) -> list[Autoencoder]:
        """The autoencoders, one per experience so far."""
        return [cast(Autoencoder, ae) for ae in self.autoencoders]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """In training, the current expert's logits; in evaluation, the gated expert's."""
        if self.training or not self.autoencoders:
            return self.experts[self.current](x)
        errors = torch.stack([ae.errors(x) for ae in self.gates()], dim=1)
        choice = torch.softmax(-errors / self.temperature, dim=1).argmax(dim=1)
        logits = torch.stack([expert(x) for expert in self.experts], dim=1)
        return logits[torch.arange(len(x)), choice]


class ExpertGatePlugin(SupervisedPlugin):
    """Adds an autoencoder and an expert at the start of every experience."""

    def __init__(self, hp: ExpertGateHParams, batch_size: int):
        super().__init__()
        self.hp = hp
        self.batch_size = batch_size
        self.chosen: list[int | None] = []
        """For each experience, the earlier expert its own started from (None: the first)."""

    def before_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        """Train the experience's autoencoder; start its expert from the most related one."""
        net: ExpertGateNetwork = strategy.model
        x, _ = dataset_tensors(strategy.experience.dataset)
        x = x.to(strategy.device)
        autoencoder = self._trained_autoencoder(x, strategy.device)
        if net.autoencoders:
            with torch.no_grad():
                own = float(autoencoder.errors(x).mean())
                scores = [relatedness(own, float(ae.errors(x).mean())) for ae in net.gates()]
            best = max(range(len(scores)), key=scores.__getitem__)
            net.experts.append(copy.deepcopy(net.experts[best]))
            net.current = len(net.experts) - 1
            self.chosen.append(best)
        else:
            self.chosen.append(None)
        net.autoencoders.append(autoencoder)

    def _trained_autoencoder(self, x: torch.Tensor, device: torch.device) -> Autoencoder:
        autoencoder = Autoencoder(x[0].numel(), self.hp.code_size).to(device)
        optimizer = torch.optim.SGD(
            autoencoder.parameters(), lr=self.hp.ae_lr, momentum=0.9, weight_decay=5e-4
        )
        for _ in range(self.hp.ae_epochs):
            for batch in torch.randperm(len(x), device=device).split(self.batch_size):
                # Summed over the batch and the pixels, as Avalanche's AE_loss is.
                loss = autoencoder.errors(x[batch]).sum() * x[0].numel()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return autoencoder.eval()


class ExpertGateStrategy(SupervisedTemplate):
    """A ``SupervisedTemplate`` over an ``ExpertGateNetwork``, its extra networks counted."""

    def memory_bytes_by_kind(self) -> dict[str, int]:
        """Every expert but the one a plain network would have, and every autoencoder."""
        net: ExpertGateNetwork = self.model
        extra_experts = sum(tensor_bytes(e.parameters()) for e in net.experts[1:])
        return {"records": extra_experts + tensor_bytes(net.autoencoders.parameters())}


@register_agent(
    "expert-gate",
    description="Expert Gate (Aljundi et al. 2017): an expert per task, autoencoder gating.",
    scenarios=SINGLE_HEAD_SCENARIOS,
    options=ExpertGateHParams,
)
def expert_gate(context: AgentContext) -> SupervisedTemplate:
    """A new expert per experience, chosen at test time by autoencoder reconstruction error.

    Single-head streams only: with task labels given at test time there is nothing to gate.
    Its extra networks grow with the stream (one expert and one autoencoder per task), kept
    as ``records``; under ``--memory-bytes`` it is refused if they would not fit.
    """
    hp = settings(context, ExpertGateHParams)
    n_inputs = 1
    for size in context.stream.input_shape:
        n_inputs *= size
    expert = tensor_bytes(context.model.parameters())
    autoencoder = (2 * n_inputs * hp.code_size + hp.code_size + n_inputs) * 4
    needed = (context.stream.n_tasks - 1) * expert + context.stream.n_tasks * autoencoder
    records_within("expert-gate", context, needed, "an expert and an autoencoder per task")
    net = ExpertGateNetwork(context.model, hp.temperature)
    plugin = ExpertGatePlugin(hp, context.train.batch_size)
    common = common_arguments(context, model=net, extra_plugins=[plugin])
    return ExpertGateStrategy(**common)
