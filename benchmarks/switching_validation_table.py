"""Table the lifelong variants of ``benchmarks/switching_validation.sh``, seed by seed.

For each run folder (one label mode and stream seed), every agent's OCA, revisit OCA, the
accuracy matrix's final ACC over distributions and retrieval precision@1; then each agent's
mean over the folders of one stream and label mode. Writes markdown to ``--out`` and prints it::

    .venv/bin/python benchmarks/switching_validation_table.py runs/switching_validation/* \\
        --out benchmarks/results/task_switching_validation/summary.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from lifelong.io import atomic_write_text

_KEYS = ("oca", "oca_revisit", "matrix_acc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    lines = [
        "| run | agent | OCA % | revisit OCA % | matrix ACC % | precision@1 % (retrievals) |",
        "|---|---|---|---|---|---|",
    ]
    by_mode: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for folder in sorted(args.folders):
        results = json.loads((folder / "results.json").read_text())
        stream = results["config"]["stream"]["name"].rsplit(":", 1)[-1]
        options = results["config"]["stream"]["options"]
        mode = f"{stream}, {options['labels']}, p {options.get('p', 0.9)}"
        for run in results["runs"]:
            lines.append(_row(folder.name, run))
            for key in _KEYS:
                if run.get(key) is not None:
                    by_mode[(mode, run["agent"])][key].append(100 * run[key])
    lines += [
        "",
        "| stream, labels, p | agent | runs | OCA % | revisit OCA % | matrix ACC % |",
        "|---|---|---|---|---|---|",
    ]
    for (mode, agent), values in sorted(by_mode.items()):
        means = [f"{statistics.fmean(values[k]):.2f}" if values[k] else "-" for k in _KEYS]
        lines.append(f"| {mode} | {agent} | {len(values['oca'])} | " + " | ".join(means) + " |")
    table = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, table)
    print(table)


def _row(name: str, run: dict[str, Any]) -> str:
    def percent(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    retrieval = run.get("retrieval") or {}
    precision = f"{percent(retrieval.get('precision_at_1'))} ({retrieval.get('events', 0)})"
    cells = [percent(run.get(k)) for k in _KEYS]
    return f"| {name} | {run['agent']} | " + " | ".join(cells) + f" | {precision} |"


if __name__ == "__main__":
    main()
