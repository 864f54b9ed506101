"""Ablations of the ``lifelong`` agent, run through the normal CLI protocol.

Registers, in this process only, one agent per ablation (``lifelong``'s default config with
one component switched off) and hands them to ``lifelong.cli.main`` with any extra flags:

    .venv/bin/python benchmarks/agent_ablation.py --stream split-digits --epochs 3 \
        --seeds 0,1,2 --out runs/ablation

These are measurements on the stream's test data: report them, never tune on them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lifelong.agent import SCENARIOS, LifelongConfig, build_lifelong
from lifelong.agent.strategy import LifelongStrategy
from lifelong.agents import AgentContext, register_agent
from lifelong.cli import main

ABLATIONS: dict[str, LifelongConfig] = {
    "ll-no-retrieval": LifelongConfig(embed=False),
    "ll-uniform-replay": LifelongConfig(retrieved_share=0.0, nearest_share=0.0),
    "ll-fixed-lrs": LifelongConfig(learn_lrs=False),
    "ll-no-distill": LifelongConfig(distill_weight=0.0),
    "ll-one-step": LifelongConfig(steps_per_batch=1),
}


def _register() -> None:
    for name, config in ABLATIONS.items():

        def factory(context: AgentContext, config: LifelongConfig = config) -> LifelongStrategy:
            return build_lifelong(context, config)

        register_agent(
            name, description=f"lifelong ablation: {config}", scenarios=SCENARIOS, uses_memory=True
        )(factory)


def run(argv: Sequence[str]) -> int:
    """Register the ablations and run the CLI over ``lifelong`` and them.

    ``--variants a,b`` picks some of ``ABLATIONS`` (default: all); the other flags go to the
    CLI.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--variants", default=",".join(ABLATIONS))
    known, flags = parser.parse_known_args(argv)
    chosen = [name.strip() for name in known.variants.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ABLATIONS))
    if unknown:
        print(f"error: unknown variant(s) {unknown}; choose from {list(ABLATIONS)}")
        return 2
    _register()
    return main(["--agents", ",".join(["lifelong", *chosen]), *flags])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
