"""Avalanche's evaluation (``--evaluator avalanche``), and reading results back out of it.

Runs measure the accuracy matrix with ``lifelong.tensor_evaluator`` by default; this module
is the Avalanche path, whose metric values a run also records, and the evaluation plugin
every strategy needs either way (``make_evaluator(metrics=False)`` on the tensor path).

The accuracy matrix needs a fixed evaluation schedule (../shared/AVALANCHE_NOTES.md): build the
strategy with ``eval_every=0`` and call
``strategy.train(benchmark.train_stream, eval_streams=[benchmark.test_stream])`` once. That
evaluates the whole test stream before training and after every experience, giving each
``Top1_Acc_Exp`` metric exactly ``T + 1`` values, the columns of ``R``. Calling
``train(exp)`` once per experience evaluates before every call as well and is rejected by
:func:`accuracy_matrix_from_evaluator`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from avalanche.evaluation.metrics import (
    accuracy_metrics,
    bwt_metrics,
    forgetting_metrics,
    forward_transfer_metrics,
    ram_usage_metrics,
    timing_metrics,
)
from avalanche.logging import BaseLogger
from avalanche.training.plugins import EvaluationPlugin

from lifelong.metrics import as_accuracy_matrix

__all__ = [
    "RAM_SAMPLE_INTERVAL_S",
    "accuracy_matrix_from_evaluator",
    "avalanche_stream_metrics",
    "make_evaluator",
    "peak_ram_mb",
]

RAM_SAMPLE_INTERVAL_S = 0.05
"""Seconds between RAM samples. Avalanche's RAM metrics read the process's resident memory
from a background thread at this period; a phase shorter than the period can end before its
first sample and read 0. Every stop of the thread waits for the current period to end, so a
run pays up to this long once per ``train()`` call and once per evaluation (at most about a
second for a 20-task stream at 0.05 s). A larger interval waits longer at each stop and misses
short peaks; a smaller one samples more often for little gain."""

_ACC_EXP = re.compile(
    r"^Top1_Acc_Exp/eval_phase/(?P<stream>[^/]+)/Task(?P<task>\d+)/Exp(?P<exp>\d+)$"
)
_ACC_STREAM = re.compile(r"^Top1_Acc_Stream/eval_phase/(?P<stream>[^/]+)/Task\d+$")
_RAM = re.compile(r"^MaxRAMUsage_(Epoch|Stream)/")
_TRAIN_TIME = re.compile(r"^Time_Epoch/train_phase/")
_EVAL_TIME = re.compile(r"^Time_Stream/eval_phase/(?P<stream>[^/]+)/")

MetricHistory = dict[str, tuple[Sequence[int], Sequence[float]]]


def make_evaluator(
    loggers: Sequence[BaseLogger] | None = None,
    *,
    ram_interval_s: float | None = RAM_SAMPLE_INTERVAL_S,
    metrics: bool = True,
) -> EvaluationPlugin:
    """Build the evaluation plugin every strategy of a run shares the configuration of.

    It collects, on every evaluated stream: top-1 accuracy per experience and per stream;
    forgetting, backward transfer and forward transfer per experience and per stream;
    training epoch time and evaluation experience and stream time; peak RAM per training
    epoch and per evaluation stream. Build one per strategy run: its history accumulates.

    Args:
        loggers: Avalanche loggers to report to. None means none: the evaluator only stores
            the metrics (read them with :func:`accuracy_matrix_from_evaluator` and
            :func:`avalanche_stream_metrics`), and the terminal stays quiet.
        ram_interval_s: Seconds between RAM samples (see :data:`RAM_SAMPLE_INTERVAL_S`);
            ``None`` leaves the RAM metrics out, and with them their sampling thread.
        metrics: Collect the accuracy, transfer and timing metrics. ``False`` leaves only
            the RAM metrics (if any), for runs whose accuracy matrix the tensor evaluator
            measures: Avalanche's strategies need an evaluation plugin all the same.

    Returns:
        An ``EvaluationPlugin`` to pass as ``evaluator=`` to an Avalanche strategy.

    Raises:
        ValueError: If ``ram_interval_s`` is not ``None`` or a positive finite number.
    """
    if ram_interval_s is not None and not (math.isfinite(ram_interval_s) and ram_interval_s > 0):
        raise ValueError(f"ram_interval_s is {ram_interval_s!r}; it must be a positive number")
    collected = []
    if metrics:
        collected += [
            accuracy_metrics(experience=True, stream=True),
            forgetting_metrics(experience=True, stream=True),
            bwt_metrics(experience=True, stream=True),
            forward_transfer_metrics(experience=True, stream=True),
            timing_metrics(epoch=True, experience=True, stream=True),
        ]
    if ram_interval_s is not None:
        collected.append(ram_usage_metrics(every=ram_interval_s, epoch=True, stream=True))
    kind = EvaluationPlugin if collected or loggers else _IdleEvaluationPlugin
    with warnings.catch_warnings():
        # With no loggers Avalanche warns "metrics will not be logged"; storing them
        # without logging is the point here, and the run's own output is the lead's.
        warnings.filterwarnings("ignore", message="No loggers specified", category=UserWarning)
        return kind(*collected, loggers=list(loggers or []))


class _IdleEvaluationPlugin(EvaluationPlugin):
    """An evaluation plugin with no metric and no logger: every callback returns at once.

    Avalanche's plugin copies the current experience on every callback (to log it), metric
    or not: about a third of a millisecond per training step, for nothing.
    """

    def _update_metrics_and_loggers(self, strategy: Any, callback: str) -> list[Any]:
        return []


def accuracy_matrix_from_evaluator(
    evaluator: EvaluationPlugin,
    n_tasks: int,
    *,
    stream_name: str = "test_stream",
) -> np.ndarray:
    """Build the accuracy matrix R from an evaluator's metric history.

    Column ``j`` comes from ``Top1_Acc_Exp/eval_phase/{stream_name}/Task{t}/Exp{j}`` for any
    task label ``t`` (0 in class- and domain-incremental streams, the task index in
    task-incremental ones).

    Args:
        evaluator: The evaluator of a strategy that ran the schedule in the module docstring.
        n_tasks: Number of experiences T in the stream.
        stream_name: Name of the evaluated stream.

    Returns:
        R, shape ``(T + 1, T)``: row 0 before training, row i after training experience i.

    Raises:
        ValueError: If ``n_tasks`` < 1, if an experience 0..T-1 is missing, duplicated under
            two task labels or out of range, or if a column does not have exactly ``T + 1``
            values (the evaluation schedule was wrong).
    """
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
        raise ValueError(f"n_tasks is {n_tasks!r}; it must be the number of experiences (>= 1)")
    history = _history(evaluator)
    columns: dict[int, tuple[str, Sequence[float]]] = {}
    for key, (_, values) in history.items():
        match = _ACC_EXP.match(key)
        if match is None or match["stream"] != stream_name:
            continue
        exp = int(match["exp"])
        if exp >= n_tasks:
            raise ValueError(
                f"metric {key!r} is for experience {exp}, but n_tasks is {n_tasks}; "
                f"pass the number of experiences in the stream"
            )
        if exp in columns:
            raise ValueError(
                f"experience {exp} has accuracies under two keys, {columns[exp][0]!r} and "
                f"{key!r}; each test experience must keep one task label"
            )
        columns[exp] = (key, values)
    missing = sorted(set(range(n_tasks)) - set(columns))
    if missing:
        found = sorted(columns)
        raise ValueError(
            f"no Top1_Acc_Exp/eval_phase/{stream_name} accuracy for experience(s) {missing} "
            f"(found {found}); evaluate the whole {stream_name} with accuracy_metrics("
            f"experience=True), e.g. with make_evaluator()"
        )
    expected = n_tasks + 1
    for key, values in columns.values():
        if len(values) != expected:
            raise ValueError(
                f"{key!r} has {len(values)} values, expected {expected} (before training and "
                f"after each of the {n_tasks} experiences): the evaluation schedule was wrong. "
                f"Build the strategy with eval_every=0, call strategy.train(train_stream, "
                f"eval_streams=[test_stream]) once (not once per experience), use a fresh "
                f"evaluator per run and make no extra eval() calls"
            )
    matrix = np.array([columns[exp][1] for exp in range(n_tasks)], dtype=np.float64).T
    return as_accuracy_matrix(matrix)


def avalanche_stream_metrics(
    evaluator: EvaluationPlugin,
    *,
    stream_name: str = "test_stream",
) -> dict[str, float]:
    """Return Avalanche's own final stream-level metrics, to cross-check ours.

    Keys, always present:

    - ``avalanche_stream_accuracy``: final ``Top1_Acc_Stream``, the accuracy over all test
      samples pooled. It weights experiences by their test-set size, so it equals ACC only
      when all test experiences have the same size.
    - ``avalanche_bwt``: final ``StreamBWT``, equal to BWT.
    - ``avalanche_forward_transfer``: final ``StreamForwardTransfer``, equal to FWT.
    - ``avalanche_stream_forgetting``: final ``StreamForgetting``, equal to -BWT (not to the
      max-based forgetting of :func:`lifelong.metrics.forgetting`).

    Keys present when measured:

    - ``avalanche_peak_ram_mb``: the largest resident-memory sample of any training epoch or
      evaluation, in MiB; zero readings (phases shorter than the sampling interval) are
      ignored, and the key is left out if no sample was taken.
    - ``avalanche_train_time_s``: the sum of all training epoch times, in seconds
      (evaluations excluded).
    - ``avalanche_eval_time_s``: the sum of all evaluation times of ``stream_name``.

    Args:
        evaluator: The evaluator of a finished run, built with :func:`make_evaluator`.
        stream_name: Name of the evaluated stream.

    Returns:
        The metrics above as Python floats.

    Raises:
        ValueError: If one of the always-present metrics was not collected.
    """
    history = _history(evaluator)
    out: dict[str, float] = {}

    stream_acc = [
        (values[-1], steps[-1])
        for key, (steps, values) in history.items()
        if (m := _ACC_STREAM.match(key)) is not None and m["stream"] == stream_name and values
    ]
    if not stream_acc:
        raise _missing(f"Top1_Acc_Stream/eval_phase/{stream_name}/Task*", "accuracy_metrics")
    # Avalanche keys the stream accuracy by the task label of the last experience seen, so a
    # single key is usual; if several exist the most recently emitted one is the final value.
    out["avalanche_stream_accuracy"] = float(max(stream_acc, key=lambda item: item[1])[0])

    for name, key, factory in (
        ("avalanche_bwt", f"StreamBWT/eval_phase/{stream_name}", "bwt_metrics"),
        (
            "avalanche_forward_transfer",
            f"StreamForwardTransfer/eval_phase/{stream_name}",
            "forward_transfer_metrics",
        ),
        (
            "avalanche_stream_forgetting",
            f"StreamForgetting/eval_phase/{stream_name}",
            "forgetting_metrics",
        ),
    ):
        values = history.get(key, ((), ()))[1]
        if not values:
            raise _missing(key, factory)
        out[name] = float(values[-1])

    peak = _peak_ram_mb(history)
    if peak is not None:
        out["avalanche_peak_ram_mb"] = peak

    train_times = [
        float(v) for key, (_, vals) in history.items() if _TRAIN_TIME.match(key) for v in vals
    ]
    if train_times:
        out["avalanche_train_time_s"] = math.fsum(train_times)

    eval_times = [
        float(v)
        for key, (_, vals) in history.items()
        if (m := _EVAL_TIME.match(key)) is not None and m["stream"] == stream_name
        for v in vals
    ]
    if eval_times:
        out["avalanche_eval_time_s"] = math.fsum(eval_times)
    return out


def peak_ram_mb(evaluator: EvaluationPlugin) -> float | None:
    """The largest non-zero RAM sample of any training epoch or evaluation, in MiB.

    Returns:
        The peak, or ``None`` if the evaluator has no RAM metrics or took no sample.
    """
    get_all: Any = getattr(evaluator, "get_all_metrics", None)
    return None if get_all is None else _peak_ram_mb(get_all())


def _peak_ram_mb(history: MetricHistory) -> float | None:
    ram = [float(v) for key, (_, vals) in history.items() if _RAM.match(key) for v in vals]
    ram = [v for v in ram if v > 0]
    return max(ram) if ram else None


def _history(evaluator: EvaluationPlugin) -> MetricHistory:
    get_all: Any = getattr(evaluator, "get_all_metrics", None)
    if get_all is None:
        raise TypeError(
            f"evaluator is a {type(evaluator).__name__}, not an Avalanche EvaluationPlugin; "
            f"build it with make_evaluator()"
        )
    history: MetricHistory = get_all()
    if not history:
        raise ValueError(
            "the evaluator holds no metrics: it was built with collect_all=False or the "
            "strategy has not run; build it with make_evaluator() and train first"
        )
    return history


def _missing(key: str, factory: str) -> ValueError:
    return ValueError(
        f"the evaluator has no {key!r} metric; include {factory}(stream=True) in the "
        f"evaluator (make_evaluator() does) and evaluate the stream"
    )
