"""Table ``benchmarks/keep_validation.sh``'s runs: OCA, records made and keeps, per run.

One row per run folder (validation stream, label mode, p, stream seed), one column per agent,
then each stream's mean OCA per agent. Writes markdown to ``--out`` and prints it::

    .venv/bin/python benchmarks/keep_validation_table.py runs/resume_keep_validation \\
        --out benchmarks/results/block_validation/resume_keep/summary.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from lifelong.io import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the OUT folder of keep_validation.sh")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    folders = sorted(path.parent for path in args.runs.glob("*/*/results.json"))
    if not folders:
        raise SystemExit(f"no results.json two levels under {args.runs}; run keep_validation.sh")
    agents = [run["agent"] for run in _runs(folders[0])]
    lines = [
        "| stream | run | " + " | ".join(agents) + " |",
        "|---|---|" + "---|" * len(agents),
    ]
    ocas: dict[str, dict[str, list[float]]] = {}
    for folder in folders:
        stream = folder.parent.name
        by_agent = {run["agent"]: run for run in _runs(folder)}
        cells = []
        for agent in agents:
            run = by_agent[agent]
            decisions = run["decisions"]
            ocas.setdefault(stream, {}).setdefault(agent, []).append(100 * run["oca"])
            cells.append(
                f"{100 * run['oca']:.2f} ({decisions['new_tasks']} rec, "
                f"{decisions['kept_low_batches']} kept)"
            )
        lines.append(f"| {stream} | {folder.name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| stream | " + " | ".join(agents) + " |")
    lines.append("|---|" + "---|" * len(agents))
    for stream, by_agent in ocas.items():
        means = [f"{statistics.mean(by_agent[agent]):.2f}" for agent in agents]
        runs = len(by_agent[agents[0]])
        lines.append(f"| {stream}, mean OCA of {runs} runs | " + " | ".join(means) + " |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    print(text)


def _runs(folder: Path) -> list[dict]:
    return json.loads((folder / "results.json").read_text())["runs"]


if __name__ == "__main__":
    main()
