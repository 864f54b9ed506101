"""Every task-switching agent on ``omniglot-switching``, and the ``lifelong`` agent's ablations.

For each label mode (``fixed``: tasks truly recur; ``shuffled``: OSAKA's setting) and each
``p`` (0.9, 0.98), one run of every agent that supports the stream, then one run of
``lifelong`` per ablation (a switch turned off, or the slow encoder frozen), all over the
same seeds, pre-training shared through the cache. Writes, under ``--out`` (default
``benchmarks/results/task_switching``):

- ``summary.md``: the agents' table and the ablations' table (OCA overall, first visits,
  revisits, by kind; the first 5 steps of the revisit recovery curve; wall time);
- ``summary.json``: the same rows;
- ``{labels}_p{p}/recovery_curves.png``: each comparison's recovery curves.

Full run folders (``results.json`` with every step) go to ``--runs`` (default
``runs/task_switching``)::

    python benchmarks/task_switching.py --data-root ../shared/data/omniglot --seeds 0,1,2

``--agents a,b --no-ablations`` runs only those agents (in folders of their own) and keeps
every other row of an earlier ``summary.json`` in ``--out``, so that a new baseline joins
the tables without rerunning the rest. A benchmark split over processes by seed (``--seeds
0`` with ``--runs A``, ``--seeds 1`` with ``--runs B``) is tabled as one with ``--from-runs
--seeds 0,1 --runs A --also-runs B``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lifelong import RunConfig, StreamConfig, run
from lifelong.agents import available_agents
from lifelong.io import atomic_write_text
from lifelong.switching_run import mean_std
from streams import Scenario

ABLATIONS: dict[str, dict[str, Any]] = {
    "retrieval": {"retrieval": False},
    "routing": {"routing": False},
    "retrieval_replay": {"retrieval_replay": False},
    "meta": {"meta": False},
    "fast_block": {"fast_block": False},
    "slow_encoder": {"encoder_lr": 0.0},
}
"""The ``lifelong`` agent's ablations by name, each the settings of a run of its own."""
SETTINGS = (("fixed", 0.9), ("fixed", 0.98), ("shuffled", 0.9), ("shuffled", 0.98))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data/omniglot")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/task_switching"))
    parser.add_argument("--runs", type=Path, default=Path("runs/task_switching"))
    parser.add_argument(
        "--from-runs",
        action="store_true",
        help="rebuild the tables from the run folders under --runs instead of running",
    )
    parser.add_argument(
        "--also-runs",
        type=Path,
        action="append",
        default=[],
        help="with --from-runs: another runs folder whose runs of the same folder name join "
        "(a benchmark split over processes by seed)",
    )
    parser.add_argument("--agents", help="comma-separated subset of the agents to run")
    parser.add_argument(
        "--no-ablations", action="store_true", help="skip the lifelong agent's ablation runs"
    )
    parser.add_argument(
        "--settings", help="comma-separated subset of the settings, as fixed_p0.9,shuffled_p0.98"
    )
    args = parser.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    agents = tuple(
        sorted(n for n, e in available_agents().items() if Scenario.TASK_SWITCHING in e.scenarios)
    )
    subset = bool(args.agents)
    if subset:
        agents = tuple(a.strip() for a in args.agents.split(","))
    rows: list[dict[str, Any]] = []
    began = time.perf_counter()
    chosen = None if not args.settings else set(args.settings.split(","))
    for labels, p in SETTINGS:
        name = f"{labels}_p{p}"
        if chosen is not None and name not in chosen:
            continue
        stream = StreamConfig(
            name="omniglot-switching",
            data_root=args.data_root,
            options={"labels": labels, "p": p},
        )
        # Each run: its agents, its folder, the lifelong settings it changes, and its label.
        variants: list[tuple[tuple[str, ...], str, dict[str, dict[str, Any]], str]] = [
            (agents, name, {}, "")
        ]
        if subset:
            variants = [(agents, f"{name}__{'+'.join(agents)}", {}, "")]
        if not args.no_ablations:
            variants += [
                (("lifelong",), f"{name}__no_{ablation}", {"lifelong": settings}, f"no {ablation}")
                for ablation, settings in ABLATIONS.items()
            ]
        for run_agents, folder, options, variant in variants:
            config = RunConfig(
                stream=stream,
                agents=run_agents,
                seeds=seeds,
                out=str(args.runs / folder),
                agent_options=options,
            )
            if args.from_runs:
                results = json.loads((args.runs / folder / "results.json").read_text())
                for extra in args.also_runs:
                    more = json.loads((extra / folder / "results.json").read_text())
                    results["runs"] += more["runs"]
            else:
                results = run(config, progress=False)
            rows += summary_rows(results, labels, p, variant)
            print(f"{folder}: done ({time.perf_counter() - began:.0f} s so far)", flush=True)
        if args.from_runs:
            continue
        plot = args.out / name / ("recovery_curves.png" if not subset else f"{variants[0][1]}.png")
        plot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.runs / variants[0][1] / "recovery_curves.png", plot)
    if subset:
        rows = kept_rows(args.out / "summary.json", rows) + rows
        rows.sort(key=lambda row: (row["labels"], row["p"]))  # stable: earlier rows first
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "summary.json", json.dumps(rows, indent=2) + "\n")
    table = markdown(rows, seeds)
    atomic_write_text(args.out / "summary.md", table)
    print(table)


