"""Ablations of the ``lifelong`` agent, run through the normal CLI protocol.

Runs, as named variants of ``lifelong``, one agent per ablation (``lifelong``'s default
config with one component switched off) through ``lifelong.cli.main`` with any extra flags:

    .venv/bin/python benchmarks/agent_ablation.py --stream split-digits --epochs 3 \
        --seeds 0,1,2 --out runs/ablation

These are measurements on the stream's test data: report them, never tune on them. Pick
some with ``--variants a,b``; any executor (``--executor process``) runs them.
"""

from __future__ import annotations

import sys

from agent_variants import run_variants

from lifelong.agent import LifelongConfig

ABLATIONS: dict[str, LifelongConfig] = {
    "ll-no-lookahead": LifelongConfig(lookahead=False),
    "ll-no-distill": LifelongConfig(distill_weight=0.0),
    "ll-no-replay": LifelongConfig(replay=False),
    "ll-two-steps": LifelongConfig(steps_per_batch=2),
    "ll-no-meta": LifelongConfig(meta=False),
    "ll-no-retrieval": LifelongConfig(retrieval=False),
    "ll-no-retrieval-replay": LifelongConfig(retrieval_replay=False),
    "ll-no-meta-no-retrieval": LifelongConfig(meta=False, retrieval=False),
    "ll-no-slow": LifelongConfig(slow_momentum=0.0),
}
"""``lifelong``'s default configuration with one component switched off, and with the second
step per batch that the wall-time limit ruled out (``ll-two-steps``), to show what it costs
and buys. ``ll-no-meta-no-retrieval`` is the agent before its task memory and learned
learning rates came back to task sequences; ``ll-no-slow`` the agent before its slow
weights."""

if __name__ == "__main__":
    sys.exit(
        run_variants(
            sys.argv[1:], ABLATIONS, option="--variants", kind="variant", lead=["lifelong"]
        )
    )
