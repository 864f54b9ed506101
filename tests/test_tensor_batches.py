"""Tensor-served training batches: the same batches, random numbers and results as Avalanche's."""

from dataclasses import replace

import pytest
import torch
from avalanche.benchmarks.utils import _make_taskaware_classification_dataset
from avalanche.benchmarks.utils.data_loader import (
    MultiDatasetDataLoader,
    ReplayDataLoader,
    TaskBalancedDataLoader,
)
from avalanche.training.utils import cycle
from torch.utils.data import DataLoader, Dataset

from lifelong import RunConfig, StreamConfig, TrainConfig, run
from lifelong.run import resolve_agents
from lifelong.tensor_batches import TensorBatches, is_servable, served_replay
from streams import make_stream
from streams.base import StreamSpec


def _datasets(scenario: str = "class-incremental"):
    spec = StreamSpec(n_tasks=3, options={"scenario": scenario})
    stream = make_stream("split-digits", spec)
    return [experience.dataset.train() for experience in stream.benchmark.train_stream]


def _loaders() -> dict[str, MultiDatasetDataLoader]:
    # The loaders Avalanche's strategies and ReplayPlugin make, on real streams: one task
    # label (class-incremental) and several (task-incremental, batches balanced by task).
    digits = _datasets()
    by_task = _datasets("task-incremental")
    several_tasks = by_task[0].concat(by_task[1])
    return {
        "task-balanced": TaskBalancedDataLoader(
            digits[0], oversample_small_groups=True, batch_size=10, shuffle=True
        ),
        "task-balanced, two tasks": TaskBalancedDataLoader(
            several_tasks, oversample_small_groups=True, batch_size=10, shuffle=True
        ),
        "replay": ReplayDataLoader(
            digits[2],
            digits[0].subset(range(0, 100, 3)).concat(digits[1].subset(range(40))),
            oversample_small_tasks=True,
            batch_size=10,
            batch_size_mem=7,
            shuffle=True,
        ),
    }


class _Strategy:
    def __init__(self, loader: MultiDatasetDataLoader, replay_loader=None) -> None:
        self.dataloader = loader
        self.train_epochs = 1
        self.plugins: list = []
        self.replay_loader = replay_loader


def _epochs(loader: MultiDatasetDataLoader, n_epochs: int = 2) -> tuple[list, torch.Tensor]:
    torch.manual_seed(7)
    batches = [batch for _ in range(n_epochs) for batch in loader]
    return batches, torch.get_rng_state()


@pytest.mark.parametrize("kind", ["task-balanced", "task-balanced, two tasks", "replay"])
def test_served_batches_are_avalanches_bit_for_bit_with_the_same_random_draws(kind):
    expected, expected_state = _epochs(_loaders()[kind])
    loader = _loaders()[kind]
    TensorBatches().before_training_exp(_Strategy(loader))
    served, state = _epochs(loader)
    assert vars(loader)["_make_pytorch_loader"].columns is not None, "not served"

    assert len(served) == len(expected) > 10
    _assert_identical_batches(served, expected)
    assert torch.equal(state, expected_state)


def _assert_identical_batches(served: list, expected: list) -> None:
    """Batch by batch: inputs, labels and task labels of the same dtype and values."""
    for ours, theirs in zip(served, expected, strict=True):
        assert len(ours) == len(theirs) == 3
        for column, reference in zip(ours, theirs, strict=True):
            assert column.dtype == reference.dtype
            assert torch.equal(column, reference)


def _buffer_replay(buffer_size: int = 60):
    """The replay loader DER and ER-ACE make over their buffer, on a real stream's samples."""
    buffer = _datasets()[0].subset(range(buffer_size))
    return cycle(DataLoader(buffer, batch_size=7, shuffle=True, drop_last=True))


def test_a_buffers_replay_batches_are_avalanches_bit_for_bit_with_the_same_random_draws():
    torch.manual_seed(3)
    replay = _buffer_replay()
    expected = [next(replay) for _ in range(25)]  # past the buffer's end: a second pass
    expected_state = torch.get_rng_state()
    torch.manual_seed(3)
    strategy = _Strategy(MultiDatasetDataLoader([_datasets()[1]], [10]), _buffer_replay())
    original = strategy.replay_loader
    TensorBatches().before_training_exp(strategy)
    assert strategy.replay_loader is not original, "not served"
    served = [next(strategy.replay_loader) for _ in range(25)]
    _assert_identical_batches(served, expected)
    assert torch.equal(torch.get_rng_state(), expected_state)


