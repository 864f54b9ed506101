"""Few-shot adaptation after the stream: N-way 1-shot accuracy of saved agents through ``adapt``.

Every agent a task-switching run saved (``<run>/agents/<agent>__seed<s>/``) is loaded with
``lifelong.load_agent`` and given N-way 1-shot episodes drawn from the test drawings of the
new alphabets' characters (drawings no step of the stream ever showed; the characters
themselves did appear in the stream, from their training drawings). The support is one
drawing per class, labelled ``0..N-1``; the queries are the class's other test drawings.
Every agent of a seed gets the same episodes.

    python benchmarks/adapt_after_stream.py --runs runs/task_switching/fixed_p0.9 \\
        runs/task_switching/fixed_p0.9__maml+anil+cmaml --ways 5,20

``--characters pretrain`` draws the episodes from the pre-training alphabets' characters
instead, for choosing settings on pre-training tasks only; ``--characters stream`` from the
new distributions of each run's own stream, rebuilt from its ``config.json`` (for a
validation plug-in whose new classes are not an Omniglot alphabet as it is, such as
``validation_stream.py``'s turned Latin); ``--alphabets A+B`` from the named alphabets'.
``--learner-setting prototype_vote=false`` changes a field of each loaded learner's
configuration that has it before adapting (settings ``adapt`` reads; the stream is not run
again). Prints a table and writes ``summary.json`` and ``summary.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong import load_agent
from lifelong.config import config_from_dict
from lifelong.io import atomic_write_text
from lifelong.run import build_stream
from lifelong.switching_run import mean_std
from streams.omniglot_switching import omniglot_switching_pool
from streams.switching import Distribution, DistributionKind, SwitchingStream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data/omniglot"))
    parser.add_argument("--ways", default="5,20")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/adapt_after_stream"))
    parser.add_argument(
        "--characters",
        choices=("new", "pretrain", "stream"),
        default="new",
        help="whose characters the episodes draw: the new alphabets' (the test), the "
        "pre-training alphabets' (for choosing settings on pre-training tasks only), or the "
        "new distributions of each run's own stream (validation plug-ins)",
    )
    parser.add_argument(
        "--alphabets",
        help="names joined by +: draw the episodes from these alphabets' characters instead "
        "(such as the alphabet a validation stream held out of pre-training)",
    )
    parser.add_argument(
        "--learner-setting",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="set a configuration field of every loaded learner that has it before adapting "
        "(JSON values: true, 0.5, \"text\"); such agents are shown as NAME (FIELD=VALUE)",
    )
    args = parser.parse_args()
    settings = dict(_setting(pair) for pair in args.learner_setting)
    kind = DistributionKind.PRETRAIN if args.characters == "pretrain" else DistributionKind.NEW
    named = set(args.alphabets.split("+")) if args.alphabets else None
    torch.set_num_threads(1)
    ways = [int(w) for w in args.ways.split(",")]
    folders = sorted(p for run in args.runs for p in (run / "agents").iterdir())
    agents = [load_agent(folder) for folder in folders]
    names = [_with_settings(agent, settings) for agent in agents]
    unused = set(settings) - {key for _, applied in names for key in applied}
    if unused:
        raise SystemExit(f"no loaded learner has the setting(s) {sorted(unused)}; check the names")
    rows: list[dict[str, Any]] = []
    for folder, agent, (name, _) in zip(folders, agents, names, strict=True):
        config = json.loads((folder.parents[1] / "config.json").read_text())
        if args.characters == "stream":
            pool = _stream_distributions(config, agent.seed)
        else:
            pool = omniglot_switching_pool(
                args.data_root, config["stream"]["options"].get("pretrain_alphabets", 3),
                seed=agent.seed,
            )
        held_out = [d for d in pool if (d.name in named if named else d.kind is kind)]
        if not held_out:
            raise SystemExit(f"no alphabet of {sorted(named or [])} in the pool of {folder}")
        row: dict[str, Any] = {"agent": name, "seed": agent.seed, "run": str(folder)}
        for n in ways:
            row[f"{n}way_1shot"] = accuracy(agent, held_out, n, args.episodes, agent.seed)
        rows.append(row)
        shown = ", ".join(f"{n}-way {100 * row[f'{n}way_1shot']:.1f}" for n in ways)
        print(f"{name} seed {agent.seed}: {shown}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "summary.json", json.dumps(rows, indent=2) + "\n")
    table = markdown(rows, ways, args)
    atomic_write_text(args.out / "summary.md", table)
    print(table)


def _stream_distributions(config: dict[str, Any], seed: int) -> tuple[Distribution, ...]:
    """The distributions of a saved run's stream at ``seed``, built as the run built them."""
    stream = build_stream(config_from_dict(config).stream, seed)
    if not isinstance(stream, SwitchingStream):
        raise SystemExit(f"stream {stream.name!r} is not task-switching; drop --characters stream")
    return stream.distributions


