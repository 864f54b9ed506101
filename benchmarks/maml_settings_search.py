"""MAML and ANIL steps and learning rates, chosen on the pre-training alphabets only.

Pre-trains one setting (``lifelong.maml.pretrain_maml``, seed 0, no cache) on the
``omniglot-switching`` pool's pre-training alphabets, then measures 5-way 1-shot accuracy
after adaptation on those alphabets' *test* drawings (never used in pre-training; the
stream's new alphabets, the test data, are not touched), for several test-time step counts
and learning rates. One setting per call; ``benchmarks/results/maml_settings/README.md``
holds the grid that chose ``MAMLSettings``' defaults::

    python benchmarks/maml_settings_search.py all 5 1500 0.1
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from lifelong.maml import MAMLSettings, adapted_fewshot_accuracy, pretrain_maml
from streams.omniglot_switching import omniglot_switching_pool
from streams.switching import DistributionKind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inner", choices=("all", "head"))
    parser.add_argument("steps", type=int, help="inner steps in pre-training")
    parser.add_argument("episodes", type=int)
    parser.add_argument("lr", type=float, help="inner learning rate in pre-training")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data/omniglot"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    pool = omniglot_switching_pool(args.data_root, 3, seed=0)
    pretraining = [d for d in pool if d.kind is DistributionKind.PRETRAIN]
    settings = MAMLSettings(
        inner=args.inner, episodes=args.episodes, inner_steps=args.steps, inner_lr=args.lr
    )
    began = time.perf_counter()
    encoder = pretrain_maml(pretraining, settings, 0, progress=False)
    print(
        f"{args.inner} train steps {args.steps} lr {args.lr} episodes {args.episodes} "
        f"{time.perf_counter() - began:.0f}s",
        flush=True,
    )
    for test_steps in (1, 3, 5, 10):
        for test_lr in (args.lr, args.lr / 4):
            changed = dataclasses.replace(settings, test_steps=test_steps, inner_lr=test_lr)
            mean, half = adapted_fewshot_accuracy(encoder, pretraining, 5, changed, episodes=150)
            print(
                f"  test steps {test_steps} lr {test_lr}: {100 * mean:.1f} ± {100 * half:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
