"""Contract tests for every registered agent, on tiny real streams built here from sklearn digits.

Every agent in ``available_agents()`` trains for real on each scenario it claims, under the
same evaluation protocol as a run (``eval_every=0``, one ``train`` call over the stream with
the test stream as evaluation stream), and must give a complete, finite (T+1) x T accuracy
matrix, learn the task it just trained, repeat itself under a fixed seed, and keep no more
than ``memory_size`` samples. Agents registered later are tested the day they appear.
"""

from __future__ import annotations

import copy
import functools
import random
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from avalanche.benchmarks.scenarios import (
    benchmark_from_datasets,
    with_classes_timeline,
    with_task_labels,
)
from avalanche.benchmarks.scenarios.generic_scenario import CLScenario
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin, MIRPlugin
from avalanche.training.templates.base import PositionalArgumentsDeprecatedWarning
from sklearn.datasets import load_digits

import lifelong.methods  # noqa: F401  (registers the baselines)
from lifelong.agents import (
    ALL_SCENARIOS,
    AgentContext,
    StreamFacts,
    UnknownAgentError,
    UnsupportedScenarioError,
    available_agents,
    get_agent,
    make_agent,
)
from lifelong.budget import memory_bytes_by_kind
from lifelong.config import TrainConfig
from lifelong.evaluation import AccuracyMatrixMetric, accuracy_matrix_from_evaluator
from lifelong.methods import (
    BASELINE_HPARAMS,
    SynapticIntelligencePenalty,
    quiet_library_warnings,
    stored_samples,
)
from lifelong.methods.avalanche_fixes import NCMClassifierBeforeMeans, herding_order
from lifelong.methods.expert_gate import Autoencoder, ExpertGateNetwork, relatedness
from lifelong.methods.gdumb import GDumbHParams, gdumb_learning_rate
from lifelong.models import build_model
from streams import Scenario

N_TASKS = 3
SPLIT_CLASSES = ((0, 1), (2, 3), (4, 5))
# Five epochs: enough for every agent to learn each task (an epoch is 25 to 42 steps here).
TRAIN = TrainConfig(
    epochs=5, batch_size=10, eval_batch_size=256, lr=0.1, memory_size=60, hidden=(32, 32)
)
AGENTS = sorted(a for a, entry in available_agents().items() if entry.scenarios & ALL_SCENARIOS)
RUN_PAIRS = [(a, s) for a in AGENTS for s in ALL_SCENARIOS if s in get_agent(a).scenarios]
REFUSED = [(a, s) for a in AGENTS for s in ALL_SCENARIOS if s not in get_agent(a).scenarios]
SLOW_PAIRS = {("mer", Scenario.DOMAIN_INCREMENTAL), ("mer", Scenario.TASK_INCREMENTAL)}
"""Runs of 30 s or more on 2 cores (MER takes 100 single-sample SGD steps per incoming batch):
the slow tier runs them. The fast tier still runs MER, on its class-incremental stream."""


def _tiered(pairs: list[tuple[str, Scenario]]) -> list:
    """``pairs`` as test parameters, those in ``SLOW_PAIRS`` marked slow."""
    return [
        pytest.param(agent, scenario, marks=pytest.mark.slow)
        if (agent, scenario) in SLOW_PAIRS
        else (agent, scenario)
        for agent, scenario in pairs
    ]


PAIRS = _tiered(RUN_PAIRS)
MEMORY_PAIRS = _tiered([(a, s) for a, s in RUN_PAIRS if get_agent(a).uses_memory])
BASELINES = [a for a in AGENTS if get_agent(a).factory.__module__.startswith("lifelong.methods.")]


# --- Streams -------------------------------------------------------------------------------


@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    n_train = int(0.7 * len(y))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _dataset(x: torch.Tensor, y: torch.Tensor, task: int):
    return _make_taskaware_tensor_classification_dataset(x, y, task_labels=task, targets=y.tolist())


