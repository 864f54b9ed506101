"""The evaluator and the accuracy matrix read from it, checked against Avalanche's own metrics.

Real runs use scikit-learn's 8x8 digits split into 3 tasks of 2 classes (a second or so each).
"""

# R is the papers' name for the accuracy matrix.
# ruff: noqa: N803, N806

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from avalanche.benchmarks.scenarios import (
    benchmark_from_datasets,
    with_classes_timeline,
    with_task_labels,
)
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
from avalanche.training.supervised import Naive
from sklearn.datasets import load_digits

from lifelong.evaluation import (
    AccuracyMatrixMetric,
    accuracy_matrix_from_evaluator,
    avalanche_stream_metrics,
    make_evaluator,
)
from lifelong.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
)

N_TASKS = 3


def digits_benchmark(test_sizes, task_incremental=False):
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    train, test = [], []
    for t in range(N_TASKS):
        idx = torch.nonzero((y == 2 * t) | (y == 2 * t + 1)).flatten()
        te, tr = idx[: test_sizes[t]], idx[test_sizes[t] :]
        label = t if task_incremental else 0
        for part, store in ((tr, train), (te, test)):
            store.append(
                _make_taskaware_tensor_classification_dataset(
                    x[part], y[part], task_labels=label, targets=y[part]
                )
            )
    return with_task_labels(with_classes_timeline(benchmark_from_datasets(train=train, test=test)))


def run_naive(bm, per_experience=False):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    evaluator = make_evaluator()
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=10,
        train_epochs=1,
        eval_mb_size=256,
        evaluator=evaluator,
        eval_every=0,
    )
    if per_experience:
        for exp in bm.train_stream:
            strategy.train(exp, eval_streams=[bm.test_stream])
    else:
        strategy.train(bm.train_stream, eval_streams=[bm.test_stream])
    return evaluator


@pytest.fixture(scope="module")
def equal_run():
    """Class-incremental, equal test sizes: Avalanche's stream accuracy equals ACC."""
    return run_naive(digits_benchmark([60, 60, 60]))


@pytest.fixture(scope="module")
def task_incremental_run():
    """Task label = task index (keys Task00t/Exp00t) and unequal test sizes."""
    return run_naive(digits_benchmark([40, 60, 80], task_incremental=True))


def assert_agrees_with_avalanche(R, ava):
    assert backward_transfer(R) == pytest.approx(ava["avalanche_bwt"], abs=1e-6)
    assert forward_transfer(R) == pytest.approx(ava["avalanche_forward_transfer"], abs=1e-6)
    # Avalanche's "forgetting" is -BWT; ours (Chaudhry's max-based) can only be larger.
    assert -backward_transfer(R) == pytest.approx(ava["avalanche_stream_forgetting"], abs=1e-6)
    assert forgetting(R) >= ava["avalanche_stream_forgetting"] - 1e-9


