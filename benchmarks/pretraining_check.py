"""Pre-training's own check: few-shot accuracy on Omniglot characters it never saw.

Each pre-training of ``omniglot-switching`` runs on the pool's pre-training alphabets:
ProtoNet (``lifelong.pretraining``, the published Omniglot recipe), MAML and ANIL
(``lifelong.maml``). Then 5-way and 20-way 1-shot accuracy on the test drawings of the new
alphabets' characters: nearest-prototype classification for ProtoNet, the initialisation
adapted on the support (``test_steps`` SGD steps from a zero head) for MAML and ANIL.

    python benchmarks/pretraining_check.py --data-root ../shared/data/omniglot --seeds 0

Prints the figures and writes ``benchmarks/results/pretraining_check.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from lifelong.io import atomic_write_text
from lifelong.maml import MAMLSettings, adapted_fewshot_accuracy, pretrain_maml
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
    reports = []
    for method in ("protonet", "maml", "anil"):
        settings = ProtoNetSettings() if method == "protonet" else MAMLSettings.of(method)
        rows = [_check(method, settings, seed, args) for seed in map(int, args.seeds.split(","))]
        reports.append({"method": method, "settings": asdict(settings), "runs": rows})
    report = {"threads": args.threads, "methods": reports}
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


def _check(method: str, settings: Any, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    pool = omniglot_switching_pool(args.data_root, 3, seed=seed)
    pretraining = [d for d in pool if d.kind is DistributionKind.PRETRAIN]
    held_out = [d for d in pool if d.kind is DistributionKind.NEW]
    cached = encoder_cache_path(args.cache_dir, pretraining, settings, seed, method)
    from_cache = cached is not None and cached.is_file()
    began = time.perf_counter()
    if method == "protonet":
        encoder = pretrain_protonet(pretraining, settings, seed, cache_dir=args.cache_dir)
    else:
        encoder = pretrain_maml(pretraining, settings, seed, cache_dir=args.cache_dir)
    seconds = time.perf_counter() - began
    row: dict[str, Any] = {
        "seed": seed,
        "pretraining_alphabets": [d.name for d in pretraining],
        "held_out_alphabets": [d.name for d in held_out],
        "pretraining_s": seconds,
        "from_cache": from_cache,
    }
    for ways in (5, 20):
        if method == "protonet":
            mean, half = fewshot_accuracy(encoder, held_out, ways, episodes=500, seed=seed)
        else:
            mean, half = adapted_fewshot_accuracy(
                encoder, held_out, ways, settings, episodes=500, seed=seed
            )
        row[f"{ways}way_1shot"], row[f"{ways}way_1shot_ci95"] = mean, half
    print(
        f"{method} seed {seed}: pre-trained on {', '.join(row['pretraining_alphabets'])} in "
        f"{seconds:.0f} s; held out {', '.join(row['held_out_alphabets'])}: 5-way 1-shot "
        f"{100 * row['5way_1shot']:.1f} ± {100 * row['5way_1shot_ci95']:.1f}, 20-way 1-shot "
        f"{100 * row['20way_1shot']:.1f} ± {100 * row['20way_1shot_ci95']:.1f} (95% CI)",
        flush=True,
    )
    return row


if __name__ == "__main__":
    main()
