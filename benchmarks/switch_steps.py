"""Where a task-switching run loses its accuracy: the switch step, the step after, the rest.

With labels shuffled, every switch brings classes the learner has not been told the labels
of, so the first step of a segment can only be guessed (chance: 1 / ways). This script
splits each run's step accuracies into that step, the step after it (the first one learned
from a single labelled batch) and the remaining steps, by distribution kind, and prints the
ceiling such a stream puts on OCA: chance at every switch step, every other step right.
Points lost are OCA points (share of all steps times the error there).

    .venv/bin/python benchmarks/switch_steps.py runs/ts_recog \\
        --out benchmarks/results/task_switching_avalanche/switch_steps.md

Reads ``RUNS/<setting>__<agent>/results.json`` as ``benchmarks/task_switching.py`` writes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lifelong.io import atomic_write_text
from lifelong.prequential import steps_since_switch

_PARTS = ("switch", "next", "rest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="a --runs folder of benchmarks/task_switching.py")
    parser.add_argument("--agent", default="lifelong", help="folder suffix after '__'")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    args = parser.parse_args()
    files = sorted(args.runs.glob(f"*__{args.agent}/results.json"))
    if not files:
        raise SystemExit(
            f"no {args.runs}/*__{args.agent}/results.json; run benchmarks/task_switching.py"
        )
    lines = [
        f"# Step accuracy around switches: {args.agent}, `{args.runs}` (mean over seeds, %)",
        "",
        "| setting | kind | share of steps | switch step | next step | rest | OCA points "
        "lost after the switch step |",
        "|---|---|---|---|---|---|---|",
    ]
    totals = []
    for path in files:
        results = json.loads(path.read_text())
        setting = path.parent.name.split("__")[0]
        ways = int(results["ways"])
        for kind in ("all", "pretrain", "new", "ood"):
            rows = [_breakdown(run, kind) for run in results["runs"]]
            share, switch, after, rest, lost = np.mean(rows, axis=0)
            lines.append(
                f"| {setting} | {kind} | {100 * share:.1f} | {100 * switch:.1f} | "
                f"{100 * after:.1f} | {100 * rest:.1f} | {100 * lost:.2f} |"
            )
        if results["labels"] != "shuffled":
            continue  # with fixed labels a returning task can be recognised: no such ceiling
        ocas = [run["oca"] for run in results["runs"]]
        ceilings = [_ceiling(run, ways) for run in results["runs"]]
        totals.append(
            f"| {setting} | {100 * np.mean(ocas):.2f} | {100 * np.mean(ceilings):.2f} | "
            f"{100 * (np.mean(ceilings) - np.mean(ocas)):.2f} |"
        )
    lines += [
        "",
        "Labels shuffled; ceiling: chance (1 / ways) on every switch step, every other step "
        "right.",
        "",
        "| setting | OCA | ceiling | room |",
        "|---|---|---|---|",
        *totals,
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    print(text)


def _masks(run: dict) -> dict[str, np.ndarray]:
    # A stream's first step is a switch, so lag 0 marks exactly its switch steps.
    lag = steps_since_switch(np.asarray(run["ground_truth"]["switch"], dtype=bool))
    return {"switch": lag == 0, "next": lag == 1, "rest": lag >= 2}


def _breakdown(run: dict, kind: str) -> tuple[float, float, float, float, float]:
    """Share of steps of ``kind``; accuracy on its switch, next and other steps; points lost."""
    accuracy = np.asarray(run["step_accuracy"], dtype=float)
    kinds = np.asarray(run["ground_truth"]["kind"])
    of_kind = np.ones(len(accuracy), dtype=bool) if kind == "all" else kinds == kind
    masks = _masks(run)
    means = [_mean(accuracy[masks[part] & of_kind]) for part in _PARTS]
    after_switch = of_kind & ~masks["switch"]
    lost = float((1 - accuracy[after_switch]).sum() / len(accuracy))
    return float(of_kind.mean()), means[0], means[1], means[2], lost


def _ceiling(run: dict, ways: int) -> float:
    switch = _masks(run)["switch"]
    return float(np.where(switch, 1 / ways, 1.0).mean())


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


if __name__ == "__main__":
    main()
