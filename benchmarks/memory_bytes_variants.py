"""How ``lifelong`` spends a byte budget: its sample codec and memory policy, side by side.

Runs, as named variants of ``lifelong``, one agent per way of keeping the samples through
``lifelong.cli.main`` with the other flags; ``benchmarks/memory_bytes.sh`` runs it on held-out
training data (``--validation-fraction 0.2``) to choose ``LifelongConfig.bytes_codec`` and
``memory_policy``:

    .venv/bin/python benchmarks/memory_bytes_variants.py --stream rotated-mnist \\
        --data-root ../shared/data/mnist --memory-bytes 627200 --validation-fraction 0.2 \\
        --seeds 0,1,2 --out runs/memory_bytes/validation_rotated
"""

from __future__ import annotations

import sys

from agent_variants import run_variants

from lifelong.agent import LifelongConfig

_RETRAIN = "none"
"""No fallback codec: the codec retrains whenever it needs to."""

WAYS: dict[str, LifelongConfig] = {
    "ll-float32": LifelongConfig(bytes_codec="none"),
    "ll-sq8": LifelongConfig(bytes_codec="SQ8", bytes_codec_fallback=_RETRAIN),
    "ll-sq4": LifelongConfig(bytes_codec="SQ4", bytes_codec_fallback=_RETRAIN),
    "ll-float32-task-balanced": LifelongConfig(bytes_codec="none", memory_policy="task_balanced"),
    "ll-sq8-task-balanced": LifelongConfig(
        bytes_codec="SQ8", bytes_codec_fallback=_RETRAIN, memory_policy="task_balanced"
    ),
    "ll-sq4-task-balanced": LifelongConfig(
        bytes_codec="SQ4", bytes_codec_fallback=_RETRAIN, memory_policy="task_balanced"
    ),
    "ll-pq392x4": LifelongConfig(bytes_codec="PQ392x4", bytes_codec_fallback=_RETRAIN),
    "ll-pq196x4": LifelongConfig(bytes_codec="PQ196x4", bytes_codec_fallback=_RETRAIN),
    "ll-pq196x4-sq4": LifelongConfig(bytes_codec="PQ196x4", bytes_codec_fallback="SQ4"),
}
"""Samples kept as float32, SQ8 or SQ4 codes, under the class- or the task-balanced policy,
or as product-quantised codes of 196 or 98 bytes (2-pixel and 4-pixel sub-vectors, 16
centroids each) under the class-balanced policy, the 98-byte ones also with SQ4 as the
fallback the first time they need retraining."""

if __name__ == "__main__":
    sys.exit(run_variants(sys.argv[1:], WAYS, option="--ways", kind="way of storing"))