def _setting(pair: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` as a field name and its JSON value (a bare word stays a string)."""
    field, sep, text = pair.partition("=")
    if not (sep and field):
        raise SystemExit(f"--learner-setting must look like FIELD=VALUE, got {pair!r}")
    try:
        return field, json.loads(text)
    except json.JSONDecodeError:
        return field, text


def _with_settings(agent: Any, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Apply the settings the agent's learner configuration has: its name to show, and those."""
    config = getattr(agent.learner, "config", None)
    if config is None:
        return str(agent.name), {}
    fields = {f.name for f in dataclasses.fields(config)}
    applied = {k: v for k, v in settings.items() if k in fields}
    if not applied:
        return str(agent.name), {}
    agent.learner.config = dataclasses.replace(config, **applied)
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in applied.items())
    return f"{agent.name} ({shown})", applied


def accuracy(agent: Any, held_out: Sequence[Any], ways: int, episodes: int, seed: int) -> float:
    """Mean query accuracy over ``episodes`` N-way 1-shot episodes of held-out test drawings."""
    classes = [drawings for d in held_out for drawings in d.test if len(drawings) >= 2]
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(episodes):
        chosen = rng.choice(len(classes), size=ways, replace=False)
        support = torch.stack([classes[c][0] for c in chosen])
        queries = [classes[c][1:] for c in chosen]
        query_y = torch.cat([torch.full((len(q),), i) for i, q in enumerate(queries)])
        logits = agent.adapt(support, torch.arange(ways))(torch.cat(queries))
        scores.append(float((logits.argmax(1) == query_y).double().mean()))
    return float(np.mean(scores))


def markdown(rows: Sequence[dict[str, Any]], ways: Sequence[int], args: Any) -> str:
    """Mean ± std over seeds per agent."""
    header = "| agent | seeds | " + " | ".join(f"{n}-way 1-shot %" for n in ways) + " |\n"
    header += "|---|---|" + "---|" * len(ways) + "\n"
    lines = []
    for agent in dict.fromkeys(r["agent"] for r in rows):
        mine = [r for r in rows if r["agent"] == agent]
        cells = []
        for n in ways:
            mean, std = mean_std([r[f"{n}way_1shot"] for r in mine])
            cells.append(f"{100 * (mean or 0):.1f} ± {100 * (std or 0):.1f}")
        seeds = ",".join(str(r["seed"]) for r in mine)
        lines.append(f"| {agent} | {seeds} | " + " | ".join(cells) + " |\n")
    runs = " ".join(str(r) for r in args.runs)
    return (
        "# N-way 1-shot through `adapt` after the stream (held-out test drawings)\n\n"
        f"Regenerate: `python benchmarks/adapt_after_stream.py --runs {runs} "
        f"--ways {args.ways} --episodes {args.episodes} --characters {args.characters}"
        + (f" --alphabets {args.alphabets}" if args.alphabets else "")
        + "".join(f" --learner-setting {pair}" for pair in args.learner_setting)
        + "`\n\n"
        + header
        + "".join(lines)
    )


if __name__ == "__main__":
    main()