def test_a_replay_loader_already_started_or_larger_than_its_draws_is_kept():
    loader = MultiDatasetDataLoader([_datasets()[1]], [10])
    started = _buffer_replay()
    next(started)
    strategy = _Strategy(loader, started)
    TensorBatches().before_training_exp(strategy)
    assert strategy.replay_loader is started
    # One iteration of 7 draws from a buffer of 60: reading the buffer would cost more.
    assert served_replay(_buffer_replay(), iterations=1) is None
    assert served_replay(_buffer_replay(), iterations=9) is not None


def test_a_collate_that_is_not_a_list_of_columns_falls_back_to_avalanches_batches():
    def as_dict(samples):
        return {"x": torch.stack([sample[0] for sample in samples])}

    digits = _datasets()
    expected, _ = _epochs(MultiDatasetDataLoader([digits[0]], [10], collate_fn=as_dict))
    loader = MultiDatasetDataLoader([digits[0]], [10], collate_fn=as_dict)
    TensorBatches().before_training_exp(_Strategy(loader))
    served, _ = _epochs(loader)
    assert vars(loader)["_make_pytorch_loader"].columns is None
    assert [b["x"].tolist() for b in served] == [b["x"].tolist() for b in expected]


def test_a_loader_with_worker_processes_is_left_as_it_is():
    digits = _datasets()
    loader = TaskBalancedDataLoader(digits[0], batch_size=10, num_workers=2)
    assert not is_servable(loader)
    TensorBatches().before_training_exp(_Strategy(loader))
    assert "_make_pytorch_loader" not in vars(loader)


class _Shifted(Dataset):
    """A data set with its own transform, as torchvision's keep theirs."""

    def __init__(self) -> None:
        self.x, self.y = torch.zeros(6, 2), torch.arange(6) % 2
        self.transform = lambda x: x + 1

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int):
        return self.transform(self.x[index]), int(self.y[index])

    @property
    def targets(self) -> list[int]:
        return self.y.tolist()


def test_a_wrapped_data_set_with_its_own_transform_is_left_as_it_is():
    wrapped = _make_taskaware_classification_dataset(_Shifted(), task_labels=0)
    assert not is_servable(MultiDatasetDataLoader([wrapped], [2]))


def test_a_data_set_with_a_transform_is_left_as_it_is():
    digits = _datasets()
    shifted = digits[0].replace_current_transform_group(lambda x: x + 1)
    plain, transformed = (MultiDatasetDataLoader([d], [10]) for d in (digits[0], shifted))
    # The transform really reaches this loader's batches (a task split would drop it).
    assert torch.equal(next(iter(transformed))[0], next(iter(plain))[0] + 1)
    assert is_servable(plain)
    assert not is_servable(transformed)


def test_every_agent_gets_the_same_results_with_and_without_served_batches(
    tmp_path, monkeypatch
):
    stream = make_stream("split-digits", StreamSpec(n_tasks=2))
    # MER is left out for time: a step per replayed sample makes it 5-50x slower than the
    # others here. Its loader is Avalanche's plain task-balanced one, tested above.
    agents = tuple(name for name in resolve_agents(("all",), stream) if name != "mer")
    config = RunConfig(
        stream=StreamConfig(name="split-digits", n_tasks=2),
        agents=agents,
        seeds=(0,),
        train=TrainConfig(epochs=2, memory_size=60),
    )
    served = run(replace(config, out=str(tmp_path / "served")), progress=False)
    monkeypatch.setattr(TensorBatches, "before_training_exp", lambda *args, **kwargs: None)
    indexed = run(replace(config, out=str(tmp_path / "indexed")), progress=False)

    for ours, theirs in zip(served["runs"], indexed["runs"], strict=True):
        assert ours["agent"] == theirs["agent"]
        assert ours["accuracy_matrix"] == theirs["accuracy_matrix"], ours["agent"]
