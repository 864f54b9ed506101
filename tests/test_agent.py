"""Tests of the ``lifelong`` agent: the maths of its pure functions, then the agent on a real
stream (split-digits from sklearn's digits).

Importing ``lifelong.agent`` here registers the agent, so ``test_baselines.py``'s contract
also covers it when the two files run in one session (until ``lifelong/__init__.py`` imports
it for everyone).
"""

from __future__ import annotations

import copy
import functools
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from avalanche.training.plugins import EvaluationPlugin
from torch.nn.functional import cross_entropy

import lifelong.agent  # noqa: F401  (registers the agent)
from lifelong.agent import LifelongAgent, LifelongConfig, build_lifelong
from lifelong.agent import functional as fn
from lifelong.agents import (
    AgentContext,
    StreamFacts,
    UnsupportedScenarioError,
    available_agents,
    make_agent,
)
from lifelong.config import TrainConfig
from lifelong.evaluation import AccuracyMatrixMetric, accuracy_matrix_from_evaluator
from lifelong.models import MLP, build_model
from streams import Scenario, StreamSpec, make_stream

TRAIN = TrainConfig(
    epochs=3, batch_size=10, eval_batch_size=256, lr=0.1, memory_size=60, hidden=(32, 32)
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    model = MLP(16, 4, hidden=(12, 12))
    x = torch.randn(10, 16)
    y = torch.randint(0, 4, (10,))
    return model, x, y


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _loss(model, params, x, y) -> float:
    return float(cross_entropy(fn.forward(model, params, x), y))


# --- Properties of the pure functions ---------------------------------------------------------


def test_functional_forward_with_the_models_params_equals_the_model():
    model, x, _ = _model_and_batch()
    torch.testing.assert_close(fn.forward(model, dict(model.named_parameters()), x), model(x))


def test_the_mlp_fast_path_is_functional_call_bit_for_bit_values_and_gradients():
    model, x, y = _model_and_batch()
    other = _params(MLP(16, 4, hidden=(12, 12)))
    results = []
    for forward in (model.forward_with, lambda p, x: torch.func.functional_call(model, p, (x,))):
        leaves = {k: v.clone().requires_grad_(True) for k, v in other.items()}
        logits = forward(leaves, x.reshape(10, 1, 4, 4))
        grads = torch.autograd.grad(cross_entropy(logits, y), list(leaves.values()))
        results.append((logits, grads))
    (fast, fast_grads), (reference, reference_grads) = results
    assert torch.equal(fast, reference)
    assert all(torch.equal(a, b) for a, b in zip(fast_grads, reference_grads, strict=True))


def test_a_clone_gives_the_same_output():
    model, x, _ = _model_and_batch()
    clone = copy.deepcopy(model)
    torch.testing.assert_close(fn.forward(clone, _params(model), x), model(x))


@pytest.mark.parametrize("seed", range(5))
def test_one_inner_step_lowers_the_incoming_loss(seed):
    model, x, y = _model_and_batch(seed)
    params = _params(model)
    loss, grads, _ = fn.loss_and_grads(model, params, x, y)
    assert _loss(model, fn.inner_step(params, grads, 1e-2), x, y) < float(loss)


def test_meta_step_is_pure_and_lowers_the_combined_loss():
    model, x, y = _model_and_batch()
    params = _params(model)
    before = {k: v.clone() for k, v in params.items()}
    step = fn.meta_step(model, params, (x, y), (x, y), lr=0.05)
    assert all(torch.equal(before[k], params[k]) for k in params)
    assert _loss(model, step.params, x, y) < _loss(model, params, x, y)


@pytest.mark.parametrize("commit", [True, False])
def test_meta_step_is_two_sgd_steps_from_the_chosen_start(commit):
    model, x, y = _model_and_batch()
    params = _params(model)
    replay_x, replay_y = torch.randn(6, 16), torch.randint(0, 4, (6,))
    combined = (torch.cat([x, replay_x]), torch.cat([y, replay_y]))
    step = fn.meta_step(model, params, (x, y), combined, lr=0.1, commit_lookahead=commit)
    _, g_in, _ = fn.loss_and_grads(model, params, x, y)
    lookahead = {k: params[k] - 0.1 * g_in[k] for k in params}
    _, g_meta, _ = fn.loss_and_grads(model, lookahead, *combined)
    start = lookahead if commit else params
    for name in params:
        torch.testing.assert_close(step.params[name], start[name] - 0.1 * g_meta[name])


def test_meta_step_without_lookahead_is_one_sgd_step_on_the_combined_batch():
    model, x, y = _model_and_batch()
    params = _params(model)
    combined = (torch.cat([x, x[:3]]), torch.cat([y, y[:3]]))
    step = fn.meta_step(model, params, (x, y), combined, lr=0.1, lookahead=False)
    _, grads, logits = fn.loss_and_grads(model, params, *combined)
    for name in params:
        torch.testing.assert_close(step.params[name], params[name] - 0.1 * grads[name])
    torch.testing.assert_close(step.logits, logits[: len(x)])
    torch.testing.assert_close(step.inner_loss, cross_entropy(logits[: len(x)], y))


def test_lookahead_lr_gradient_equals_autograd_through_the_step():
    model, x, y = _model_and_batch()
    params = _params(model)
    combined = (torch.cat([x, x[:4] + 0.1]), torch.cat([y, y[:4]]))
    rates = {k: torch.full((v.shape[0],), 0.05) + 0.01 * torch.rand(v.shape[0])
             for k, v in params.items()}
    step = fn.meta_step(model, params, (x, y), combined, lr=0.1, lookahead_lrs=rates)
    # Autograd: L_meta(θ − α ⊙ g_in(θ)) differentiated in α, g_in held as it is (it does not
    # depend on α).
    leaves = {k: v.clone().requires_grad_(True) for k, v in rates.items()}
    _, g_in, _ = fn.loss_and_grads(model, params, x, y)
    ahead = {k: params[k] - fn.unit_lrs(leaves, params)[k] * g_in[k] for k in params}
    loss = cross_entropy(fn.forward(model, ahead, combined[0]), combined[1])
    expected = torch.autograd.grad(loss, list(leaves.values()))
    assert step.lr_grads is not None
    for name, grad in zip(leaves, expected, strict=True):
        torch.testing.assert_close(step.lr_grads[name], grad)
    # Equal rates everywhere give the plain step.
    plain = fn.meta_step(model, params, (x, y), combined, lr=0.1)
    same = fn.meta_step(model, params, (x, y), combined, lr=0.1, lookahead_lrs={
        k: torch.full((v.shape[0],), 0.1) for k, v in params.items()})
    for name in params:
        torch.testing.assert_close(same.params[name], plain.params[name])


def test_learned_rates_move_only_with_meta_and_retrieval_weighs_replay():
    strategy, _ = _run(n_tasks=3)
    agent = strategy.agent
    assert any(not torch.allclose(v.exp(), torch.tensor(TRAIN.lr)) for v in agent._log_lrs.values())
    assert _run(LifelongConfig(meta=False), n_tasks=2)[0].agent._log_lrs == {}
    agent.start_task()
    agent.observe(*[t[:10] for t in agent.episodic.stored()[:2]])
    # Half uniform over the three past tasks, half to the retrieved ones by similarity.
    assert sum(agent._replay_weights.values()) == pytest.approx(1.0)
    assert min(agent._replay_weights.values()) >= 0.5 / 3 - 1e-9


def test_logit_targets_add_the_squared_error_of_the_last_rows():
    model, x, y = _model_and_batch()
    params = _params(model)
    stored = torch.randn(4, 4)
    targets = fn.LogitTargets(stored, weight=0.7)
    loss, grads, _ = fn.loss_and_grads(model, params, x, y, targets=targets)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    logits = fn.forward(model, leaves, x)
    expected = cross_entropy(logits, y) + 0.7 * ((logits[-4:] - stored) ** 2).mean()
    expected_grads = torch.autograd.grad(expected, list(leaves.values()))
    torch.testing.assert_close(loss, expected.detach())
    for name, grad in zip(leaves, expected_grads, strict=True):
        torch.testing.assert_close(grads[name], grad)


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match="-1"):
        LifelongConfig(distill_weight=-1.0)
    with pytest.raises(ValueError, match="nope"):
        LifelongConfig(memory_policy="nope")
    with pytest.raises(ValueError, match="route_rule 'nearest'"):
        LifelongConfig(route_rule="nearest")
    with pytest.raises(ValueError, match="switch_rule 'loss'"):
        LifelongConfig(switch_rule="loss")
    with pytest.raises(ValueError, match="steps_per_batch must be at least 1, got 0"):
        LifelongConfig(steps_per_batch=0)