def test_matrix_matches_avalanche_on_a_real_run(equal_run):
    R = accuracy_matrix_from_evaluator(equal_run, N_TASKS)
    assert R.shape == (N_TASKS + 1, N_TASKS)
    # Recorded directly, R equals Avalanche's own per-experience accuracies exactly.
    history = equal_run.get_all_metrics()
    for exp in range(N_TASKS):
        _, column = history[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{exp:03d}"]
        assert R[:, exp].tolist() == list(column)
    assert R.dtype == np.float64
    # The run learns each task: the diagonal beats the untrained row.
    assert np.all(np.diag(R[1:]) > R[0])
    ava = avalanche_stream_metrics(equal_run)
    assert_agrees_with_avalanche(R, ava)
    # Equal test sizes: the pooled stream accuracy is the unweighted mean of the final row.
    assert average_accuracy(R) == pytest.approx(ava["avalanche_stream_accuracy"], abs=1e-6)


def test_resource_metrics_are_reported(equal_run):
    ava = avalanche_stream_metrics(equal_run)
    assert ava["avalanche_peak_ram_mb"] > 10.0
    assert ava["avalanche_train_time_s"] > 0.0
    assert ava["avalanche_eval_time_s"] > 0.0
    assert all(type(v) is float for v in ava.values())


def test_task_labelled_keys_and_size_weighted_stream_accuracy(task_incremental_run):
    keys = task_incremental_run.get_all_metrics()
    assert "Top1_Acc_Exp/eval_phase/test_stream/Task002/Exp002" in keys
    R = accuracy_matrix_from_evaluator(task_incremental_run, N_TASKS)
    ava = avalanche_stream_metrics(task_incremental_run)
    assert_agrees_with_avalanche(R, ava)
    # Avalanche pools test samples, so experiences weigh by their test-set size.
    sizes = np.array([40, 60, 80])
    pooled = float(R[-1] @ sizes / sizes.sum())
    assert ava["avalanche_stream_accuracy"] == pytest.approx(pooled, abs=1e-6)


def test_training_once_per_experience_is_rejected_as_a_wrong_schedule():
    evaluator = run_naive(digits_benchmark([60, 60, 60]), per_experience=True)
    with pytest.raises(ValueError, match=r"evaluated 6 times, expected 4.*schedule was wrong"):
        accuracy_matrix_from_evaluator(evaluator, N_TASKS)


def test_wrong_number_of_tasks_is_named(equal_run):
    with pytest.raises(ValueError, match=r"covered experiences \[0, 1, 2\], expected 0..3"):
        accuracy_matrix_from_evaluator(equal_run, 4)
    with pytest.raises(ValueError, match=r"covered experiences \[0, 1, 2\], expected 0..1"):
        accuracy_matrix_from_evaluator(equal_run, 2, stream_name="test_stream")
    with pytest.raises(ValueError, match=r"n_tasks is 0"):
        accuracy_matrix_from_evaluator(equal_run, 0)
    with pytest.raises(ValueError, match=r"valid_stream was evaluated 0 times"):
        accuracy_matrix_from_evaluator(equal_run, N_TASKS, stream_name="valid_stream")


# --- parsing, on stand-in evaluators ---------------------------------------------------------


class FakeEvaluator:
    def __init__(self, history):
        self.history = history

    def get_all_metrics(self):
        return self.history


def eval_batch(recorder, stream, exp, predicted, labels):
    """Feed the recorder one mini-batch whose outputs' argmax is ``predicted``."""
    outputs = torch.nn.functional.one_hot(torch.tensor(predicted), 3).float()
    origin = SimpleNamespace(name=stream.removesuffix("_stream"))
    experience = SimpleNamespace(origin_stream=origin, current_experience=exp)
    recorder.after_eval_iteration(
        SimpleNamespace(experience=experience, mb_output=outputs, mb_y=torch.tensor(labels))
    )


def test_the_matrix_metric_counts_by_experience_whatever_the_order_and_keeps_streams_apart():
    recorder = AccuracyMatrixMetric()
    for row in range(3):
        recorder.before_eval(None)
        eval_batch(recorder, "test_stream", 1, [0, 1], [0, 0 if row == 1 else 1])
        eval_batch(recorder, "test_stream", 0, [2, 2, 2, 2], [2, 0, 0, 0])  # 1 of 4
        eval_batch(recorder, "test_stream", 0, [1, 1, 1, 1], [1, 1, 1, 1])  # then 5 of 8
        eval_batch(recorder, "valid_stream", 1, [0], [1])
        eval_batch(recorder, "valid_stream", 0, [0], [0])
        recorder.after_eval(None)
    evaluator = SimpleNamespace(metrics=[recorder])
    R = accuracy_matrix_from_evaluator(evaluator, 2)  # type: ignore[arg-type]
    np.testing.assert_array_equal(R, [[5 / 8, 1.0], [5 / 8, 0.5], [5 / 8, 1.0]])
    valid = accuracy_matrix_from_evaluator(evaluator, 2, stream_name="valid_stream")  # type: ignore[arg-type]
    np.testing.assert_array_equal(valid, [[1.0, 0.0]] * 3)


def test_an_evaluator_without_the_matrix_metric_is_named():
    with pytest.raises(
        ValueError, match="has no AccuracyMatrixMetric; build it with make_evaluator"
    ):
        accuracy_matrix_from_evaluator(SimpleNamespace(metrics=[]), 1)  # type: ignore[arg-type]


def test_missing_stream_metrics_are_named():
    history = {
        "Top1_Acc_Stream/eval_phase/test_stream/Task000": ([0, 1], [0.1, 0.8]),
        "StreamBWT/eval_phase/test_stream": ([0, 1], [0.0, 0.0]),
    }
    with pytest.raises(ValueError, match=r"StreamForwardTransfer.*forward_transfer_metrics"):
        avalanche_stream_metrics(FakeEvaluator(history))


def test_optional_metrics_are_left_out_when_not_measured():
    history = {
        "Top1_Acc_Stream/eval_phase/test_stream/Task000": ([0, 1], [0.1, 0.8]),
        "StreamBWT/eval_phase/test_stream": ([0, 1], [0.0, 0.0]),
        "StreamForwardTransfer/eval_phase/test_stream": ([0, 1], [0.0, 0.0]),
        "StreamForgetting/eval_phase/test_stream": ([0, 1], [0.0, 0.0]),
        "MaxRAMUsage_Epoch/train_phase/train_stream/Task000": ([1], [0.0]),
    }
    ava = avalanche_stream_metrics(FakeEvaluator(history))
    assert ava == {
        "avalanche_stream_accuracy": 0.8,
        "avalanche_bwt": 0.0,
        "avalanche_forward_transfer": 0.0,
        "avalanche_stream_forgetting": 0.0,
    }


def test_an_empty_or_foreign_evaluator_is_rejected():
    with pytest.raises(ValueError, match="holds no metrics"):
        avalanche_stream_metrics(FakeEvaluator({}))
    with pytest.raises(TypeError, match="not an Avalanche EvaluationPlugin"):
        avalanche_stream_metrics(object())


def test_make_evaluator_is_quiet_and_checks_its_interval():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_evaluator()
    with pytest.raises(ValueError, match="ram_interval_s is 0"):
        make_evaluator(ram_interval_s=0)
