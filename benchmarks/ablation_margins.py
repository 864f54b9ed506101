"""Where each ``lifelong`` ablation switch helps by a margin: overall, by visit and by kind.

Issue 13 asks that every component of the agent help "somewhere by a margin", a margin being
a difference of means above the larger of the two standard deviations over seeds. The
tables of ``benchmarks/task_switching.py`` give the ablations' overall OCA only; a component
built for one kind of distribution (the last block's offsets for images the frozen encoder
never saw) can pay there and be diluted overall. This script reads the same run folders and
tests every switch on every setting by each measure a run records: OCA, OCA on first visits
and on revisits, and OCA on each kind of distribution.

    .venv/bin/python benchmarks/ablation_margins.py runs/ts_recog \\
        --out benchmarks/results/task_switching_avalanche/ablation_margins.md

Reads ``RUNS/<setting>__lifelong/results.json`` and every ``RUNS/<setting>__no_<switch>/
results.json`` as ``benchmarks/task_switching.py`` writes them; seeds are paired by number.
Each switch is tested on 24 measures (4 settings by 6), so a margin found once can be
chance; the table says how often each switch clears it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.io import atomic_write_text

MEASURES = ("oca", "first visit", "revisit", "pretrain", "new", "ood")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="a --runs folder of benchmarks/task_switching.py")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    args = parser.parse_args()
    settings = sorted(p.name.split("__")[0] for p in args.runs.glob("*__lifelong"))
    ablations = sorted({p.name.split("__no_")[1] for p in args.runs.glob("*__no_*")})
    if not settings:
        raise SystemExit(
            f"no {args.runs}/*__lifelong/results.json; run benchmarks/task_switching.py"
        )
    lines = [
        f"# Ablation margins: `{args.runs}` (the drop in % when the switch is off)",
        "",
        "Each cell: mean with the switch on minus mean with it off, over the seeds both ran; "
        "`*` where that exceeds the larger of the two standard deviations (issue 13's "
        "margin).",
        "",
        "| switch | setting | seeds | " + " | ".join(MEASURES) + " |",
        "|---|---|---|" + "---|" * len(MEASURES),
    ]
    agent = {s: _runs(args.runs / f"{s}__lifelong" / "results.json") for s in settings}
    counts: dict[str, int] = {}
    for switch in ablations:
        counts[switch] = 0
        for setting in settings:
            ablated = args.runs / f"{setting}__no_{switch}" / "results.json"
            if not ablated.is_file():
                continue
            on, off = agent[setting], _runs(ablated)
            seeds = sorted(on.keys() & off.keys())
            cells = [_cell([on[s] for s in seeds], [off[s] for s in seeds], m) for m in MEASURES]
            counts[switch] += sum(cell.endswith("*") for cell in cells)
            seed_text = ",".join(map(str, seeds))
            lines.append(f"| {switch} | {setting} | {seed_text} | " + " | ".join(cells) + " |")
    lines += ["", "| switch | measures cleared by a margin |", "|---|---|"]
    lines += [f"| {switch} | {count} |" for switch, count in counts.items()]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    print(text)


def _runs(path: Path) -> dict[int, Mapping[str, Any]]:
    return {int(run["seed"]): run for run in json.loads(path.read_text())["runs"]}


def measure(run: Mapping[str, Any], name: str) -> float:
    """One of ``MEASURES`` of a run, in %."""
    if name == "oca":
        return 100 * float(run["oca"])
    if name in ("first visit", "revisit"):
        return 100 * float(run[f"oca_{name.replace(' ', '_')}"])
    return 100 * float(run["oca_by_type"][name])


def _cell(on: Sequence[Mapping[str, Any]], off: Sequence[Mapping[str, Any]], name: str) -> str:
    with_switch = np.array([measure(run, name) for run in on])
    without = np.array([measure(run, name) for run in off])
    drop = float(with_switch.mean() - without.mean())
    if len(with_switch) < 2:
        return f"{drop:+.1f}"
    spread = max(float(with_switch.std(ddof=1)), float(without.std(ddof=1)))
    return f"{drop:+.1f}" + ("*" if drop > spread else "")


if __name__ == "__main__":
    main()
