"""The outputs of a benchmark invocation: summary statistics, tables, files and plots.

Everything here works from the results of a task sequence, typed by ``lifelong.records``
(:class:`~lifelong.records.ResultsFile`, one :class:`~lifelong.records.SequenceRun` per job),
or from the same as the dict ``results.json`` holds::

    {
        "stream": str,                  # stream name
        "scenario": str,                # class-, task- or domain-incremental
        "config": {...},                # the resolved configuration
        "runs": [                       # one per (agent, seed)
            {"agent": str, "seed": int,
             "accuracy_matrix": [[...], ...],   # R, (T + 1) x T, fractions in [0, 1]
             "acc": float, "bwt": float, "fwt": float, "forgetting": float,
             "wall_time_s": float,
             ...},                      # more keys allowed, e.g. "avalanche_bwt"
        ],
        "summary": [...],               # summarize_runs(runs)
    }

Accuracies and transfers are stored as fractions and shown in tables as percentages (points
for BWT, FWT and forgetting) with one decimal, labelled ``(%)``.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import json
import math
import os
from collections.abc import Mapping, Sequence
from io import StringIO
from pathlib import Path
from typing import Any, cast

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lifelong.io import atomic_path, atomic_write_text
from lifelong.metrics import as_accuracy_matrix
from lifelong.records import (
    ResultsFile,
    SequenceRun,
    SequenceSummary,
    matrix_csv_name,
    runs_from_dicts,
    summary_from_dicts,
)

__all__ = [
    "REQUIRED_RESULT_KEYS",
    "REQUIRED_RUN_KEYS",
    "SUMMARY_KEYS",
    "aligned_table",
    "format_summary_table",
    "summarize_runs",
    "summary_markdown",
    "validate_results",
    "write_outputs",
]

REQUIRED_RESULT_KEYS = tuple(ResultsFile.required_keys())
"""Top-level keys every results dict must have."""

REQUIRED_RUN_KEYS = tuple(SequenceRun.required_keys())
"""Keys every run must have; runs may carry more."""

_RUN_METRICS = ("acc", "bwt", "fwt", "forgetting")

SUMMARY_KEYS = tuple(SequenceSummary.required_keys())
"""Keys every summary row has, in order; ``{key}_mean`` of each ``avalanche_*`` run key,
timing split and memory figure (``memory_bytes``, ``stored_samples``) present follows them."""

_AVALANCHE_PREFIX = "avalanche_"
_TIMING_KEYS = ("train_time_s", "eval_time_s")
"""Run keys averaged into the summary when present: the job's wall time, split."""
_MEMORY_KEYS = ("memory_bytes", "stored_samples")
"""Run keys averaged into the summary when present: what the agent stores at the end."""

METRIC_NOTE = (
    "Metrics of the accuracy matrix R (row 0 before training, row i after task i): "
    "ACC = mean final accuracy over tasks; BWT = mean over j<T of R[T][j] − R[j][j]; "
    "FWT = mean over j>1 of R[j−1][j] − R[0][j]; forgetting = mean over j<T of the drop "
    "from task j's best accuracy to its final one (Chaudhry et al. 2018). "
    "All in percent (points), mean ± sample std over seeds."
)
"""The one-line note under the markdown table."""

_COLUMNS = (
    "Agent",
    "Seeds",
    "ACC (%)",
    "BWT (%)",
    "FWT (%)",
    "Forgetting (%)",
    "Time (s)",
    "Memory (kB)",
)


def summarize_runs(runs: Sequence[SequenceRun | Mapping[str, Any]]) -> list[SequenceSummary]:
    """Aggregate runs over seeds, one row per agent.

    Args:
        runs: Run records, or run dicts as in ``results.json`` (read with
            :class:`~lifelong.records.SequenceRun`).

    Returns:
        One row per agent, in order of the agent's first run: ``n_seeds`` is the agent's
        number of runs; ``*_std`` is the sample standard deviation (``ddof=1``) over them, 0.0
        for a single run. Its extras hold, for every ``avalanche_*``, ``train_time_s``,
        ``eval_time_s``, ``memory_bytes`` and ``stored_samples`` key found in the agent's
        runs, ``{key}_mean``: its mean over the runs that give a value (peak RAM, for one, is
        only present when it was measured; ``stored_samples`` is ``None`` for an agent without
        a sample memory); and ``diverged_runs``, only where some run's loss became NaN or
        infinite: how many.

    Raises:
        ValueError: If ``runs`` is empty, a run lacks a key, a value is not a finite number,
            or an agent has two runs with the same seed.
    """
    records = cast(list[SequenceRun], runs_from_dicts(runs, SequenceRun))
    groups: dict[str, list[SequenceRun]] = {}
    for record in records:
        groups.setdefault(record.agent, []).append(record)
    return [_summary_row(agent, agent_runs) for agent, agent_runs in groups.items()]


