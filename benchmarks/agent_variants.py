"""Run configurations of the ``lifelong`` agent side by side through the normal CLI.

Shared by ``agent_ablation.py`` and ``agent_search.py``: each variant is registered as an
agent in this process only, so the run must use the local executor (pool or Ray workers
would not know the names).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from lifelong.agent import SCENARIOS, LifelongConfig, build_lifelong
from lifelong.agent.strategy import LifelongStrategy
from lifelong.agents import AgentContext, register_agent
from lifelong.cli import main


def register_variants(variants: Mapping[str, LifelongConfig], kind: str) -> None:
    """Register one agent per configuration, described as ``lifelong <kind>: <config>``."""
    for name, config in variants.items():

        def factory(context: AgentContext, config: LifelongConfig = config) -> LifelongStrategy:
            return build_lifelong(context, config)

        register_agent(
            name,
            description=f"lifelong {kind}: {config}",
            scenarios=SCENARIOS,
            uses_memory=True,
        )(factory)


def run_variants(
    argv: Sequence[str],
    variants: Mapping[str, LifelongConfig],
    *,
    option: str,
    kind: str,
    lead: Sequence[str] = (),
    default_flags: Sequence[str] = (),
) -> int:
    """Register the variants that ``option`` picks and run them through the CLI.

    Args:
        argv: Command-line arguments; ``option a,b`` picks variants (default: all), the
            rest go to the CLI.
        variants: Every known variant by name.
        option: The picking flag, e.g. ``--variants``.
        kind: What a variant is called in messages and descriptions.
        lead: Agents run before the variants (e.g. ``lifelong`` itself).
        default_flags: CLI flags added unless ``argv`` already sets them.

    Returns:
        The CLI's exit status; 2 on an unknown variant or a non-local executor.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(option, dest="chosen", default=",".join(variants))
    parser.add_argument("--executor", default="local")
    known, flags = parser.parse_known_args(argv)
    if known.executor != "local":
        print(f"error: --executor {known.executor} cannot run these {kind}s; use local")
        return 2
    chosen = [name.strip() for name in known.chosen.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(variants))
    if unknown:
        print(f"error: unknown {kind}(s) {unknown}; choose from {list(variants)}")
        return 2
    register_variants({name: variants[name] for name in chosen}, kind)
    for flag, value in zip(default_flags[::2], default_flags[1::2], strict=True):
        if flag not in flags:
            flags += [flag, value]
    return main(["--agents", ",".join([*lead, *chosen]), *flags])
