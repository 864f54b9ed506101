"""Choose the ``lifelong`` agent's hyperparameters on held-out training data, never on test.

Runs, as named variants of ``lifelong``, one agent per candidate configuration, all
through the normal CLI protocol with ``--validation-fraction`` (default 0.2), so every
number it prints comes from a share of each task's *training* data held out from training:

    .venv/bin/python benchmarks/agent_search.py --stream rotated-mnist \\
        --data-root ../shared/data/mnist --seeds 0 --out runs/search/rotated

Extra flags go to ``run_stream.py``; the candidates are ``CANDIDATES`` below.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from agent_variants import run_variants

from lifelong.agent import LifelongConfig

CANDIDATES: dict[str, Mapping[str, Any]] = {
    "c-no-distill": {"distill_weight": 0.0, "steps_per_batch": 1},
    "c-distill": {"distill_weight": 0.5, "steps_per_batch": 1},
    "c-distill1": {"distill_weight": 1.0, "steps_per_batch": 1},
    "c-distill-2steps": {"distill_weight": 0.5, "steps_per_batch": 2},
    "c-distill-replay100": {"distill_weight": 0.5, "steps_per_batch": 1, "replay_batch": 100},
    "c-no-lookahead": {"distill_weight": 0.5, "steps_per_batch": 1, "lookahead": False},
    "c-no-lookahead-2steps": {"distill_weight": 0.5, "steps_per_batch": 2, "lookahead": False},
    "c-no-lookahead-2steps-distill1": {
        "distill_weight": 1.0,
        "steps_per_batch": 2,
        "lookahead": False,
    },
}
"""The search that set ``distill_weight`` (commit 5f924d4) also crossed these with replay
weightings towards retrieved tasks; those were removed after they helped nowhere. The
second search (``steps_per_batch``, ``replay_batch``) added split-omniglot, where two steps
per batch cost more than twice replay's wall time."""


if __name__ == "__main__":
    sys.exit(
        run_variants(
            sys.argv[1:],
            {name: LifelongConfig(**overrides) for name, overrides in CANDIDATES.items()},
            option="--candidates",
            kind="candidate",
            default_flags=["--validation-fraction", "0.2"],
        )
    )
