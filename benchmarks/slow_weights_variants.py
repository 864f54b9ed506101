"""How the ``lifelong`` agent's slow weights were chosen: momentum and prediction share.

Runs, as named variants of ``lifelong``, one agent per setting of
``LifelongConfig.slow_momentum`` and ``slow_share`` through ``lifelong.cli.main`` with the other
flags;
``benchmarks/slow_weights_search.sh`` runs it on held-out training data
(``--validation-fraction 0.2``) of rotated- and permuted-MNIST at memory 200:

    .venv/bin/python benchmarks/slow_weights_variants.py --stream rotated-mnist \\
        --data-root ../shared/data/mnist --memory-size 200 --validation-fraction 0.2 \\
        --seeds 0,1,2 --out runs/slow_weights/rotated-mnist
"""

from __future__ import annotations

import sys

from agent_variants import run_variants

from lifelong.agent import LifelongConfig

SETTINGS: dict[str, LifelongConfig] = {
    "ll-no-slow": LifelongConfig(slow_momentum=0.0),
    **{
        f"ll-slow{momentum}-share{share}": LifelongConfig(
            slow_momentum=momentum, slow_share=share
        )
        for momentum in (0.99, 0.995, 0.998, 0.999)
        for share in (0.5, 1.0)
    },
    "ll-slow0.998-share0.4": LifelongConfig(slow_momentum=0.998, slow_share=0.4),
    "ll-slow0.998-share0.7": LifelongConfig(slow_momentum=0.998, slow_share=0.7),
    "ll-slow-kept": LifelongConfig(slow_budget_share=1.0),
}
"""No slow weights; four momenta, each predicting with the half-and-half mixture or the slow
weights alone; two more shares at the chosen momentum; and the chosen setting kept under any
byte budget (``ll-slow-kept``: ``slow_budget_share`` 1), to test the budget rule."""

if __name__ == "__main__":
    sys.exit(run_variants(sys.argv[1:], SETTINGS, option="--settings", kind="setting"))
