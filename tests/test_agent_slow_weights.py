"""Tests of the sequence agent's slow weights (``lifelong.agent.slow_weights``)."""

from __future__ import annotations

import pytest
import torch

from lifelong.agent import LifelongAgent, LifelongConfig
from lifelong.agent.slow_weights import SlowFastNetwork
from lifelong.budget import tensor_bytes
from lifelong.models import MLP


def _network(momentum: float = 0.9, share: float = 0.5) -> SlowFastNetwork:
    torch.manual_seed(0)
    return SlowFastNetwork(MLP(6, 3, hidden=(5,)), momentum, share)


def test_follow_moves_the_slow_copy_by_one_minus_momentum_of_the_gap():
    network = _network(momentum=0.9)
    before = {k: v.clone() for k, v in network.slow_parameters().items()}
    with torch.no_grad():
        for param in network.fast.parameters():
            param.add_(1.0)
    network.follow()
    for name, param in network.fast.named_parameters():
        torch.testing.assert_close(
            network.slow_parameters()[name], 0.9 * before[name] + 0.1 * param.detach()
        )


def test_slow_copy_is_buffers_the_optimizer_never_sees():
    network = _network()
    assert list(network.parameters()) == list(network.fast.parameters())
    assert len(network.slow_parameters()) == len(list(network.fast.parameters()))
    assert all(k.startswith("slow__") for k, _ in network.named_buffers())
    assert set(network.state_dict()) >= {f"fast.{k}" for k, _ in network.fast.named_parameters()}


def test_training_mode_is_the_fast_network_and_evaluation_the_mixture():
    network = _network(share=0.25)
    with torch.no_grad():
        for param in network.fast.parameters():
            param.mul_(-2.0)  # fast and slow now disagree
    x = torch.randn(4, 6)
    network.train()
    torch.testing.assert_close(network(x), network.fast(x))
    network.eval()
    slow = torch.func.functional_call(network.fast, network.slow_parameters(), (x,))
    expected = (0.25 * slow.softmax(1) + 0.75 * network.fast(x).softmax(1)).log()
    torch.testing.assert_close(network(x), expected)
    assert torch.allclose(network(x).exp().sum(1), torch.ones(4))


@pytest.mark.parametrize("momentum, share", [(0.0, 0.5), (1.0, 0.5), (0.9, 1.5)])
def test_bad_settings_name_the_value(momentum, share):
    with pytest.raises(ValueError, match=str(momentum if share <= 1 else share)):
        SlowFastNetwork(MLP(6, 3, hidden=(5,)), momentum, share)


def test_agent_counts_the_slow_copy_and_predicts_with_the_mixture():
    torch.manual_seed(0)
    model = MLP(6, 3, hidden=(5,))
    agent = LifelongAgent(model, 3, lr=0.1, memory_size=10, config=LifelongConfig(retrieval=False))
    assert isinstance(agent.network, SlowFastNetwork) and agent.network.fast is model
    plain = LifelongAgent(
        MLP(6, 3, hidden=(5,)), 3, lr=0.1, memory_size=10,
        config=LifelongConfig(retrieval=False, slow_momentum=0.0),
    )
    assert plain.network is plain.model
    copy_bytes = tensor_bytes(model.parameters())
    records = agent.memory_bytes_by_kind()["records"]
    assert records == plain.memory_bytes_by_kind()["records"] + copy_bytes
    agent.start_task()
    agent.observe(torch.randn(8, 6), torch.randint(0, 3, (8,)))
    x = torch.randn(5, 6)
    agent.network.eval()
    torch.testing.assert_close(agent.predict(x), agent.network(x))
    assert agent.report()["slow_weights"] is True and plain.report()["slow_weights"] is False


def test_a_byte_budget_keeps_the_slow_copy_only_within_its_share():
    model = MLP(6, 3, hidden=(5,))
    copy_bytes = tensor_bytes(model.parameters())
    config = LifelongConfig(retrieval=False, slow_budget_share=0.25, bytes_codec="none")
    kept = LifelongAgent(model, 3, 0.1, 0, config, memory_bytes=4 * copy_bytes + 5000)
    assert isinstance(kept.network, SlowFastNetwork)
    assert kept.reserved_bytes(1) >= copy_bytes
    dropped = LifelongAgent(MLP(6, 3, hidden=(5,)), 3, 0.1, 0, config,
                            memory_bytes=4 * copy_bytes - 1)
    assert dropped.network is dropped.model
