"""Run configurations of the ``lifelong`` agent side by side through the normal CLI.

Shared by the ablation and search benchmarks: each configuration becomes a named variant of
``lifelong`` (``--agent-variant NAME=lifelong`` plus one ``--agent-option NAME.FIELD=VALUE``
per field that differs from the default), so the run is an ordinary one and works on every
executor, and each record keeps the variant's resolved settings.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence

from lifelong.agent import LifelongConfig
from lifelong.cli import main


def variant_flags(name: str, config: LifelongConfig) -> list[str]:
    """The CLI flags that define ``config`` as the variant ``name`` of ``lifelong``."""
    flags = ["--agent-variant", f"{name}=lifelong"]
    default = LifelongConfig()
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value != getattr(default, field.name):
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags += ["--agent-option", f"{name}.{field.name}={text}"]
    return flags


def run_variants(
    argv: Sequence[str],
    variants: Mapping[str, LifelongConfig],
    *,
    option: str,
    kind: str,
    lead: Sequence[str] = (),
    default_flags: Sequence[str] = (),
) -> int:
    """Run the variants that ``option`` picks through the CLI.

    Args:
        argv: Command-line arguments; ``option a,b`` picks variants (default: all), the
            rest go to the CLI.
        variants: Every known variant by name.
        option: The picking flag, e.g. ``--variants``.
        kind: What a variant is called in messages.
        lead: Agents run before the variants (e.g. ``lifelong`` itself).
        default_flags: CLI flags added unless ``argv`` already sets them.

    Returns:
        The CLI's exit status; 2 on an unknown variant.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(option, dest="chosen", default=",".join(variants))
    known, flags = parser.parse_known_args(argv)
    chosen = [name.strip() for name in known.chosen.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(variants))
    if unknown:
        print(f"error: unknown {kind}(s) {unknown}; choose from {list(variants)}")
        return 2
    for flag, value in zip(default_flags[::2], default_flags[1::2], strict=True):
        if flag not in flags:
            flags += [flag, value]
    for name in chosen:
        flags += variant_flags(name, variants[name])
    return main(["--agents", ",".join([*lead, *chosen]), *flags])