def build_stream(scenario: Scenario) -> tuple[CLScenario, StreamFacts]:
    """A 3-task digits stream of the given scenario, with task labels attached.

    Class- and task-incremental: classes (0, 1), (2, 3), (4, 5); task labels 0 for all, or
    the task index. Domain-incremental: all ten classes, a disjoint third of the data per
    task, pixels permuted by a fixed permutation per task (the first task unpermuted).
    """
    x_train, y_train, x_test, y_test = _digits()
    train, test = [], []
    if scenario is Scenario.DOMAIN_INCREMENTAL:
        generator = torch.Generator().manual_seed(1)
        for t in range(N_TASKS):
            pixels = torch.arange(64) if t == 0 else torch.randperm(64, generator=generator)
            tr = slice(t * len(y_train) // N_TASKS, (t + 1) * len(y_train) // N_TASKS)
            te = slice(t * len(y_test) // N_TASKS, (t + 1) * len(y_test) // N_TASKS)
            train.append(_dataset(x_train[tr][:, pixels], y_train[tr], 0))
            test.append(_dataset(x_test[te][:, pixels], y_test[te], 0))
        n_classes = 10
    else:
        for t, classes in enumerate(SPLIT_CLASSES):
            label = t if scenario is Scenario.TASK_INCREMENTAL else 0
            in_train = torch.isin(y_train, torch.tensor(classes))
            in_test = torch.isin(y_test, torch.tensor(classes))
            train.append(_dataset(x_train[in_train], y_train[in_train], label))
            test.append(_dataset(x_test[in_test], y_test[in_test], label))
        n_classes = 6
    benchmark = with_task_labels(
        with_classes_timeline(benchmark_from_datasets(train=train, test=test))
    )
    facts = StreamFacts(scenario=scenario, n_tasks=N_TASKS, n_classes=n_classes, input_shape=(64,))
    return benchmark, facts


def chance(scenario: Scenario) -> float:
    """Accuracy of guessing among a task's classes."""
    return 0.1 if scenario is Scenario.DOMAIN_INCREMENTAL else 0.5


# --- Running an agent ------------------------------------------------------------------------


class MemoryProbe(SupervisedPlugin):
    """Records how many samples the strategy holds at every experience boundary."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: list[int | None] = []

    def _look(self, strategy) -> None:
        self.counts.append(stored_samples(strategy))

    def before_training_exp(self, strategy, **kwargs) -> None:
        self._look(strategy)

    def after_training_exp(self, strategy, **kwargs) -> None:
        self._look(strategy)

    def after_training(self, strategy, **kwargs) -> None:
        self._look(strategy)


@dataclass(frozen=True)
class Outcome:
    matrix: np.ndarray
    """R[i][j]: accuracy on task j after training tasks 1..i; row 0 before any training."""
    stored: tuple[int | None, ...]
    """``stored_samples`` at every experience boundary."""
    shown_deprecations: tuple[str, ...]
    """Deprecation notices Python's default warning filters would have shown in training."""


def make_context(
    scenario: Scenario, facts: StreamFacts, seed: int = 0, train: TrainConfig = TRAIN
) -> tuple[AgentContext, EvaluationPlugin, MemoryProbe]:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    model = build_model(scenario, facts.input_shape, facts.n_classes, train.hidden)
    evaluator = EvaluationPlugin(AccuracyMatrixMetric(), loggers=[])
    probe = MemoryProbe()
    context = AgentContext(
        model=model,
        train=train,
        stream=facts,
        device=torch.device("cpu"),
        evaluator=evaluator,
        plugins=(probe,),
        seed=seed,
    )
    return context, evaluator, probe


def run_agent(agent: str, scenario: Scenario, seed: int = 0) -> Outcome:
    benchmark, facts = build_stream(scenario)
    context, evaluator, probe = make_context(scenario, facts, seed)
    with warnings.catch_warnings(record=True) as caught:
        # What a user's terminal would show: Python's default filters, not pytest's.
        warnings.resetwarnings()
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        strategy = make_agent(agent, context)
        strategy.train(benchmark.train_stream, eval_streams=[benchmark.test_stream])
    deprecations = tuple(
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if issubclass(w.category, (DeprecationWarning, PositionalArgumentsDeprecatedWarning))
    )
    matrix = accuracy_matrix_from_evaluator(evaluator, facts.n_tasks)
    return Outcome(matrix, tuple(probe.counts), deprecations)


@functools.cache
def outcome(agent: str, scenario: Scenario) -> Outcome:
    """One training run per agent and scenario, shared by the tests that inspect it."""
    return run_agent(agent, scenario)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny MLPs gain nothing from intra-op threads, and on a loaded 2-core machine the
    second thread's spin-waiting made single runs up to 8x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- The contract ----------------------------------------------------------------------------


@pytest.mark.parametrize(("agent", "scenario"), PAIRS)
def test_accuracy_matrix_is_complete_and_finite(agent, scenario):
    matrix = outcome(agent, scenario).matrix
    assert matrix.shape == (N_TASKS + 1, N_TASKS)
    assert np.isfinite(matrix).all()
    assert ((matrix >= 0) & (matrix <= 1)).all()


@pytest.mark.parametrize(("agent", "scenario"), PAIRS)
def test_learns_each_task_it_trains(agent, scenario):
    matrix = outcome(agent, scenario).matrix
    just_trained = [matrix[t + 1, t] for t in range(N_TASKS)]
    assert just_trained[-1] > chance(scenario) + 0.2, just_trained
    assert min(just_trained) > chance(scenario), just_trained


@pytest.mark.parametrize("agent", AGENTS)
def test_same_seed_gives_identical_accuracies(agent):
    scenario = Scenario.CLASS_INCREMENTAL
    if scenario not in get_agent(agent).scenarios:
        scenario = min(get_agent(agent).scenarios)
    again = run_agent(agent, scenario)
    np.testing.assert_array_equal(again.matrix, outcome(agent, scenario).matrix)


@pytest.mark.parametrize(("agent", "scenario"), MEMORY_PAIRS)
def test_memory_agents_stay_within_the_budget(agent, scenario):
    counts = outcome(agent, scenario).stored
    assert None not in counts, (
        f"agent {agent!r} declares uses_memory but exposes no memory to count; "
        "give its strategy a stored_samples() method"
    )
    assert max(counts) <= TRAIN.memory_size, counts
    assert max(counts) > 0, "the memory was never filled"


@pytest.mark.parametrize("agent", BASELINES)
def test_baselines_show_no_deprecation_warnings(agent):
    scenario = min(get_agent(agent).scenarios)
    assert outcome(agent, scenario).shown_deprecations == ()


@pytest.mark.parametrize(("agent", "scenario"), REFUSED)
def test_unsupported_scenario_is_refused_in_one_line(agent, scenario):
    _, facts = build_stream(scenario)
    context, _, _ = make_context(scenario, facts)
    with pytest.raises(UnsupportedScenarioError) as error:
        make_agent(agent, context)
    message = str(error.value)
    assert "\n" not in message
    assert agent in message and scenario.value in message


def test_unknown_agent_lists_the_valid_names():
    _, facts = build_stream(Scenario.CLASS_INCREMENTAL)
    context, _, _ = make_context(Scenario.CLASS_INCREMENTAL, facts)
    with pytest.raises(UnknownAgentError) as error:
        make_agent("no-such-agent", context)
    message = str(error.value)
    assert "no-such-agent" in message
    assert all(name in message for name in AGENTS)


@pytest.mark.parametrize("agent", ["gem", "agem"])
def test_per_task_memory_needs_a_sample_per_task(agent):
    _, facts = build_stream(Scenario.CLASS_INCREMENTAL)
    small = replace(TRAIN, memory_size=N_TASKS - 1)
    context, _, _ = make_context(Scenario.CLASS_INCREMENTAL, facts, train=small)
    with pytest.raises(ValueError, match=rf"memory_size={N_TASKS - 1}.*n_tasks={N_TASKS}"):
        make_agent(agent, context)


@pytest.mark.parametrize("agent", [a for a in BASELINES if get_agent(a).uses_memory])
def test_memory_baselines_refuse_an_empty_memory(agent):
    scenario = min(get_agent(agent).scenarios)
    _, facts = build_stream(scenario)
    context, _, _ = make_context(scenario, facts, train=replace(TRAIN, memory_size=0))
    with pytest.raises(ValueError, match="memory_size"):
        make_agent(agent, context)


def test_lamaml_starts_from_the_runs_initial_weights():
    _, facts = build_stream(Scenario.CLASS_INCREMENTAL)
    context, _, _ = make_context(Scenario.CLASS_INCREMENTAL, facts)
    before = {k: v.clone() for k, v in context.model.state_dict().items()}
    make_agent("lamaml", context)
    after = context.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def train_first_experiences(agent: str, n: int):
    benchmark, facts = build_stream(Scenario.CLASS_INCREMENTAL)
    context, _, _ = make_context(Scenario.CLASS_INCREMENTAL, facts)
    strategy = make_agent(agent, context)
    strategy.train(list(benchmark.train_stream)[:n], eval_streams=[])
    return strategy


def test_synaptic_intelligence_penalises_moving_important_weights():
    strategy = train_first_experiences("si", 1)
    (si,) = [p for p in strategy.plugins if isinstance(p, SynapticIntelligencePenalty)]
    importance = torch.cat([v.flatten() for v in si.importance.values()])
    assert importance.sum() > 0

    def penalty() -> float:
        strategy.loss = torch.zeros(())
        si.before_backward(strategy)
        return float(strategy.loss)

    assert penalty() == 0.0  # the weights sit at the anchor after the task
    with torch.no_grad():
        for param in strategy.model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    assert penalty() > 0.0


def test_mir_retrieves_from_the_task_it_just_finished():
    strategy = train_first_experiences("mir", 2)
    (mir,) = [p for p in strategy.plugins if isinstance(p, MIRPlugin)]
    _, labels, _ = next(mir.replay_loader)
    assert set(labels.tolist()) & set(SPLIT_CLASSES[1])
    assert set(labels.tolist()) <= set(SPLIT_CLASSES[0] + SPLIT_CLASSES[1])


def test_every_hyperparameter_set_belongs_to_a_registered_agent():
    assert set(BASELINE_HPARAMS) <= set(AGENTS)


def test_quiet_library_warnings_hides_only_avalanche_deprecations():
    filters_before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_library_warnings():
            for category, module in [
                (DeprecationWarning, "avalanche.training.plugins.replay"),
                (FutureWarning, "avalanche.benchmarks"),
                (DeprecationWarning, "user_code"),
                (UserWarning, "avalanche.training.plugins.evaluation"),
                (RuntimeWarning, "torch.nn"),
            ]:
                warnings.warn_explicit("notice", category, "file.py", 1, module=module)
    shown = [w.category for w in caught]
    assert shown == [DeprecationWarning, UserWarning, RuntimeWarning]
    assert warnings.filters == filters_before


# --- GDumb and iCaRL -------------------------------------------------------------------------


def test_gdumb_learning_rate_is_the_authors_warm_up_then_cosine_with_restarts():
    hp = GDumbHParams()
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=hp.max_lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=1, T_mult=2, eta_min=hp.min_lr
    )
    expected = []
    for epoch in range(hp.passes):  # the loop of the authors' main.py
        if epoch == 0:
            expected.append(hp.max_lr * 0.1)
        elif epoch == 1:
            expected.append(hp.max_lr)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # step() without optimizer.step(): on purpose
                scheduler.step()
            expected.append(optimizer.param_groups[0]["lr"])
    got = [gdumb_learning_rate(epoch, hp.max_lr, hp.min_lr) for epoch in range(hp.passes)]
    assert got == pytest.approx(expected, rel=1e-12)


def test_gdumb_retrains_from_the_initial_weights_on_its_balanced_memory_alone():
    benchmark, facts = build_stream(Scenario.CLASS_INCREMENTAL)
    context, _, _ = make_context(Scenario.CLASS_INCREMENTAL, facts)
    initial = {k: v.clone() for k, v in context.model.state_dict().items()}
    strategy = make_agent("gdumb", context)
    starts: list[tuple[bool, int]] = []

    class FirstEpoch(SupervisedPlugin):
        def before_training_epoch(self, strategy, **kwargs) -> None:
            if strategy.clock.train_exp_epochs == 0:
                weights = strategy.model.state_dict()
                fresh = all(torch.equal(weights[k], initial[k]) for k in initial)
                starts.append((fresh, len(strategy.adapted_dataset)))

    strategy.plugins.append(FirstEpoch())
    class_counts = []
    for experience in benchmark.train_stream:
        strategy.train(experience)
        memory = next(p for p in strategy.plugins if hasattr(p, "init_model")).storage_policy
        class_counts.append(sorted(np.bincount(np.asarray(memory.buffer.targets)).tolist()))
    assert starts == [(True, TRAIN.memory_size)] * N_TASKS
    assert class_counts == [[30, 30], [15] * 4, [10] * 6]
    records = memory_bytes_by_kind(strategy, facts)["records"]
    assert records == sum(p.numel() * 4 for p in context.model.parameters())


def test_herding_chooses_the_sample_nearest_the_mean_first_and_any_prefix_is_herded():
    # Normalised: a = (1, 0), b = (0, 1), c = (0.71, 0.71); their mean is (0.57, 0.57).
    # c is nearest it; then c+a and c+b are equally far, and the first index wins the tie.
    features = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]])
    assert herding_order(features, 3).tolist() == [2, 0, 1]
    assert herding_order(features, 1).tolist() == [2]
    many = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(herding_order(many, 7), herding_order(many, 20)[:7])


