"""The ``lifelong`` agent: look-ahead steps with stored-logit replay and a FAISS task memory.

Importing this package registers the agent as ``"lifelong"`` in ``lifelong.agents``.

- ``functional``: the maths as pure functions over parameter dicts (look-ahead meta step,
  stored-logit loss).
- ``task_retrieval``: the task memory of task sequences (which past tasks a new one resembles).
- ``LifelongAgent``: the stateful agent (``start_task``, ``observe``, ``predict``, ``end_task``).
- ``LifelongStrategy``: its Avalanche front end; ``build_lifelong(context, config)`` builds
  it with any ``LifelongConfig`` (ablations).
- ``switching``: ``SwitchingLearner``, the agent on task-switching streams (task records,
  routing, per-task fast weights); ``fast_weights``: its maths (the head, the last block's
  offsets, the meta-gradients through the head's adaptation, Reptile).
"""

from lifelong.agent import functional
from lifelong.agent.config import LifelongConfig
from lifelong.agent.core import LifelongAgent
from lifelong.agent.strategy import SCENARIOS, LifelongStrategy, build_lifelong

__all__ = [
    "SCENARIOS",
    "LifelongAgent",
    "LifelongConfig",
    "LifelongStrategy",
    "build_lifelong",
    "functional",
]
