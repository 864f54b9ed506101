"""Pre-training's own check: few-shot accuracy on Omniglot characters it never saw.

ProtoNet pre-training (``lifelong.pretraining``, the published Omniglot recipe) on the
``omniglot-switching`` pool's pre-training alphabets, then 5-way and 20-way 1-shot accuracy
of nearest-prototype classification on the test drawings of the new alphabets' characters.

    python benchmarks/pretraining_check.py --data-root ../shared/data/omniglot --seeds 0

Prints the figures and writes ``benchmarks/results/pretraining_check.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from lifelong.io import atomic_write_text
from lifelong.pretraining import (
    ProtoNetSettings,
    encoder_cache_path,
    fewshot_accuracy,
    pretrain_protonet,
)
from streams.omniglot_switching import omniglot_switching_pool
from streams.switching import DistributionKind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data/omniglot"))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/pretrained"))
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/pretraining_check.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = ProtoNetSettings()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        pool = omniglot_switching_pool(args.data_root, 3, seed=seed)
        pretraining = [d for d in pool if d.kind is DistributionKind.PRETRAIN]
        held_out = [d for d in pool if d.kind is DistributionKind.NEW]
        cached = encoder_cache_path(args.cache_dir, pretraining, settings, seed)
        from_cache = cached is not None and cached.is_file()
        began = time.perf_counter()
        encoder = pretrain_protonet(pretraining, settings, seed, cache_dir=args.cache_dir)
        seconds = time.perf_counter() - began
        row = {
            "seed": seed,
            "pretraining_alphabets": [d.name for d in pretraining],
            "held_out_alphabets": [d.name for d in held_out],
            "pretraining_s": seconds,
            "from_cache": from_cache,
        }
        for ways in (5, 20):
            mean, half_width = fewshot_accuracy(encoder, held_out, ways, episodes=500, seed=seed)
            row[f"{ways}way_1shot"] = mean
            row[f"{ways}way_1shot_ci95"] = half_width
        rows.append(row)
        print(
            f"seed {seed}: pre-trained on {', '.join(row['pretraining_alphabets'])} in "
            f"{seconds:.0f} s; held out {', '.join(row['held_out_alphabets'])}: 5-way 1-shot "
            f"{100 * row['5way_1shot']:.1f} ± {100 * row['5way_1shot_ci95']:.1f}, 20-way 1-shot "
            f"{100 * row['20way_1shot']:.1f} ± {100 * row['20way_1shot_ci95']:.1f} (95% CI)"
        )
    report = {
        "method": "protonet",
        "settings": asdict(settings),
        "threads": args.threads,
        "runs": rows,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