# --- The agent on real streams ----------------------------------------------------------------


@functools.cache
def _stream(name: str, n_tasks: int):
    return make_stream(name, StreamSpec(n_tasks=n_tasks, seed=0))


def _context(stream, seed: int = 0, train: TrainConfig = TRAIN):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    facts = StreamFacts(stream.scenario, stream.n_tasks, stream.n_classes, stream.input_shape)
    model = build_model(stream.scenario, stream.input_shape, stream.n_classes, train.hidden)
    evaluator = EvaluationPlugin(AccuracyMatrixMetric(), loggers=[])
    context = AgentContext(model, train, facts, torch.device("cpu"), evaluator, (), seed)
    return context, evaluator


def _run(config: LifelongConfig | None = None, seed: int = 0, n_tasks: int = 3):
    stream = _stream("split-digits", n_tasks)
    context, _ = _context(stream, seed)
    strategy = build_lifelong(context, config)
    counts = []
    for experience in stream.benchmark.train_stream:
        strategy.train(experience, eval_streams=[])
        counts.append(strategy.stored_samples())
    # A final evaluation row is enough for the ablations; the full matrix is checked below.
    return strategy, counts


@functools.cache
def _full_run(seed: int = 0):
    stream = _stream("split-digits", 3)
    context, evaluator = _context(stream, seed)
    strategy = make_agent("lifelong", context)
    strategy.train(stream.benchmark.train_stream, eval_streams=[stream.benchmark.test_stream])
    return accuracy_matrix_from_evaluator(evaluator, stream.n_tasks), strategy


