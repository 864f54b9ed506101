"""Avalanche's evaluation (``--evaluator avalanche``), and reading results back out of it.

Runs measure the accuracy matrix with ``lifelong.tensor_evaluator`` by default; this module
is the Avalanche path, whose metric values a run also records, and the evaluation plugin
every strategy needs either way (``make_evaluator(metrics=False)`` on the tensor path).

The accuracy matrix needs a fixed evaluation schedule (../shared/AVALANCHE_NOTES.md): build the
strategy with ``eval_every=0`` and call
``strategy.train(benchmark.train_stream, eval_streams=[benchmark.test_stream])`` once. That
evaluates the whole test stream before training and after every experience: ``T + 1``
evaluations, the rows of ``R``, which ``AccuracyMatrixMetric`` records as they run (no metric
name is parsed). Calling ``train(exp)`` once per experience evaluates before every call as well
and is rejected by :func:`accuracy_matrix_from_evaluator`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from avalanche.evaluation import PluginMetric
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
    "AccuracyMatrixMetric",
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

    It collects, on every evaluated stream: the accuracy matrix (``AccuracyMatrixMetric``);
    top-1 accuracy per experience and per stream;
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
            AccuracyMatrixMetric(),
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


class AccuracyMatrixMetric(PluginMetric[dict[str, list[dict[int, float]]]]):
    """The accuracy matrix itself, recorded as the evaluation runs.

    Every ``eval`` call adds one row per evaluated stream: the top-1 accuracy of each of its
    experiences, counted from the strategy's outputs and labels as Avalanche's
    ``Top1_Acc_Exp`` counts them (argmax of the outputs against the labels, correct over
    seen). Nothing is logged; :func:`accuracy_matrix_from_evaluator` reads the rows back, so
    no metric name is parsed to build R.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, list[dict[int, float]]] = {}
        self._counts: dict[str, dict[int, list[int]]] = {}

    def result(self) -> dict[str, list[dict[int, float]]]:
        """Every row recorded so far, by stream name: ``{experience: accuracy}`` each."""
        return {name: [dict(row) for row in rows] for name, rows in self._rows.items()}

    def reset(self) -> None:
        """Forget every row."""
        self._rows.clear()
        self._counts.clear()

    def before_eval(self, strategy: Any) -> None:
        """Start this evaluation's rows."""
        self._counts.clear()

    def after_eval_iteration(self, strategy: Any) -> None:
        """Count the mini-batch's correct predictions under its stream and experience."""
        experience = strategy.experience
        # Named as Avalanche's metric keys name it: stream "test" is "test_stream".
        stream = self._counts.setdefault(f"{experience.origin_stream.name}_stream", {})
        tally = stream.setdefault(int(experience.current_experience), [0, 0])
        predicted = strategy.mb_output.argmax(dim=1)
        tally[0] += int((predicted == strategy.mb_y).sum())
        tally[1] += len(strategy.mb_y)

    def after_eval(self, strategy: Any) -> None:
        """Close this evaluation's rows."""
        for name, stream in self._counts.items():
            row = {exp: correct / seen for exp, (correct, seen) in sorted(stream.items())}
            self._rows.setdefault(name, []).append(row)
        self._counts.clear()


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
    """Return the accuracy matrix R that the evaluator's ``AccuracyMatrixMetric`` recorded.

    Args:
        evaluator: The evaluator of a strategy that ran the schedule in the module docstring,
            with an ``AccuracyMatrixMetric`` among its metrics (``make_evaluator`` has one).
        n_tasks: Number of experiences T in the stream.
        stream_name: Name of the evaluated stream.

    Returns:
        R, shape ``(T + 1, T)``: row 0 before training, row i after training experience i.

    Raises:
        ValueError: If ``n_tasks`` < 1, if the evaluator has no such metric, if an
            evaluation missed an experience 0..T-1 or saw one out of range, or if there are
            not exactly ``T + 1`` evaluations (the evaluation schedule was wrong).
    """
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
        raise ValueError(f"n_tasks is {n_tasks!r}; it must be the number of experiences (>= 1)")
    recorder = next(
        (m for m in getattr(evaluator, "metrics", ()) if isinstance(m, AccuracyMatrixMetric)),
        None,
    )
    if recorder is None:
        raise ValueError(
            f"the evaluator ({type(evaluator).__name__}) has no AccuracyMatrixMetric; build it "
            f"with make_evaluator(), or pass AccuracyMatrixMetric() among its metrics"
        )
    rows = recorder.result().get(stream_name, [])
    for index, row in enumerate(rows):
        if sorted(row) != list(range(n_tasks)):
            raise ValueError(
                f"evaluation {index} of {stream_name} covered experiences {sorted(row)}, "
                f"expected 0..{n_tasks - 1}; evaluate the whole {stream_name} and pass the "
                f"number of experiences in the stream as n_tasks"
            )
    expected = n_tasks + 1
    if len(rows) != expected:
        raise ValueError(
            f"{stream_name} was evaluated {len(rows)} times, expected {expected} (before "
            f"training and after each of the {n_tasks} experiences): the evaluation schedule "
            f"was wrong. Build the strategy with eval_every=0, call strategy.train("
            f"train_stream, eval_streams=[test_stream]) once (not once per experience), use "
            f"a fresh evaluator per run and make no extra eval() calls"
        )
    matrix = np.array([[row[exp] for exp in range(n_tasks)] for row in rows], dtype=np.float64)
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