def test_icarl_keeps_memory_size_over_the_classes_seen_per_class_and_never_more():
    benchmark, facts = build_stream(Scenario.CLASS_INCREMENTAL)
    small = replace(TRAIN, memory_size=10, epochs=1)
    context, _, _ = make_context(Scenario.CLASS_INCREMENTAL, facts, train=small)
    strategy = make_agent("icarl", context)
    per_class = []
    for experience in benchmark.train_stream:
        strategy.train(experience)
        per_class.append([len(labels) for labels in strategy._icarl.y_memory])
    # 10 // 2, 10 // 4, 10 // 6; Avalanche's own plugin keeps ceil(10 / 6) = 2 each: 12.
    assert per_class == [[5, 5], [2, 2, 2, 2], [1] * 6]
    assert stored_samples(strategy) == 6


def test_icarl_answers_with_the_linear_classifier_until_it_has_class_means():
    linear = torch.nn.Linear(4, 3)
    ncm = NCMClassifierBeforeMeans(linear)
    x = torch.randn(5, 4)
    assert torch.equal(ncm(x), linear(x))
    ncm.replace_class_means_dict({0: torch.ones(4), 1: -torch.ones(4), 2: torch.zeros(4)})
    assert ncm(x).shape == (5, 3) and not torch.equal(ncm(x), linear(x))


