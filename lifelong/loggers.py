"""``--logger tensorboard|csv``: a job's accuracy matrix, row by row, through Avalanche's loggers.

The tensor evaluator measures the accuracy matrix without Avalanche's metric callbacks, so
``MatrixLoggers`` hands each new row of it to Avalanche's loggers itself:

- ``tensorboard`` (``avalanche.logging.TensorboardLogger``): scalars
  ``Top1_Acc_Exp/eval_phase/test_stream/Exp{j:03d}`` (task j's accuracy) and
  ``Top1_Acc_Stream/eval_phase/test_stream`` (their mean), at step i = experiences trained;
- ``csv`` (``avalanche.logging.CSVLogger``): ``eval_results.csv`` with one line per (task j,
  row i): ``eval_exp`` j, ``training_exp`` i - 1 (-1 before training), ``eval_accuracy``
  R[i][j], ``eval_loss`` (not measured: nan) and ``forgetting`` (R[j+1][j] − R[i][j] once
  task j is trained, else 0, as Avalanche's ``ExperienceForgetting``).

Files go to ``<out>/logs/<agent>__seed<s>/``, offline. A resumed job writes them again from
its first row (the CSV file is rewritten; TensorBoard gets a second event file with the same
values).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from avalanche.core import SupervisedPlugin

from lifelong.tensor_evaluator import TensorEvaluator


class MatrixLoggers(SupervisedPlugin):
    """Logs every row of the tensor evaluator's matrix that it has not logged yet.

    Rows are picked up after each training experience and at the end of training, so the
    plugin's place in the strategy's list does not matter.

    Args:
        names: Loggers to write, from ``lifelong.config.LOGGERS``.
        folder: Where their files go.
    """

    def __init__(self, names: tuple[str, ...], folder: Path) -> None:
        super().__init__()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._tensorboard: Any = None
        self._csv: Any = None
        if "tensorboard" in names:
            from avalanche.logging import TensorboardLogger

            self._tensorboard = TensorboardLogger(tb_log_dir=str(folder))
        if "csv" in names:
            from avalanche.logging import CSVLogger

            self._csv = CSVLogger(log_folder=str(folder))
        self._logged = 0

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Log the rows measured so far."""
        self._log_new_rows(strategy)

    def after_training(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        """Log the last rows and flush the files."""
        self._log_new_rows(strategy)
        if self._tensorboard is not None:
            self._tensorboard.writer.flush()

    def _log_new_rows(self, strategy: Any) -> None:
        evaluator = next((p for p in strategy.plugins if isinstance(p, TensorEvaluator)), None)
        if evaluator is None:
            return
        rows = evaluator.rows
        for i in range(self._logged, len(rows)):
            self._log_row(i, rows)
        self._logged = len(rows)

    def _log_row(self, i: int, rows: list[list[float]]) -> None:
        row = rows[i]
        if self._tensorboard is not None:
            for j, accuracy in enumerate(row):
                name = f"Top1_Acc_Exp/eval_phase/test_stream/Exp{j:03d}"
                self._tensorboard.log_single_metric(name, accuracy, i)
            stream = sum(row) / len(row)
            self._tensorboard.log_single_metric("Top1_Acc_Stream/eval_phase/test_stream", stream, i)
        if self._csv is not None:
            for j, accuracy in enumerate(row):
                forgetting = rows[j + 1][j] - accuracy if i > j else 0.0
                self._csv.print_eval_metrics(j, i - 1, accuracy, math.nan, forgetting)

    def close(self) -> None:
        """Close the loggers' files."""
        if self._tensorboard is not None:
            self._tensorboard.writer.close()
        if self._csv is not None:
            self._csv.close()
