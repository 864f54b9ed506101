"""The validation split: held-out training data replaces the test split."""

import pytest
import torch

from streams import StreamError, StreamSpec, make_stream, tensor_stream, with_validation_split


def _tensors(dataset):
    xs, ys = zip(*[(dataset[i][0], dataset[i][1]) for i in range(len(dataset))], strict=True)
    return torch.stack(xs), torch.tensor(ys)


def _rows(x):
    return {tuple(row.flatten().tolist()) for row in x}


@pytest.fixture(scope="module")
def digits():
    return make_stream("split-digits", StreamSpec(seed=0))


def test_held_out_and_training_parts_partition_each_task(digits):
    split = with_validation_split(digits, 0.25, seed=0)
    for original, train, held_out in zip(
        digits.benchmark.train_stream,
        split.benchmark.train_stream,
        split.benchmark.test_stream,
        strict=True,
    ):
        x_all, _ = _tensors(original.dataset)
        x_train, y_train = _tensors(train.dataset)
        x_held, y_held = _tensors(held_out.dataset)
        assert len(x_held) == int(0.25 * len(x_all))
        assert len(x_train) + len(x_held) == len(x_all)
        assert not _rows(x_train) & _rows(x_held)
        assert _rows(x_train) | _rows(x_held) == _rows(x_all)
        assert set(y_held.tolist()) <= set(y_train.tolist())


def test_the_test_split_is_never_used(digits):
    split = with_validation_split(digits, 0.2, seed=0)
    test_rows = set().union(*(_rows(_tensors(e.dataset)[0]) for e in digits.benchmark.test_stream))
    for experience in split.benchmark.test_stream:
        assert not _rows(_tensors(experience.dataset)[0]) & test_rows


def test_the_split_keeps_what_the_stream_declares(digits):
    split = with_validation_split(digits, 0.2, seed=0)
    assert (split.name, split.scenario, split.n_classes, split.input_shape) == (
        digits.name,
        digits.scenario,
        digits.n_classes,
        digits.input_shape,
    )
    assert split.task_identities == digits.task_identities
    assert len(split.benchmark.test_stream) == len(digits.benchmark.test_stream)


def test_the_seed_fixes_the_draw(digits):
    def held_out(seed):
        split = with_validation_split(digits, 0.2, seed=seed)
        return _tensors(split.benchmark.test_stream[0].dataset)[0]

    assert torch.equal(held_out(0), held_out(0))
    assert not torch.equal(held_out(0), held_out(1))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_a_fraction_outside_the_open_interval_is_refused(digits, fraction):
    with pytest.raises(StreamError, match="strictly between 0 and 1"):
        with_validation_split(digits, fraction, seed=0)


def test_a_task_too_small_to_split_is_refused():
    x = torch.zeros(2, 3)
    tiny = tensor_stream(
        "tiny", "class-incremental", [(x, torch.tensor([0, 1]))], [(x, torch.tensor([0, 1]))]
    )
    with pytest.raises(StreamError, match="too few to hold out"):
        with_validation_split(tiny, 0.2, seed=0)