# --- Expert Gate -----------------------------------------------------------------------------


def test_relatedness_is_the_papers_formula():
    assert relatedness(own_error=2.0, other_error=2.0) == 1.0
    assert relatedness(own_error=2.0, other_error=3.0) == 0.5
    assert relatedness(own_error=2.0, other_error=6.0) == -1.0


class FixedErrors(Autoencoder):
    """An autoencoder stand-in whose error on x is ``x[:, 0]`` or ``1 - x[:, 0]``."""

    def __init__(self, flipped: bool):
        super().__init__(2, 1)
        self.flipped = flipped

    def errors(self, x):
        return 1 - x[:, 0] if self.flipped else x[:, 0]


class Constant(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def test_the_gate_sends_each_input_to_the_expert_that_reconstructs_it_best():
    net = ExpertGateNetwork(Constant([1.0, 0.0]), temperature=2.0)
    net.experts.append(Constant([0.0, 1.0]))
    net.autoencoders.extend([FixedErrors(flipped=False), FixedErrors(flipped=True)])
    x = torch.tensor([[0.1, 0.0], [0.9, 0.0], [0.3, 5.0]])
    net.eval()
    assert net(x).argmax(dim=1).tolist() == [0, 1, 0]
    net.train()
    net.current = 1
    assert net(x).argmax(dim=1).tolist() == [1, 1, 1]


def test_expert_gate_adds_an_expert_per_experience_and_never_changes_an_earlier_one():
    benchmark, facts = build_stream(Scenario.CLASS_INCREMENTAL)
    context, _, _ = make_context(Scenario.CLASS_INCREMENTAL, facts)
    strategy = make_agent("expert-gate", context)
    net = strategy.model
    snapshots = []
    for experience in benchmark.train_stream:
        strategy.train(experience)
        snapshots.append(copy.deepcopy(net.experts[net.current].state_dict()))
    assert len(net.experts) == len(net.autoencoders) == N_TASKS
    assert net.experts[0] is context.model
    for index, snapshot in enumerate(snapshots):
        after = net.experts[index].state_dict()
        assert all(torch.equal(after[k], snapshot[k]) for k in snapshot)
    chosen = next(p for p in strategy.plugins if hasattr(p, "chosen")).chosen
    assert chosen[0] is None and all(0 <= c < i + 1 for i, c in enumerate(chosen[1:]))
    expert = sum(p.numel() * 4 for p in context.model.parameters())
    autoencoder = (2 * 64 * 100 + 100 + 64) * 4
    records = memory_bytes_by_kind(strategy, facts)["records"]
    assert records == (N_TASKS - 1) * expert + N_TASKS * autoencoder


def test_expert_gate_is_refused_when_its_networks_exceed_the_byte_budget():
    _, facts = build_stream(Scenario.CLASS_INCREMENTAL)
    tight = replace(TRAIN, memory_bytes=100_000)
    context, _, _ = make_context(Scenario.CLASS_INCREMENTAL, facts, train=tight)
    with pytest.raises(ValueError, match=r"expert-gate.*over --memory-bytes 100000"):
        make_agent("expert-gate", context)
