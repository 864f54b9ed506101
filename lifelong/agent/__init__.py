"""The ``lifelong`` agent: a meta-learner with a FAISS task memory.

Importing this package registers the agent as ``"lifelong"`` in ``lifelong.agents``.

- ``functional``: the maths as pure functions over parameter dicts (La-MAML meta step,
  stored-logit loss, task embedding).
- ``LifelongAgent``: the stateful agent (``adapt``, ``observe``, ``predict``, ``end_task``).
- ``LifelongStrategy``: its Avalanche front end; ``build_lifelong(context, config)`` builds
  it with any ``LifelongConfig`` (ablations).
"""

from lifelong.agent import functional
from lifelong.agent.config import LifelongConfig
from lifelong.agent.core import LifelongAgent, Retrieved
from lifelong.agent.strategy import SCENARIOS, LifelongStrategy, build_lifelong

__all__ = [
    "SCENARIOS",
    "LifelongAgent",
    "LifelongConfig",
    "LifelongStrategy",
    "Retrieved",
    "build_lifelong",
    "functional",
]
