"""Merge the ``results.json`` of several runs over one stream into one comparison table.

Each folder is one ``run_stream.py`` invocation (for example the baselines in one, the
``lifelong`` agent and its ablations in another). The runs must share the stream and the
training settings; only the agents differ. Prints a markdown table per stream with ACC,
BWT, FWT, forgetting (mean ± std over seeds, in percent), wall/train/eval time, stored samples
and bytes (``lifelong.budget``), and how far ``lifelong`` is from the best other agent on ACC,
in points and in standard deviations:

    .venv/bin/python benchmarks/merge_results.py runs/issue4/rotated-mnist__baselines \\
        runs/issue4/rotated-mnist__lifelong --out benchmarks/results/agent_vs_baselines.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from lifelong.io import atomic_write_text
from lifelong.metrics import retrieval_precision
from lifelong.records import ResultsFile, SequenceRun
from lifelong.report import summarize_runs, validate_results

_UPPER = frozenset({"cumulative"})

# Settings that must agree for runs to be compared.
_SHARED = ("stream", "train", "seeds")


def load_merged(folders: Sequence[Path]) -> dict[str, Any]:
    """The runs of every folder in one results dict (first folder's metadata).

    Raises:
        ValueError: If a results file is malformed (``lifelong.records``), or the folders
            differ in stream or training settings, or repeat an agent.
    """
    if not folders:
        raise ValueError("give at least one results folder")
    loaded = [_read(folder) for folder in folders]
    first = loaded[0]
    # validate_results refuses task-switching runs, so every run here is a SequenceRun.
    runs = cast(list[SequenceRun], list(first.runs))
    for folder, results in zip(folders[1:], loaded[1:], strict=True):
        for key in _SHARED:
            if results.config[key] != first.config[key]:
                raise ValueError(
                    f"{folder}: config {key!r} differs from {folders[0]}; "
                    "merge only runs of the same stream and settings"
                )
        repeated = {r.agent for r in results.runs} & {r.agent for r in runs}
        if repeated:
            raise ValueError(f"{folder}: agents {sorted(repeated)} appear in two folders")
        runs += cast(list[SequenceRun], results.runs)
    merged = replace(first, runs=runs, summary=summarize_runs(runs))
    return {**merged.to_dict(), "folders": [str(folder) for folder in folders]}


def _read(folder: Path) -> ResultsFile:
    data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    try:
        return validate_results(data)
    except ValueError as error:
        raise ValueError(f"{folder / 'results.json'}: {error}") from error


def _pm(row: Mapping[str, Any], key: str) -> str:
    return f"{100 * row[f'{key}_mean']:.1f} ± {100 * row[f'{key}_std']:.1f}"


def _time(row: Mapping[str, Any], phase: str) -> str:
    """A job's training or evaluation seconds: the run's own split, else Avalanche's."""
    value = row.get(f"{phase}_time_s_mean", row.get(f"avalanche_{phase}_time_s_mean"))
    return "" if value is None else f"{value:.1f}"


def _memory(row: Mapping[str, Any], key: str, scale: float = 1.0, digits: int = 0) -> str:
    value = row.get(f"{key}_mean")
    return "" if value is None else f"{value / scale:.{digits}f}"


def _budget(train: Mapping[str, Any]) -> str:
    # Results written before byte budgets have no memory_bytes key.
    if train.get("memory_bytes") is not None:
        return f"memory {train['memory_bytes']} bytes"
    return f"memory {train['memory_size']}"


def comparison_markdown(merged: Mapping[str, Any], ours: str = "lifelong") -> str:
    """A markdown table of every agent and a line on ``ours`` against the best other agent."""
    rows = merged["summary"]
    lines = [
        f"### {merged['stream']} ({merged['scenario']}, {merged['n_tasks']} tasks, "
        f"seeds {','.join(map(str, merged['config']['seeds']))}, "
        f"{_budget(merged['config']['train'])}, "
        f"evaluated on {merged.get('evaluated_on', 'test')})",
        "",
        "| agent | ACC % | BWT % | FWT % | forgetting % | wall s | train s | eval s "
        "| stored samples | stored kB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['agent']} | {_pm(row, 'acc')} | {_pm(row, 'bwt')} | {_pm(row, 'fwt')} | "
            f"{_pm(row, 'forgetting')} | {row['wall_time_s_mean']:.1f} | "
            f"{_time(row, 'train')} | {_time(row, 'eval')} | "
            f"{_memory(row, 'stored_samples')} | {_memory(row, 'memory_bytes', 1000, 1)} |"
        )
    lines += ["", *_verdict(rows, ours), *_retrieval(merged["runs"], ours), ""]
    return "\n".join(lines)


def _verdict(rows: Sequence[Mapping[str, Any]], ours: str) -> list[str]:
    """How ``ours`` compares with the best other agent on ACC and FWT, and in time."""
    mine = next((row for row in rows if row["agent"] == ours), None)
    # Ablations of ours are not competitors, nor is an upper bound that sees all past data.
    others = [
        row
        for row in rows
        if row["agent"] != ours
        and not row["agent"].startswith("ll-")
        and row["agent"] not in _UPPER
    ]
    if mine is None or not others:
        return []
    out = []
    for key in ("acc", "fwt"):
        best = max(others, key=lambda row: row[f"{key}_mean"])
        gap = mine[f"{key}_mean"] - best[f"{key}_mean"]
        spread = max(mine[f"{key}_std"], best[f"{key}_std"])
        in_std = gap / spread if spread > 0 else float("inf") * (1 if gap >= 0 else -1)
        out.append(
            f"- {key.upper()}: {ours} {100 * mine[f'{key}_mean']:.1f} vs best baseline "
            f"{best['agent']} {100 * best[f'{key}_mean']:.1f}: {100 * gap:+.1f} points "
            f"= {in_std:+.1f} × the larger std."
        )
    replay = next((row for row in others if row["agent"] == "replay"), None)
    if replay is not None:
        ratio = mine["wall_time_s_mean"] / replay["wall_time_s_mean"]
        out.append(f"- wall time: {ratio:.2f} × replay's.")
    return out


def _retrieval(runs: Sequence[Mapping[str, Any]], ours: str) -> list[str]:
    """Precision@1 of ``ours``'s task retrieval against chance, where distributions recur."""
    scores = [
        retrieval_precision(run["task_identities"], run["retrieved_tasks"])
        for run in runs
        if run["agent"] == ours and "retrieved_tasks" in run and "task_identities" in run
    ]
    scores = [score for score in scores if score["scored"]]
    if not scores:
        return []
    mean = {key: statistics.fmean(s[key] for s in scores) for key in scores[0]}
    return [
        f"- retrieval ({len(scores)} seeds, {mean['scored']:.0f} recurring tasks each): "
        f"precision@1 {mean['precision_at_1']:.3f}, precision@k {mean['precision_at_k']:.3f}, "
        f"chance@1 {mean['chance_at_1']:.3f}."
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Merge the folders, print the markdown, optionally save it and the merged JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--ours", default="lifelong")
    parser.add_argument("--out", type=Path, help="markdown file to write (JSON beside it)")
    args = parser.parse_args(argv)
    merged = load_merged(args.folders)
    text = comparison_markdown(merged, args.ours)
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
        atomic_write_text(args.out.with_suffix(".json"), json.dumps(merged) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
