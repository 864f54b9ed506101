"""``cmaml``: Continual-MAML, OSAKA's baseline (Caccia et al. 2020).

Slow weights: the MAML initialisation, meta-updated online. Fast weights: started from the
slow weights and adapted to every labelled batch in turn, so that they accumulate a
segment's knowledge (the "prolonged adaptation"). A switch is declared when adapting to the
batch lowers its loss by at least ``boundary_threshold`` (the fast weights were wrong about
it); the fast weights then restart from the slow weights. The batches of a segment are kept
in a buffer; at a switch, or when the buffer outgrows ``meta_every`` batches, the slow
weights take a first-order MAML step on it (first half support, second half query), its
loss weighted by ``1 - exp(-smoothing * loss)`` so that batches already well predicted move
the slow weights little.

OSAKA's code restarts the fast weights one step after the switch it detects; here they
restart on the batch that revealed it. The published settings are OSAKA's for Omniglot at
p = 0.9 (``Config/Best_params/omniglot_p0.9.json``, the prolonged-adaptation variant).

References:
    Caccia et al., "Online Fast Adaptation and Knowledge Accumulation (OSAKA): a New
    Approach to Continual Learning", NeurIPS 2020.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from lifelong.agents import AgentContext, register_agent
from lifelong.budget import tensor_bytes
from lifelong.maml import MAMLSettings, Weights, adapt, initial_weights, logits_of, meta_gradient
from lifelong.methods.maml import load_weights, predictor_of, save_weights, weight_tensors
from lifelong.methods.online import SWITCHING, Predictor, check_support, encoder_width

__all__ = ["CMAMLLearner", "CMAMLOptions"]


@dataclass(frozen=True)
class CMAMLOptions:
    """C-MAML's online settings.

    Attributes:
        steps: SGD steps of the fast weights on each labelled batch, and of the inner loop
            of a meta-update (MAML pre-training's ``test_steps``).
        lr: Their learning rate (MAML pre-training's ``inner_lr``).
        boundary_threshold: Loss drop on a batch, from before to after adapting to it, that
            declares a switch (OSAKA's ``cl_tbd_thres``, 2.0).
        smoothing: ``lambda`` of the meta-update's weight ``1 - exp(-lambda * loss)``
            (OSAKA's ``cl_strategy_thres``, 0.25).
        meta_lr: Adam's learning rate for the slow weights (OSAKA's ``meta_lr``, 5e-4).
        meta_every: Buffered batches beyond which the slow weights are meta-updated
            without a switch (OSAKA: twice the samples of a batch, 10 at 5-way 1-shot).
    """

    steps: int = MAMLSettings.of("maml").test_steps
    lr: float = MAMLSettings.of("maml").inner_lr
    boundary_threshold: float = 2.0
    smoothing: float = 0.25
    meta_lr: float = 5e-4
    meta_every: int = 10

    def __post_init__(self) -> None:
        for name in ("steps", "meta_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} is {value!r}; it must be an integer >= 1")
        for name in ("lr", "boundary_threshold", "smoothing", "meta_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} is {getattr(self, name)!r}; it must be positive")


class CMAMLLearner:
    """Fast weights accumulated over a segment, reset to online meta-learned slow weights.

    Args:
        encoder: The MAML-pre-trained encoder: the slow weights, meta-updated in place.
        ways: Labels per step.
        features: The encoder's output width.
        options: C-MAML's settings.
    """

    def __init__(self, encoder: nn.Module, ways: int, features: int, options: CMAMLOptions):
        self.encoder = encoder.train()
        self.ways = ways
        self.features = features
        self.options = options
        self.optimizer = torch.optim.Adam(self.encoder.parameters(), lr=options.meta_lr)
        self.fast: Weights | None = None
        self.buffer: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.decisions = {"switches": 0, "meta_updates": 0}

    def start(self, ways: int) -> Weights:
        """The slow weights with a zero ``ways`` head, as fresh leaves."""
        return initial_weights(self.encoder, ways, self.features).detached()

    def adapted(self, start: Weights, x: torch.Tensor, y: torch.Tensor) -> Weights:
        """``options.steps`` SGD steps on ``(x, y)`` from ``start``."""
        return adapt(
            self.encoder, start, x, y, steps=self.options.steps, lr=self.options.lr, inner="all"
        )

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the batch under the fast weights."""
        with torch.no_grad():
            return logits_of(self.encoder, self.fast or self.start(self.ways), x)

    def observe(self, x: torch.Tensor, y: torch.Tensor, new_segment: bool | None) -> None:
        """Detect a switch (or take the given one), meta-update, adapt the fast weights."""
        if self.fast is None:
            self.fast = self.adapted(self.start(self.ways), x, y)
            self.buffer.append((x, y))
            return
        adapted = self.adapted(self.fast, x, y)
        if new_segment is None:
            with torch.no_grad():
                before = float(cross_entropy(logits_of(self.encoder, self.fast, x), y))
                after = float(cross_entropy(logits_of(self.encoder, adapted, x), y))
            switched = before - after >= self.options.boundary_threshold
        else:
            switched = new_segment
        if switched:
            self.decisions["switches"] += 1
            self._meta_update()
            self.fast = self.adapted(self.start(self.ways), x, y)
            self.buffer = [(x, y)]
            return
        self.fast = adapted
        self.buffer.append((x, y))
        if len(self.buffer) > self.options.meta_every:
            self._meta_update()
            self.buffer = []

    def _meta_update(self) -> None:
        """A first-order MAML step of the slow weights on the buffered segment."""
        if not self.buffer:
            return
        batches = self.buffer if len(self.buffer) > 1 else self.buffer * 2
        half = math.ceil(len(batches) / 2)
        support = [torch.cat(part) for part in zip(*batches[:half], strict=True)]
        query = [torch.cat(part) for part in zip(*batches[half:], strict=True)]
        episode = (support[0], support[1], query[0], query[1])
        self.optimizer.zero_grad(set_to_none=True)
        loss = meta_gradient(
            self.encoder, episode, self.ways, self.features, steps=self.options.steps,
            lr=self.options.lr, inner="all",
        )
        # OSAKA's modulation: a segment the slow weights already serve well moves them little.
        weight = 1.0 - math.exp(-self.options.smoothing * loss)
        for parameter in self.encoder.parameters():
            if parameter.grad is not None:
                parameter.grad.mul_(weight)
        self.optimizer.step()
        self.decisions["meta_updates"] += 1

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> Predictor:
        """A predictor adapted from the slow weights on the support; the learner is unchanged.

        Raises:
            ValueError: On a malformed support set (see ``check_support``).
        """
        ways = check_support(support_x, support_y)
        return predictor_of(self.encoder, self.adapted(self.start(ways), support_x, support_y))

    def memory_bytes_by_kind(self) -> dict[str, int]:
        """The buffered batches as ``samples``; fast weights and Adam's state as ``records``."""
        fast = [] if self.fast is None else weight_tensors(self.fast)
        moments = [t for state in self.optimizer.state.values() for t in state.values()]
        return {
            "samples": tensor_bytes(x for x, _ in self.buffer),
            "records": tensor_bytes(fast) + tensor_bytes(t for t in moments if t.ndim > 0),
        }

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write fast weights, buffer and Adam's state to ``folder/state.pt``.

        The encoder (the slow weights) is saved by the caller.
        """
        torch.save(
            {
                "fast": save_weights(self.fast),
                "buffer_x": [x for x, _ in self.buffer],
                "buffer_y": [y for _, y in self.buffer],
                "optimizer": self.optimizer.state_dict(),
            },
            folder / "state.pt",
        )
        return {
            "ways": self.ways, "features": self.features, "decisions": dict(self.decisions),
            **vars(self.options),
        }

    @classmethod
    def load_state(cls, folder: Path, encoder: nn.Module, info: dict[str, Any]) -> CMAMLLearner:
        """The learner ``save_state`` wrote, around the loaded ``encoder``."""
        settings = {k: v for k, v in info.items() if k not in ("ways", "features", "decisions")}
        learner = cls(encoder, info["ways"], info["features"], CMAMLOptions(**settings))
        learner.decisions = dict(info.get("decisions", learner.decisions))
        state = torch.load(folder / "state.pt", weights_only=True)
        learner.fast = load_weights(state["fast"])
        learner.buffer = list(zip(state["buffer_x"], state["buffer_y"], strict=True))
        learner.optimizer.load_state_dict(state["optimizer"])
        return learner


@register_agent(
    "cmaml",
    description="Continual-MAML (OSAKA): fast weights reset at a loss jump, slow meta-learnt.",
    scenarios=SWITCHING,
    options=CMAMLOptions,
    pretraining="maml",
)
def cmaml(context: AgentContext) -> CMAMLLearner:
    """C-MAML from the MAML initialisation, with OSAKA's Omniglot settings."""
    features = encoder_width(context.model, context.stream.input_shape)
    return CMAMLLearner(context.model, context.stream.n_classes, features, context.options)
