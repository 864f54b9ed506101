"""Issue 12's summary: each agent at equal bytes beside equal samples, and the codecs' cost.

Reads the merged results ``benchmarks/memory_bytes.sh`` writes (``<stream>__bytes.json`` and
``<stream>__samples.json``) and prints, per stream, ACC and stored samples and bytes at
``--memory-bytes`` beside ``--memory-size``, then the share of each coded agent's wall time
spent training, encoding and decoding its codec:

    .venv/bin/python benchmarks/memory_bytes_table.py benchmarks/results/memory_bytes \\
        --out benchmarks/results/memory_bytes/summary.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lifelong.io import atomic_write_text

STREAMS = ("rotated-mnist", "permuted-mnist")


def _rows(merged: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {row["agent"]: row for row in merged["summary"]}


def _acc(row: Mapping[str, Any]) -> str:
    return f"{100 * row['acc_mean']:.1f} ± {100 * row['acc_std']:.1f}"


def side_by_side(stream: str, by_bytes: Mapping[str, Any], by_samples: Mapping[str, Any]) -> str:
    """One stream's agents at equal bytes and at equal samples."""
    budget = by_bytes["config"]["train"]["memory_bytes"]
    size = by_samples["config"]["train"]["memory_size"]
    bytes_rows, sample_rows = _rows(by_bytes), _rows(by_samples)
    lines = [
        f"### {stream} (test split, seeds {','.join(map(str, by_bytes['config']['seeds']))})",
        "",
        f"| agent | ACC % at {budget} bytes | samples | kB | ACC % at {size} samples | kB |",
        "|---|---|---|---|---|---|",
    ]
    for agent, row in bytes_rows.items():
        at_bytes = (
            f"{_acc(row)} | {row.get('stored_samples_mean', 0):.0f} | "
            f"{row['memory_bytes_mean'] / 1000:.1f}"
        )
        other = sample_rows.get(agent)
        at_samples = (
            f"{_acc(other)} | {other['memory_bytes_mean'] / 1000:.1f}" if other else " | "
        )
        lines.append(f"| {agent} | {at_bytes} | {at_samples} |")
    return "\n".join(lines)


def codec_costs(merged: Sequence[Mapping[str, Any]]) -> str:
    """Per coded agent: its codec's seconds against its wall time, retrainings and error.

    The error is the largest relative reconstruction error an experience was stored with;
    "fell back" counts the runs whose memory moved to its fallback codec, and at which
    experience (1-based).
    """
    lines = [
        "| stream | budget | agent | codec s | wall s | share % | largest share % | retrains "
        "| fell back | largest error % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for results in merged:
        train = results["config"]["train"]
        budget = (
            f"{train['memory_bytes']} B" if train.get("memory_bytes") else f"{train['memory_size']}"
        )
        agents = sorted({r["agent"] for r in results["runs"] if "codec" in r})
        for agent in agents:
            runs = [r for r in results["runs"] if r["agent"] == agent]
            codec = statistics.fmean(r["codec"]["codec_time_s"] for r in runs)
            wall = statistics.fmean(r["wall_time_s"] for r in runs)
            largest = max(r["codec"]["codec_time_s"] / r["wall_time_s"] for r in runs)
            retrains = statistics.fmean(r["codec"]["retrains"] for r in runs)
            error = max(max(r["codec"]["reconstruction_errors"]) for r in runs)
            lines.append(
                f"| {results['stream']} | {budget} | {agent} | {codec:.3f} | {wall:.2f} | "
                f"{100 * codec / wall:.1f} | {100 * largest:.1f} | {retrains:.1f} | "
                f"{_fallbacks(runs)} | {100 * error:.2f} |"
            )
    return "\n".join(lines)


def _fallbacks(runs: Sequence[Mapping[str, Any]]) -> str:
    """``"k/n at experience e"``: how many runs moved to their fallback codec, and when."""
    moved = [r["codec"]["fallback_batch"] + 1 for r in runs
             if r["codec"].get("fallback_batch") is not None]
    count = f"{len(moved)}/{len(runs)}"
    return count + (f" at {', '.join(map(str, sorted(set(moved))))}" if moved else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Print (and optionally save) the side-by-side tables and the codec costs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where memory_bytes.sh wrote its tables")
    parser.add_argument("--out", type=Path, help="markdown file to write")
    args = parser.parse_args(argv)
    parts, loaded = [], []
    for stream in STREAMS:
        pair = [
            json.loads((args.folder / f"{stream}__{kind}.json").read_text(encoding="utf-8"))
            for kind in ("bytes", "samples")
        ]
        loaded += pair
        parts += [side_by_side(stream, *pair), ""]
    parts += ["### Codec cost (training, encoding and decoding) and error", "",
              codec_costs(loaded), ""]
    text = "\n".join(parts)
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