def kept_rows(path: Path, new: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of an earlier ``summary.json`` that the new rows do not replace."""
    if not path.is_file():
        return []
    replaced = {(r["labels"], r["p"], r["agent"]) for r in new}
    earlier = json.loads(path.read_text())
    return [r for r in earlier if (r["labels"], r["p"], r["agent"]) not in replaced]


def summary_rows(
    results: Mapping[str, Any], labels: str, p: float, variant: str
) -> list[dict[str, Any]]:
    """One row per agent: means and sample stds over seeds, from the runs' own records."""
    rows = []
    agents = dict.fromkeys(r["agent"] for r in results["runs"])
    for agent in agents:
        runs = [r for r in results["runs"] if r["agent"] == agent]
        row: dict[str, Any] = {
            "labels": labels,
            "p": p,
            "agent": agent if not variant else f"{agent} ({variant})",
            "seeds": [r["seed"] for r in runs],
        }
        for key, values in (
            ("oca", [r["oca"] for r in runs]),
            ("oca_first_visit", [r["oca_first_visit"] for r in runs]),
            ("oca_revisit", [r["oca_revisit"] for r in runs]),
            ("revisit_first5", [_first(r["recovery_curve"]["revisit"], 5) for r in runs]),
            ("first_visit_first5", [_first(r["recovery_curve"]["first_visit"], 5) for r in runs]),
            ("wall_time_s", [r["wall_time_s"] for r in runs]),
        ):
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(values)
        for kind in ("pretrain", "new", "ood"):
            row[f"oca_{kind}_mean"] = mean_std([r["oca_by_type"][kind] for r in runs])[0]
        for name in ("acc", "forgetting", "bwt", "fwt"):  # runs from before the matrix lack it
            values = [r.get(f"matrix_{name}") for r in runs]
            row[f"matrix_{name}_mean"], row[f"matrix_{name}_std"] = mean_std(values)
        if all("retrieval" in r for r in runs):
            precision = [r["retrieval"]["precision_at_1"] for r in runs]
            row["retrieval_precision_mean"], row["retrieval_precision_std"] = mean_std(precision)
            row["retrieval_events_mean"] = mean_std([r["retrieval"]["events"] for r in runs])[0]
            row["retrieval_chance_mean"] = mean_std([r["retrieval"]["chance"] for r in runs])[0]
        rows.append(row)
    return rows


def markdown(rows: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> str:
    """The summary tables: percentages, mean ± std over seeds."""
    header = (
        "| labels | p | agent | seeds | OCA | 1st visit | revisit | revisit, first 5 steps | "
        "pretrain | new | ood | wall s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )

    def pm(row: Mapping[str, Any], key: str) -> str:
        if len(row["seeds"]) == 1:  # one seed has no spread to show
            return f"{100 * row[key + '_mean']:.1f}"
        return f"{100 * row[key + '_mean']:.1f} ± {100 * row[key + '_std']:.1f}"

    def line(row: Mapping[str, Any]) -> str:
        cells = [
            row["labels"],
            str(row["p"]),
            row["agent"],
            ",".join(map(str, row["seeds"])),
            pm(row, "oca"),
            f"{100 * row['oca_first_visit_mean']:.1f}",
            pm(row, "oca_revisit"),
            pm(row, "revisit_first5"),
            *(f"{100 * row[f'oca_{k}_mean']:.1f}" for k in ("pretrain", "new", "ood")),
            f"{row['wall_time_s_mean']:.1f}",
        ]
        return "| " + " | ".join(cells) + " |\n"

    agents = [r for r in rows if "(" not in r["agent"]]
    ablations = [r for r in rows if "(" in r["agent"] or r["agent"] == "lifelong"]
    seed_text = ",".join(map(str, seeds))
    # Rows can come from several invocations (``--agents``): each names its own seeds.
    every_seed = sorted({seed for row in rows for seed in row["seeds"]})
    return (
        "# omniglot-switching: agents and ablations (seeds "
        f"{','.join(map(str, every_seed))}, per row in its seeds column; mean ± std in %)\n\n"
        "Regenerate: `python benchmarks/task_switching.py --seeds " + seed_text + "` for "
        "every agent and ablation; `--agents a,b --no-ablations --seeds S` reruns only those "
        "agents and keeps the other rows.\n\n"
        "## Agents\n\n" + header + "".join(line(r) for r in agents) + "\n"
        "## The lifelong agent with one switch off\n\n"
        + header
        + "".join(line(r) for r in ablations)
        + "\n## Retrieval precision@1 of the lifelong agent\n\n"
        + precision_table([r for r in ablations if "retrieval_precision_mean" in r])
        + "\n## Accuracy matrix over distributions (held-out batches, 11 points)\n\n"
        + matrix_table([r for r in rows if r.get("matrix_acc_mean") is not None])
    )


def matrix_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The matrix's ACC, forgetting, BWT and FWT per row, in percent."""
    lines = [
        "| labels | p | agent | ACC | forgetting | BWT | FWT |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = []
        for name in ("acc", "forgetting", "bwt", "fwt"):
            mean, std = row[f"matrix_{name}_mean"], row[f"matrix_{name}_std"]
            spread = "" if len(row["seeds"]) == 1 else f" ± {100 * std:.1f}"
            cells.append("-" if mean is None else f"{100 * mean:.1f}{spread}")
        lead = f"| {row['labels']} | {row['p']} | {row['agent']} | "
        lines.append(lead + " | ".join(cells) + " |")
    if len(lines) == 2:
        lines.append("| (no run of these tables recorded the matrix) | | | | | | |")
    return "\n".join(lines) + "\n"


def precision_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """How often a retrieved record was the step's own distribution, against chance."""
    lines = [
        "| labels | p | agent | retrievals per run | precision@1 | chance |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        precision = row["retrieval_precision_mean"]
        shown = "-" if precision is None else f"{100 * precision:.1f}"
        if precision is not None and len(row["seeds"]) > 1:
            shown += f" ± {100 * row['retrieval_precision_std']:.1f}"
        lines.append(
            f"| {row['labels']} | {row['p']} | {row['agent']} | "
            f"{row['retrieval_events_mean']:.0f} | {shown} | "
            f"{100 * row['retrieval_chance_mean']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _first(curve: Sequence[float | None], n: int) -> float | None:
    values = [v for v in curve[:n] if v is not None]
    return float(np.mean(values)) if values else None


if __name__ == "__main__":
    main()
