"""The tensor evaluator against Avalanche's: the same accuracy matrix, every agent, both ways."""

import pickle
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from lifelong import RunConfig, StreamConfig, TrainConfig, run
from lifelong.agents import available_agents
from lifelong.run import resolve_agents
from lifelong.tensor_evaluator import TensorEvaluator, TestSet, isolated_randomness
from streams import Scenario, make_stream
from streams.base import StreamSpec

SHORT = RunConfig(
    stream=StreamConfig(name="split-digits", n_tasks=3),
    seeds=(0,),
    train=TrainConfig(epochs=1, memory_size=60),
)

# Everything in a run record that depends on training and evaluation, not on the clock.
_COMPARED = ("accuracy_matrix", "acc", "bwt", "fwt", "forgetting", "task_identities")


def _both_ways(config: RunConfig, tmp_path) -> tuple[dict, dict]:
    tensor = run(replace(config, evaluator="tensor", out=str(tmp_path / "t")), progress=False)
    avalanche = run(
        replace(config, evaluator="avalanche", out=str(tmp_path / "a")), progress=False
    )
    return tensor, avalanche


def _assert_same_runs(tensor: dict, avalanche: dict) -> None:
    assert [r["agent"] for r in tensor["runs"]] == [r["agent"] for r in avalanche["runs"]]
    for ours, theirs in zip(tensor["runs"], avalanche["runs"], strict=True):
        assert np.abs(
            np.array(ours["accuracy_matrix"]) - np.array(theirs["accuracy_matrix"])
        ).max() <= 1e-6, ours["agent"]
        for key in _COMPARED:
            assert ours[key] == theirs[key], (ours["agent"], key)


def test_every_registered_agent_gets_the_same_matrix_both_ways(tmp_path):
    stream = make_stream("split-digits", StreamSpec(n_tasks=3))
    agents = resolve_agents(("all",), stream)
    assert set(agents) == {
        name for name, e in available_agents().items() if Scenario.CLASS_INCREMENTAL in e.scenarios
    }
    tensor, avalanche = _both_ways(replace(SHORT, agents=agents), tmp_path)
    _assert_same_runs(tensor, avalanche)
    for record in avalanche["runs"]:
        # Avalanche's own values stay in the record where its path runs, and agree.
        assert record["bwt"] == pytest.approx(record["avalanche_bwt"], abs=1e-6)
        assert record["fwt"] == pytest.approx(record["avalanche_forward_transfer"], abs=1e-6)
    for record in tensor["runs"]:
        assert not any(key.startswith("avalanche_") for key in record)
        assert record["eval_time_s"] > 0 and record["train_time_s"] > 0


def test_task_incremental_heads_are_the_same_both_ways(tmp_path):
    config = replace(
        SHORT,
        stream=replace(SHORT.stream, options={"scenario": "task-incremental"}),
        agents=("naive", "replay", "agem"),
    )
    tensor, avalanche = _both_ways(config, tmp_path)
    _assert_same_runs(tensor, avalanche)


def test_rows_are_accuracies_of_a_known_model():
    class Always(nn.Module):
        """Predicts class ``k`` for every input."""

        def __init__(self, k: int):
            super().__init__()
            self.k = k
            self.weight = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            logits = torch.zeros(len(x), 3)
            logits[:, self.k] = 1.0
            return logits

    tests = [
        TestSet(torch.zeros(4, 2), torch.tensor([0, 0, 1, 2]), 0),
        TestSet(torch.zeros(5, 2), torch.tensor([2, 2, 2, 2, 1]), 0),
    ]
    evaluator = TensorEvaluator(tests, batch_size=3)
    strategy = type("S", (), {"model": Always(2)})()
    evaluator.before_training(strategy)
    for k in (0, 1):
        strategy.model = Always(k)
        evaluator.after_training_exp(strategy)
    expected = [[0.25, 0.8], [0.5, 0.0], [0.25, 0.2]]
    assert evaluator.rows == expected
    assert evaluator.matrix(2).tolist() == expected
    with pytest.raises(ValueError, match="holds 3 rows, expected 4"):
        evaluator.matrix(3)


def test_the_model_is_left_in_the_mode_it_was_in():
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))
    evaluator = TensorEvaluator([TestSet(torch.zeros(2, 2), torch.tensor([0, 1]), 0)], 8)
    strategy = type("S", (), {"model": model})()
    evaluator.after_training_exp(strategy)
    assert model.training
    model.eval()
    evaluator.after_training_exp(strategy)
    assert not model.training


def test_a_pickled_evaluator_keeps_its_rows_but_not_its_test_sets():
    tests = [TestSet(torch.zeros(3, 2), torch.tensor([0, 1, 0]), 0)]
    evaluator = TensorEvaluator(tests, batch_size=2)
    evaluator.rows.append([0.5])
    loaded = pickle.loads(pickle.dumps(evaluator))
    assert loaded.rows == [[0.5]]
    strategy = type("S", (), {"model": nn.Linear(2, 2)})()
    with pytest.raises(RuntimeError, match="call attach"):
        loaded.after_training_exp(strategy)
    loaded.attach(tests)
    loaded.after_training_exp(strategy)
    assert len(loaded.rows) == 2


def test_isolated_randomness_puts_every_generator_back():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    with isolated_randomness():
        random.random(), np.random.rand(), torch.rand(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch_size is 0"):
        TensorEvaluator([], batch_size=0)
