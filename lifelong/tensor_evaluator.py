"""The tensor evaluator: the accuracy matrix R straight from the test tensors.

Avalanche's ``EvaluationPlugin`` evaluates through its experience loop: a data loader per
test experience, per-sample dataset indexing, and every metric plugin called on every
mini-batch. On a GEM-protocol stream that is most of a job's wall time. This evaluator
computes the same row of R with one batched, inference-mode pass over each test set's
tensors, on the run's device, before training and after every training experience.

Either way a run evaluates, the evaluation draws nothing from the random generators the
training sees: ``isolated_randomness`` puts Python's, NumPy's and torch's states back after
an evaluation (Avalanche's evaluation loaders draw a seed from torch's), so a run's training
is the same whichever evaluator measures it, and so are its accuracy matrices.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward
from torch import nn

from lifelong.metrics import as_accuracy_matrix
from streams import dataset_tensors

__all__ = [
    "IsolatedEvalRandomness",
    "TensorEvaluator",
    "TestSet",
    "isolated_randomness",
    "test_sets_of",
]


@dataclass(frozen=True)
class TestSet:
    """One test experience as tensors.

    Attributes:
        x: Inputs, ``(N, *input_shape)``.
        y: Labels, ``(N,)``.
        task_label: The task label the model is called with (multi-head models).
    """

    x: torch.Tensor
    y: torch.Tensor
    task_label: int


def test_sets_of(test_stream: Sequence[Any], device: torch.device) -> list[TestSet]:
    """The experiences of an Avalanche test stream as tensors on ``device``.

    Args:
        test_stream: The test experiences, in order.
        device: Where evaluation runs.

    Returns:
        One ``TestSet`` per experience.
    """
    sets = []
    for experience in test_stream:
        x, y = dataset_tensors(experience.dataset)
        sets.append(TestSet(x.to(device), y.to(device), int(experience.task_label)))
    return sets


@contextlib.contextmanager
def isolated_randomness() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's (CPU and CUDA) random states on exit."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=_cuda_devices()):
        yield
    random.setstate(python_state)
    np.random.set_state(numpy_state)


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


class TensorEvaluator(SupervisedPlugin):
    """Fills the accuracy matrix R: one row before training, one after every experience.

    Place it where Avalanche's periodic evaluation would sit in the strategy's plugins, so
    that it sees the model after the same callbacks (buffer updates, distillation copies).
    Its test tensors are not pickled with a checkpoint: a resumed job gives them back with
    :meth:`attach`.

    Args:
        test_sets: The test experiences, in order.
        batch_size: Evaluation mini-batch size (does not change results).
    """

    def __init__(self, test_sets: Sequence[TestSet], batch_size: int) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size is {batch_size}; it must be at least 1")
        self.batch_size = batch_size
        self.rows: list[list[float]] = []
        self.eval_time_s = 0.0
        self._test_sets: list[TestSet] = list(test_sets)

    def attach(self, test_sets: Sequence[TestSet]) -> None:
        """Give the evaluator its test sets again, after loading it from a checkpoint."""
        self._test_sets = list(test_sets)

    def matrix(self, n_tasks: int) -> np.ndarray:
        """R, ``(T + 1, T)``.

        Raises:
            ValueError: If the evaluator has not made exactly ``n_tasks + 1`` rows.
        """
        if len(self.rows) != n_tasks + 1:
            raise ValueError(
                f"the tensor evaluator holds {len(self.rows)} rows, expected {n_tasks + 1} "
                f"(before training and after each of the {n_tasks} experiences)"
            )
        return as_accuracy_matrix(np.array(self.rows, dtype=np.float64))

    def before_training(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Row 0: the model before any training (skipped when resuming)."""
        if not self.rows:
            self._evaluate(strategy.model)

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Row i: the model after training experience i."""
        self._evaluate(strategy.model)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_test_sets"] = []
        return state

    def _evaluate(self, model: nn.Module) -> None:
        if not self._test_sets:
            raise RuntimeError("the tensor evaluator has no test sets; call attach() first")
        began = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            with isolated_randomness(), torch.inference_mode():
                self.rows.append([self._accuracy(model, test) for test in self._test_sets])
        finally:
            model.train(was_training)
        self.eval_time_s += time.perf_counter() - began

    def _accuracy(self, model: nn.Module, test: TestSet) -> float:
        correct = 0
        labels = torch.full((self.batch_size,), test.task_label, device=test.y.device)
        for start in range(0, len(test.y), self.batch_size):
            x = test.x[start : start + self.batch_size]
            logits = avalanche_forward(model, x, labels[: len(x)])
            # torch.max, as Avalanche's accuracy metric takes it, breaks ties alike.
            predicted = torch.max(logits, 1)[1]
            correct += int((predicted == test.y[start : start + self.batch_size]).sum())
        return correct / len(test.y)


class IsolatedEvalRandomness(SupervisedPlugin):
    """Keeps Avalanche's evaluations from drawing on the random numbers training uses.

    Each ``eval()`` call builds a data loader per experience, and each loader draws a seed
    from torch's generator; without this plugin a run's training depends on how often and
    on what it is evaluated. It also clocks the evaluations.
    """

    def __init__(self) -> None:
        super().__init__()
        self.eval_time_s = 0.0
        self._saved: contextlib.ExitStack | None = None
        self._began = 0.0

    def before_eval(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Save the random states."""
        self._saved = contextlib.ExitStack()
        self._saved.enter_context(isolated_randomness())
        self._began = time.perf_counter()

    def after_eval(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Put the random states back."""
        self.eval_time_s += time.perf_counter() - self._began
        if self._saved is not None:
            self._saved.close()
            self._saved = None

    def __getstate__(self) -> dict[str, Any]:
        # Checkpoints are taken between evaluations, never inside one.
        state = self.__dict__.copy()
        state["_saved"] = None
        return state
