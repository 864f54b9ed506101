"""Slow weights for the sequence agent: a moving average of the trained weights.

The agent trains one network (the fast weights: quick to learn the current task, quick to
forget the last ones). Beside it, ``SlowFastNetwork`` keeps a second copy of every parameter
that follows the fast weights slowly, θ_slow ← m·θ_slow + (1 − m)·θ_fast after every step,
so it remembers the tasks of the last 1 / (1 − m) steps or so and lags behind the current
one. A prediction mixes the two networks' class probabilities, which keeps the fast weights'
grip on the current task and the slow weights' on the earlier ones.

In training mode the module is the fast network itself, so Avalanche's training loop and the
agent's functional steps see nothing new; in evaluation mode (``model.eval()``, as every
evaluator sets) its output is the mixture's log-probabilities, which rank classes as the
mixture does.

References:
    Arani, Sarfraz & Zonooz, "Learning Fast, Learning Slow: A General Continual Learning
    Method based on Complementary Learning System", ICLR 2022 (CLS-ER: moving-average
    semantic memories of a working model). Nichol, Achiam & Schulman, "On First-Order
    Meta-Learning Algorithms", 2018 (Reptile's interpolation towards adapted weights).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from lifelong.agent import functional as fn


class SlowFastNetwork(nn.Module):
    """A network (the fast weights) and a slowly moving average of its parameters.

    Args:
        fast: The network the agent trains; held, not copied.
        momentum: ``m`` of the moving average, in (0, 1).
        slow_share: Weight of the slow weights' probabilities in a prediction, in [0, 1].
    """

    def __init__(self, fast: nn.Module, momentum: float, slow_share: float) -> None:
        super().__init__()
        if not 0 < momentum < 1:
            raise ValueError(f"slow-weight momentum must lie in (0, 1), got {momentum}")
        if not 0 <= slow_share <= 1:
            raise ValueError(f"slow_share must lie in [0, 1], got {slow_share}")
        self.fast = fast
        self.momentum = momentum
        self.slow_share = slow_share
        self._names = [name for name, _ in fast.named_parameters()]
        for name, param in fast.named_parameters():
            # Buffers, not parameters: no optimizer or gradient ever reaches them, and they
            # move with the module's .to() and live in its state_dict.
            self.register_buffer(_buffer_name(name), param.detach().clone())

    def slow_parameters(self) -> dict[str, torch.Tensor]:
        """The slow copy, keyed like the fast network's ``named_parameters()``."""
        # _buffers directly: Module.__getattr__ costs more than the lookup, at every step.
        return {name: cast(torch.Tensor, self._buffers[_buffer_name(name)]) for name in self._names}

    @torch.no_grad()
    def follow(self) -> None:
        """Move the slow weights one step towards the fast ones (after a training step)."""
        slow = list(self.slow_parameters().values())
        torch._foreach_lerp_(slow, list(self.fast.parameters()), 1 - self.momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The fast network's logits in training mode, the mixture's log-probabilities else.

        The mixture is ``slow_share`` of the slow weights' class probabilities plus the rest
        of the fast weights'.
        """
        fast_logits = self.fast(x)
        if self.training:
            return fast_logits
        slow_logits = fn.forward(self.fast, self.slow_parameters(), x)
        # Mixed class-major: on a CPU, softmax over the last dimension of a (batch, classes)
        # tensor with a handful of classes is about six times slower than over the first
        # dimension of its transpose (46 us against 8 us for 256 x 10, one thread), which
        # made it a tenth of an evaluation. The values agree to float rounding.
        mixture = self.slow_share * slow_logits.t().contiguous().softmax(0)
        mixture = mixture + (1 - self.slow_share) * fast_logits.t().contiguous().softmax(0)
        return mixture.clamp_min(torch.finfo(mixture.dtype).tiny).log().t()


def _buffer_name(parameter_name: str) -> str:
    # Buffer names cannot contain dots.
    return "slow__" + parameter_name.replace(".", "__")