def _summary_row(agent: str, runs: Sequence[SequenceRun]) -> SequenceSummary:
    means: dict[str, Any] = {}
    for name in _RUN_METRICS:
        values = [float(getattr(run, name)) for run in runs]
        means[f"{name}_mean"] = _mean(values)
        means[f"{name}_std"] = _sample_std(values)
    extras: dict[str, Any] = {}
    flat = [run.to_dict() for run in runs]
    for key in _averaged_extra_keys(flat):
        extras[f"{key}_mean"] = _mean([float(r[key]) for r in flat if r.get(key) is not None])
    diverged = sum(run.diverged is not None for run in runs)
    if diverged:
        extras["diverged_runs"] = diverged
    return SequenceSummary(
        agent=agent,
        n_seeds=len(runs),
        **means,
        wall_time_s_mean=_mean([run.wall_time_s for run in runs]),
        extras=extras,
    )


def format_summary_table(summary: Sequence[SequenceSummary | Mapping[str, Any]]) -> str:
    """Render summary rows as an aligned plain-text table for the terminal.

    Args:
        summary: Rows as returned by :func:`summarize_runs`, or as dicts from ``results.json``.

    Returns:
        The table, one line per agent under a header and a rule, without a final newline.
        Accuracy columns are percentages with one decimal, as ``mean ± std`` (just the mean
        for a single seed); the time column is the mean wall time in seconds.

    Raises:
        ValueError: If a row lacks a key of :data:`SUMMARY_KEYS`.
    """
    rows = [_table_cells(row.to_dict()) for row in summary_from_dicts(summary, SequenceSummary)]
    return aligned_table(_COLUMNS, rows)