def test_lifelong_is_registered_for_single_head_and_task_switching_scenarios():
    entry = available_agents()["lifelong"]
    assert entry.uses_memory and entry.options is LifelongConfig
    assert entry.scenarios == {
        Scenario.CLASS_INCREMENTAL,
        Scenario.DOMAIN_INCREMENTAL,
        Scenario.TASK_SWITCHING,
    }


def test_refuses_task_incremental_in_one_line():
    stream = _stream("split-digits", 3)
    context, _ = _context(stream)
    facts = replace(context.stream, scenario=Scenario.TASK_INCREMENTAL)
    with pytest.raises(UnsupportedScenarioError, match="lifelong"):
        make_agent("lifelong", replace(context, stream=facts))


def test_matrix_is_finite_and_each_task_is_learned():
    matrix, _ = _full_run()
    assert matrix.shape == (4, 3)
    assert np.isfinite(matrix).all()
    assert all(matrix[t + 1, t] > 0.7 for t in range(3)), matrix
    assert matrix[3].mean() > 0.5, matrix  # replay keeps old classes well above chance


def test_same_seed_gives_the_same_matrix():
    _full_run.cache_clear()
    first, _ = _full_run()
    _full_run.cache_clear()
    again, _ = _full_run()
    np.testing.assert_array_equal(first, again)


def test_memory_budget_and_record_accounting():
    _, strategy = _full_run()
    agent = strategy.agent
    assert 0 < agent.stored_samples() <= TRAIN.memory_size
    assert set(agent.episodic.task_counts()) == {0, 1, 2}
    assert agent.extra_bytes == len(agent.episodic) * agent.n_classes * 4
    report = strategy.run_report()
    assert report["extra_state_bytes"] == agent.extra_bytes
    # Each task after the first retrieved the finished tasks, most similar first.
    assert [sorted(ids) for ids in report["retrieved_tasks"]] == [[], [0], [0, 1]]
    assert set(report["lookahead_lrs"]) == {name for name, _ in agent.model.named_parameters()}


@pytest.mark.parametrize(
    "switches",
    [
        {"commit_lookahead": False},
        {"lookahead": False},
        {"replay": False},
        {"memory_policy": "task_balanced"},
        {"distill_weight": 0.0},
        {"steps_per_batch": 1},
    ],
    ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()),
)
def test_every_ablation_switch_runs(switches):
    strategy, counts = _run(LifelongConfig(**switches), n_tasks=2)
    assert max(counts) <= TRAIN.memory_size
    for param in strategy.model.parameters():
        assert torch.isfinite(param).all()


def test_stored_logits_are_the_trained_models_logits_of_each_stored_slot():
    strategy, _ = _run(LifelongConfig(distill_weight=0.5), n_tasks=2)
    agent = strategy.agent
    stored = agent.episodic.stored()
    latest = stored.task_id == agent.task
    assert latest.any()
    with torch.no_grad():
        expected = agent.model(stored.x[latest])
    torch.testing.assert_close(agent._stored_logits[stored.slot[latest]], expected)


def test_replay_draws_only_past_tasks_and_every_past_task():
    strategy, _ = _run(n_tasks=3)
    agent = strategy.agent
    agent.start_task()  # a fourth task: tasks 0, 1 and 2 are in the past
    assert agent._replay_weights == {0: 1.0, 1: 1.0, 2: 1.0}
    drawn = agent.episodic.sample(300, task_weights=agent._replay_weights)
    assert set(drawn.task_id.tolist()) == {0, 1, 2}
    with pytest.raises(RuntimeError, match="start_task"):
        LifelongAgent(MLP(4, 2), 2, lr=0.1, memory_size=5).observe(
            torch.zeros(1, 4), torch.zeros(1, dtype=torch.long)
        )
