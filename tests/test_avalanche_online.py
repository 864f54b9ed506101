"""Avalanche strategies run online on a task-switching stream (``AvalancheOnlineLearner``)."""

import pytest
import torch
from avalanche.training import Naive

from lifelong import TrainConfig
from lifelong.agents import AgentContext, StreamFacts, available_agents, make_agent
from lifelong.evaluation import make_evaluator
from lifelong.methods.avalanche_online import AvalancheOnlineLearner, online_classifier
from lifelong.methods.common import common_arguments
from lifelong.pretraining import conv4
from streams import Scenario
from streams.omniglot_switching import omniglot_switching_pool

AVALANCHE_AGENTS = sorted(n for n, e in available_agents().items() if e.online_strategy)
FACTS = StreamFacts(Scenario.TASK_SWITCHING, 60, 5, (1, 28, 28))


@pytest.fixture(scope="module")
def steps(shared_data):
    """Six 5-way 1-shot labelled steps of one pre-training distribution."""
    pool = omniglot_switching_pool(shared_data / "omniglot", 3, seed=0)
    drawings = pool[0].train
    return [(torch.stack([drawings[c][i] for c in range(5)]), torch.arange(5)) for i in range(6)]


def _context(train: TrainConfig | None = None) -> AgentContext:
    torch.manual_seed(0)
    return AgentContext(
        online_classifier(conv4(1, 16), FACTS),
        train or TrainConfig(),
        FACTS,
        torch.device("cpu"),
        make_evaluator(ram_interval_s=None, metrics=False),
        (),
        seed=0,
    )


def _learner(agent: str) -> AvalancheOnlineLearner:
    context = _context()
    return AvalancheOnlineLearner(make_agent(agent, context), FACTS)


def _weights(learner: AvalancheOnlineLearner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.strategy.model.parameters()]


def test_the_registered_avalanche_agents_are_the_expected_ones():
    assert AVALANCHE_AGENTS == ["der", "er-ace", "lamaml", "mer", "mir", "replay"]


@pytest.mark.parametrize("agent", AVALANCHE_AGENTS)
def test_every_step_trains_the_network_and_fills_the_memory(agent, steps):
    learner = _learner(agent)
    first = learner.predict(steps[0][0])
    assert first.shape == (5, 5) and bool(torch.all(first == 0))  # the zero head: uniform
    before = _weights(learner)
    for x, y in steps:
        learner.observe(x, y, None)
    # A step smaller than batch_size still trains (La-MAML drops incomplete mini-batches).
    assert any(not torch.equal(a, b) for a, b in zip(before, _weights(learner), strict=True))
    assert learner.decisions == {"experiences": len(steps)}
    assert learner.memory_bytes_by_kind()["samples"] > 0


@pytest.mark.parametrize("agent", AVALANCHE_AGENTS)
def test_adapt_returns_a_predictor_and_leaves_the_strategy_unchanged(agent, steps):
    learner = _learner(agent)
    for x, y in steps[:3]:
        learner.observe(x, y, None)
    before = _weights(learner)
    logits = learner.adapt(steps[3][0], steps[3][1])(steps[4][0])
    assert logits.shape == (5, 5) and bool(torch.isfinite(logits).all())
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(learner), strict=True))


def _largest_difference(a: AvalancheOnlineLearner, b: AvalancheOnlineLearner) -> float:
    pairs = zip(_weights(a), _weights(b), strict=True)
    return max(float((x - y).abs().max()) for x, y in pairs)


def test_er_ace_replays_from_the_second_step_on(steps):
    # With every label in each step, ER-ACE's asymmetric loss is plain cross-entropy: it
    # differs from naive SGD only through replay, which Avalanche starts after experience 0.
    er_ace = _learner("er-ace")
    naive = AvalancheOnlineLearner(Naive(**common_arguments(_context())), FACTS)
    er_ace.observe(*steps[0], None)
    naive.observe(*steps[0], None)
    assert _largest_difference(er_ace, naive) < 1e-6  # rounding: the losses add differently
    for x, y in steps[1:3]:
        er_ace.observe(x, y, None)
        naive.observe(x, y, None)
    assert _largest_difference(er_ace, naive) > 1e-3


def test_replay_keeps_a_reservoir_across_steps(steps):
    # An experience-balanced buffer would split its slots over the steps and keep nothing.
    learner = _learner("replay")
    for x, y in steps:
        learner.observe(x, y, None)
    assert learner.memory_bytes_by_kind()["samples"] == 30 * 28 * 28 * 4


def test_the_network_learns_a_task_it_sees_repeatedly(steps):
    learner = _learner("replay")
    x, y = steps[0]
    for _ in range(40):  # from a random encoder: about 30 passes reach 100% here
        learner.observe(x, y, None)
    assert (learner.predict(x).argmax(1) == y).float().mean() >= 0.8