def aligned_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned.

    Returns:
        The header, a rule and one line per row, without a final newline.
    """
    widths = [max(len(cells[k]) for cells in [list(header), *rows]) for k in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(cells) for cells in rows)])


def summary_markdown(results: ResultsFile | Mapping[str, Any]) -> str:
    """Render the results as a markdown summary: heading, seeds, table and metric note.

    Args:
        results: The results, or a results dict (see the module docstring).

    Returns:
        Markdown text ending in a newline.

    Raises:
        ValueError: If ``results`` is malformed (see :func:`validate_results`).
    """
    parsed = validate_results(results)
    runs = cast(list[SequenceRun], parsed.runs)
    seeds = sorted({run.seed for run in runs})
    n_tasks = runs[0].n_tasks
    header = "| " + " | ".join(_COLUMNS) + " |"
    align = "|" + "|".join([":---", *["---:"] * (len(_COLUMNS) - 1)]) + "|"
    body = [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in _table_cells(row.to_dict())) + " |"
        for row in parsed.summary
    ]
    lines = [
        f"# {parsed.stream} ({parsed.scenario})",
        "",
        f"{n_tasks} tasks; seeds {', '.join(str(s) for s in seeds)}; {len(runs)} runs.",
        "",
        header,
        align,
        *body,
        "",
        METRIC_NOTE,
        "",
    ]
    return "\n".join(lines)


def write_outputs(
    results: ResultsFile | Mapping[str, Any], out_dir: str | os.PathLike[str]
) -> dict[str, Path]:
    """Write every output file of a benchmark invocation into ``out_dir``.

    All inputs are validated and serialised before the first file is written, and each file
    is written atomically, so a failure never leaves a torn file (an earlier file of the same
    name stays as it was). Files:

    - ``results.json``: the results dict, indented by 2.
    - ``config.json``: ``results["config"]`` alone.
    - ``accuracy_matrix__{agent}__seed{seed}.csv``: R of each run, header
      ``after_task,task_1,...,task_T``, first column 0 (before training) then 1..T. Characters
      of the agent name other than letters, digits, ``.``, ``_`` and ``-`` become ``_``.
    - ``summary.md``: :func:`summary_markdown`.
    - ``summary.csv``: ``results["summary"]``, one row per agent, full precision.
    - ``forgetting_curves.png``: per agent, the seed-mean accuracy on each task after each
      training step, with a ±1 std band over seeds.
    - ``accuracy_matrix.png``: per agent, the seed-mean R as a heatmap.

    Args:
        results: The results, or a results dict (see the module docstring).
        out_dir: Output folder; created if missing.

    Returns:
        File name -> path of every file written.

    Raises:
        ValueError: If ``results`` is malformed (see :func:`validate_results`) or holds a
            value JSON cannot represent.
    """
    parsed = validate_results(results)
    runs = cast(list[SequenceRun], parsed.runs)
    texts: dict[str, str] = {
        "results.json": _to_json(parsed.to_dict(), "results"),
        "config.json": _to_json(parsed.config, "config"),
    }
    for run in runs:
        texts[matrix_csv_name(run.agent, run.seed)] = _matrix_csv(run.accuracy_matrix)
    texts["summary.md"] = summary_markdown(parsed)
    texts["summary.csv"] = _summary_csv([row.to_dict() for row in parsed.summary])

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, text in texts.items():
        atomic_write_text(folder / name, text)
        written[name] = folder / name

    stats = _seed_stats(runs)
    for name, draw in (
        ("forgetting_curves.png", _draw_forgetting_curves),
        ("accuracy_matrix.png", _draw_accuracy_matrices),
    ):
        figure = draw(stats)
        with atomic_path(folder / name) as tmp:
            figure.savefig(tmp, format="png", dpi=110)
        written[name] = folder / name
    return written


def validate_results(results: ResultsFile | Mapping[str, Any]) -> ResultsFile:
    """Read and check the results of a task sequence (see the module docstring).

    Args:
        results: A results dict, or results already read (returned as they are).

    Returns:
        The results, typed.

    Raises:
        ValueError: Naming the first problem found: a missing key, a value of the wrong type,
            an invalid accuracy matrix, runs with different numbers of tasks, a duplicate
            (agent, seed), two agents whose file names collide, a malformed summary row, or
            runs of a task-switching stream (``lifelong.switching_run`` writes those).
    """
    parsed = results if isinstance(results, ResultsFile) else ResultsFile.from_dict(results)
    if parsed.switching:
        raise ValueError(
            "results hold task-switching runs; write them with "
            "lifelong.switching_run.write_switching_outputs"
        )
    return parsed


def _averaged_extra_keys(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Run keys averaged into the summary, in order of first appearance."""
    keys: dict[str, None] = {}
    for run in runs:
        for key in run:
            if (
                isinstance(key, str)
                and (
                    key.startswith(_AVALANCHE_PREFIX) or key in _TIMING_KEYS or key in _MEMORY_KEYS
                )
                and run[key] is not None
            ):
                keys.setdefault(key, None)
    return list(keys)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _sample_std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    return float(np.std(np.asarray(values, dtype=np.float64), ddof=1))


def _table_cells(row: Mapping[str, Any]) -> list[str]:
    single = int(row["n_seeds"]) < 2

    def pct(name: str) -> str:
        mean = 100.0 * float(row[f"{name}_mean"])
        if single:
            return f"{mean:.1f}"
        return f"{mean:.1f} ± {100.0 * float(row[f'{name}_std']):.1f}"

    diverged = int(row.get("diverged_runs", 0))
    return [
        f"{row['agent']} (diverged {diverged}/{row['n_seeds']})" if diverged else str(row["agent"]),
        str(row["n_seeds"]),
        *(pct(name) for name in _RUN_METRICS),
        f"{float(row['wall_time_s_mean']):.1f}",
        # Stored bytes of every kind (lifelong.budget), in kB of 1,000 bytes.
        f"{float(row['memory_bytes_mean']) / 1000:.1f}" if "memory_bytes_mean" in row else "-",
    ]


