"""Ablations of the ``lifelong`` agent, run through the normal CLI protocol.

Registers, in this process only, one agent per ablation (``lifelong``'s default config with
one component switched off) and hands them to ``lifelong.cli.main`` with any extra flags:

    .venv/bin/python benchmarks/agent_ablation.py --stream split-digits --epochs 3 \
        --seeds 0,1,2 --out runs/ablation

These are measurements on the stream's test data: report them, never tune on them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lifelong.agent import SCENARIOS, LifelongConfig, build_lifelong
from lifelong.agent.strategy import LifelongStrategy
from lifelong.agents import AgentContext, register_agent
from lifelong.cli import main

ABLATIONS: dict[str, LifelongConfig] = {
    "ll-no-retrieval": LifelongConfig(embed=False),
    "ll-no-init": LifelongConfig(init_from_memory=False, imprint=False),
    "ll-fixed-lrs": LifelongConfig(learn_lrs=False),
    "ll-uniform-replay": LifelongConfig(retrieved_share=0.0, nearest_share=0.0),
    "ll-replay10": LifelongConfig(replay_batch=10),
}


def _register() -> None:
    for name, config in ABLATIONS.items():

        def factory(context: AgentContext, config: LifelongConfig = config) -> LifelongStrategy:
            return build_lifelong(context, config)

        register_agent(
            name, description=f"lifelong ablation: {config}", scenarios=SCENARIOS, uses_memory=True
        )(factory)


def run(argv: Sequence[str]) -> None:
    """Register the ablations and run the CLI over ``lifelong`` and all of them."""
    _register()
    main(["--agents", ",".join(["lifelong", *ABLATIONS]), *argv])


if __name__ == "__main__":
    run(sys.argv[1:])
