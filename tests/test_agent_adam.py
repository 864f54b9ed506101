"""LeanAdam takes the steps torch.optim.Adam(foreach=True) takes, bit for bit."""

import pytest
import torch

from lifelong.agent.adam import LeanAdam


def test_lean_adam_matches_torch_adam_bit_for_bit() -> None:
    generator = torch.Generator().manual_seed(0)
    shapes = [(100,), (100,), (10,), (3, 4)]
    start = [torch.randn(shape, generator=generator) for shape in shapes]
    reference = [t.clone().requires_grad_(True) for t in start]
    lean = [t.clone() for t in start]
    torch_adam = torch.optim.Adam(reference, lr=0.003, betas=(0.8, 0.99), eps=1e-6, foreach=True)
    lean_adam = LeanAdam(lean, lr=0.003, betas=(0.8, 0.99), eps=1e-6)
    for _ in range(25):
        grads = [torch.randn(shape, generator=generator) for shape in shapes]
        for tensor, grad in zip(reference, grads, strict=True):
            tensor.grad = grad.clone()
        torch_adam.step()
        lean_adam.step(grads)
    for expected, got in zip(reference, lean, strict=True):
        assert torch.equal(expected.detach(), got)
    assert lean_adam.steps == 25


def test_lean_adam_refuses_a_non_positive_lr() -> None:
    with pytest.raises(ValueError, match="lr must be positive, got 0"):
        LeanAdam([torch.zeros(2)], lr=0)