def _matrix_csv(matrix_like: Any) -> str:
    matrix = as_accuracy_matrix(matrix_like)
    buffer = StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["after_task", *(f"task_{j}" for j in range(1, matrix.shape[1] + 1))])
    for i, row in enumerate(matrix):
        writer.writerow([i, *(repr(float(v)) for v in row)])
    return buffer.getvalue()


def _summary_csv(summary: Sequence[Mapping[str, Any]]) -> str:
    columns: dict[str, None] = {}
    for row in summary:
        for key in row:
            columns.setdefault(key, None)
    buffer = StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in summary:
        writer.writerow({k: repr(float(v)) if isinstance(v, float) else v for k, v in row.items()})
    return buffer.getvalue()


def _to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, indent=2, allow_nan=False, default=_json_default) + "\n"
    except (TypeError, ValueError) as err:
        where = _first_unjsonable(value, what) or what
        raise ValueError(
            f"{where} cannot be written as JSON: {err}; keep to dicts, lists, str, finite "
            f"numbers, bool and None"
        ) from err


def _first_unjsonable(value: Any, where: str) -> str | None:
    """Return the location of the first value JSON cannot hold, to name it in the error."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _first_unjsonable(item, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _first_unjsonable(item, f"{where}[{index}]")
            if found:
                return found
        return None
    if isinstance(value, str | bool | int) or value is None:
        return None
    if isinstance(value, float | np.floating):
        return None if math.isfinite(value) else where
    try:
        converted = _json_default(value)
    except TypeError:
        return where
    return _first_unjsonable(converted, where) if converted is not value else None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} {value!r:.80} is not JSON serialisable")


@dataclasses.dataclass(frozen=True)
class _AgentStats:
    agent: str
    n_seeds: int
    mean: np.ndarray  # seed-mean R, (T + 1, T)
    std: np.ndarray  # sample std over seeds (0 for one seed), (T + 1, T)


def _seed_stats(runs: Sequence[SequenceRun]) -> list[_AgentStats]:
    groups: dict[str, list[np.ndarray]] = {}
    for run in runs:
        groups.setdefault(run.agent, []).append(as_accuracy_matrix(run.accuracy_matrix))
    stats = []
    for agent, matrices in groups.items():
        stack = np.stack(matrices)
        std = stack.std(axis=0, ddof=1) if len(matrices) > 1 else np.zeros_like(stack[0])
        stats.append(_AgentStats(agent, len(matrices), stack.mean(axis=0), std))
    return stats


# The panels' margins, in inches: fixed rather than solved. Matplotlib's constrained layout
# measures every tick label of every panel at each save, which was half the time of writing a
# run's outputs (1.4 s of 2.7 s for split-digits' seven agents).
_LEFT_IN, _BOTTOM_IN, _TOP_IN, _RIGHT_PAD_IN = 0.7, 0.55, 0.35, 0.15
_COLUMN_GAP_IN, _ROW_GAP_IN = 0.75, 0.8


def _figure(
    n_panels: int, panel_size: tuple[float, float], side_in: float
) -> tuple[Figure, list[Any]]:
    """A figure of ``n_panels`` axes, three to a row, with ``side_in`` inches free at the right.

    A bare Figure on an Agg canvas: no pyplot, so no display, no global figure registry and
    no backend switch for the caller's process.
    """
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    width = panel_size[0] * ncols + side_in
    height = panel_size[1] * nrows
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    left, right = _LEFT_IN / width, 1 - (side_in + _RIGHT_PAD_IN) / width
    bottom, top = _BOTTOM_IN / height, 1 - _TOP_IN / height
    axes_width = ((right - left) * width - (ncols - 1) * _COLUMN_GAP_IN) / ncols
    axes_height = ((top - bottom) * height - (nrows - 1) * _ROW_GAP_IN) / nrows
    grid = figure.add_gridspec(
        nrows,
        ncols,
        left=left,
        right=right,
        bottom=bottom,
        top=top,
        wspace=_COLUMN_GAP_IN / axes_width,
        hspace=_ROW_GAP_IN / axes_height,
    )
    axes = list(grid.subplots(squeeze=False).flat)
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    return figure, axes[:n_panels]


def _tick_stride(n: int) -> int:
    return max(1, math.ceil(n / 20))


def _draw_forgetting_curves(stats: Sequence[_AgentStats]) -> Figure:
    n_tasks = stats[0].mean.shape[1]
    legend_columns = math.ceil(n_tasks / 15)
    # The legend's title sets its width for one column; further columns take ~0.95 in each.
    legend_width_in = max(1.7, 0.2 + 0.95 * legend_columns)
    figure, axes = _figure(len(stats), (5.0, 3.6), side_in=legend_width_in)
    colors = _task_colors(n_tasks)
    steps = np.arange(n_tasks + 1)
    for ax, agent in zip(axes, stats, strict=True):
        for c in range(n_tasks):
            learned = c + 1
            mean, std = agent.mean[:, c], agent.std[:, c]
            # Dashed before the task is learned (transfer from earlier tasks), solid after.
            ax.plot(steps[: learned + 1], mean[: learned + 1], color=colors[c], ls="--", lw=1)
            ax.plot(steps[learned:], mean[learned:], color=colors[c], lw=1.6, label=f"task {c + 1}")
            ax.plot([learned], [mean[learned]], marker="o", ms=4, color=colors[c])
            ax.axvline(learned, color=colors[c], ls=":", lw=0.8, alpha=0.35)
            if agent.n_seeds > 1:
                ax.fill_between(
                    steps,
                    np.clip(mean - std, 0, 1),
                    np.clip(mean + std, 0, 1),
                    color=colors[c],
                    alpha=0.12,
                    lw=0,
                )
        seeds = "seed" if agent.n_seeds == 1 else "seeds"
        ax.set_title(f"{agent.agent} ({agent.n_seeds} {seeds})")
        ax.set_xlabel("after training task")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(-0.15, n_tasks + 0.15)
        ax.set_xticks(steps[:: _tick_stride(n_tasks + 1)])
        ax.grid(alpha=0.25)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1 - legend_width_in / figure.get_figwidth(), axes[0].get_position().y1),
        fontsize="small",
        ncols=legend_columns,
        title="● learned; band ±1 std",
        title_fontsize="small",
    )
    return figure


def _draw_accuracy_matrices(stats: Sequence[_AgentStats]) -> Figure:
    n_tasks = stats[0].mean.shape[1]
    side = min(3.0 + 0.35 * n_tasks, 9.0)
    bar_side_in = 1.0  # the colour bar, its ticks and its label
    figure, axes = _figure(len(stats), (side + 0.6, side), side_in=bar_side_in)
    image = None
    for ax, agent in zip(axes, stats, strict=True):
        image = ax.imshow(agent.mean, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        rows = np.arange(0, n_tasks + 1, _tick_stride(n_tasks + 1))
        cols = np.arange(0, n_tasks, _tick_stride(n_tasks))
        ax.set_yticks(rows, [str(i) for i in rows])
        ax.set_xticks(cols, [str(j + 1) for j in cols])
        ax.set_ylabel("after training task i")
        ax.set_xlabel("test task j")
        seeds = "seed" if agent.n_seeds == 1 else "seeds"
        ax.set_title(f"{agent.agent} (mean of {agent.n_seeds} {seeds})")
        if n_tasks <= 10:
            for i in range(n_tasks + 1):
                for j in range(n_tasks):
                    value = agent.mean[i, j]
                    ax.text(
                        j,
                        i,
                        f"{value:.2f}",
                        ha="center",
                        va="center",
                        fontsize="small",
                        color="black" if value > 0.6 else "white",
                    )
    if image is not None:
        # A bar 0.2 in wide, 0.3 in right of the panels, as tall as the grid of panels.
        width = figure.get_figwidth()
        bottom, top = axes[-1].get_position().y0, axes[0].get_position().y1
        left = 1 - (bar_side_in + _RIGHT_PAD_IN - 0.3) / width
        bar = figure.add_axes((left, bottom, 0.2 / width, top - bottom))
        figure.colorbar(image, cax=bar, label="accuracy")
    return figure


def _task_colors(n_tasks: int) -> list[Any]:
    cmap = colormaps["tab10" if n_tasks <= 10 else "viridis"]
    if n_tasks <= 10:
        return [cmap(c) for c in range(n_tasks)]
    return [cmap(c / max(n_tasks - 1, 1)) for c in range(n_tasks)]
