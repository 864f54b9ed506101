"""lifelong: continual learning with a task memory, benchmarked against Avalanche."""

import os

# torch and faiss each load their own OpenMP runtime, whose idle threads spin by default and
# starve each other's work on a small machine (memory/__init__.py has the measurement).
# Passive waiting must be chosen before torch loads; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Importing these modules registers the baselines and the project's agent.
from lifelong import agent as _agent  # noqa: F401
from lifelong import methods as _methods  # noqa: F401
from lifelong.agent import LifelongAgent, LifelongConfig, LifelongStrategy
from lifelong.agents import (
    AgentContext,
    AgentEntry,
    StreamFacts,
    UnknownAgentError,
    UnsupportedScenarioError,
    available_agents,
    get_agent,
    make_agent,
    register_agent,
)
from lifelong.config import ConfigError, RunConfig, StreamConfig, TrainConfig
from lifelong.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
)
from lifelong.run import run
from lifelong.saved_agents import AgentLoadError, SavedAgent, load_agent

__all__ = [
    "AgentContext",
    "AgentEntry",
    "AgentLoadError",
    "ConfigError",
    "LifelongAgent",
    "LifelongConfig",
    "LifelongStrategy",
    "RunConfig",
    "SavedAgent",
    "StreamConfig",
    "StreamFacts",
    "TrainConfig",
    "UnknownAgentError",
    "UnsupportedScenarioError",
    "available_agents",
    "average_accuracy",
    "backward_transfer",
    "forgetting",
    "forward_transfer",
    "get_agent",
    "load_agent",
    "make_agent",
    "register_agent",
    "run",
]
