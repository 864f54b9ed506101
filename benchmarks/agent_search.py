"""Choose the ``lifelong`` agent's hyperparameters on held-out training data, never on test.

Registers, in this process only, one agent per candidate configuration and runs them all
through the normal CLI protocol with ``--validation-fraction`` (default 0.2), so every
number it prints comes from a share of each task's *training* data held out from training:

    .venv/bin/python benchmarks/agent_search.py --stream rotated-mnist \\
        --data-root ../shared/data/mnist --seeds 0 --out runs/search/rotated

Extra flags go to ``run_stream.py``; the candidates are ``CANDIDATES`` below.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from lifelong.agent import SCENARIOS, LifelongConfig, build_lifelong
from lifelong.agent.strategy import LifelongStrategy
from lifelong.agents import AgentContext, register_agent
from lifelong.cli import main

UNIFORM = {"retrieved_share": 0.0, "nearest_share": 0.0}
MILD = {"retrieved_share": 0.2, "nearest_share": 0.1}

CANDIDATES: dict[str, Mapping[str, Any]] = {
    "c-default": {},
    "c-uniform": UNIFORM,
    "c-mild": MILD,
    "c-distill": {"distill_weight": 0.5},
    "c-uniform-distill": {**UNIFORM, "distill_weight": 0.5},
    "c-mild-distill": {**MILD, "distill_weight": 0.5},
    "c-mild-distill1": {**MILD, "distill_weight": 1.0},
    "c-mild-distill-2steps": {**MILD, "distill_weight": 0.5, "steps_per_batch": 2},
    "c-uniform-distill-2steps": {**UNIFORM, "distill_weight": 0.5, "steps_per_batch": 2},
    "c-uniform-distill-3steps": {**UNIFORM, "distill_weight": 0.5, "steps_per_batch": 3},
    "c-nearest-distill-2steps": {
        "retrieved_share": 0.0,
        "nearest_share": 0.3,
        "distill_weight": 0.5,
        "steps_per_batch": 2,
    },
    "c-distill-2steps": {"distill_weight": 0.5, "steps_per_batch": 2},
}


def register(candidates: Mapping[str, Mapping[str, Any]]) -> None:
    """Register one agent per candidate configuration (this process only)."""
    for name, overrides in candidates.items():
        config = LifelongConfig(**overrides)

        def factory(context: AgentContext, config: LifelongConfig = config) -> LifelongStrategy:
            return build_lifelong(context, config)

        register_agent(
            name,
            description=f"lifelong candidate {dict(overrides)}",
            scenarios=SCENARIOS,
            uses_memory=True,
        )(factory)


def run(argv: Sequence[str]) -> int:
    """Register the candidates and run them on validation data through the CLI.

    ``--candidates a,b`` picks some of ``CANDIDATES`` (default: all); the other flags go to
    the CLI.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    known, flags = parser.parse_known_args(argv)
    chosen = [name.strip() for name in known.candidates.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(CANDIDATES))
    if unknown:
        print(f"error: unknown candidate(s) {unknown}; choose from {list(CANDIDATES)}")
        return 2
    register({name: CANDIDATES[name] for name in chosen})
    if "--validation-fraction" not in flags:
        flags += ["--validation-fraction", "0.2"]
    return main(["--agents", ",".join(chosen), *flags])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
