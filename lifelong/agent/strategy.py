"""The ``lifelong`` agent as an Avalanche strategy, registered in ``lifelong.agents``.

``LifelongStrategy`` is one level below ``SupervisedTemplate``: it keeps Avalanche's
experience loop, data loaders, evaluation and plugin callbacks, and replaces only the body of
a training epoch (each batch goes to ``LifelongAgent.observe``) and the task boundaries
(``start_task`` before an experience, ``end_task`` after it).
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from lifelong.agent.config import LifelongConfig
from lifelong.agent.core import LifelongAgent
from lifelong.agents import AgentContext, register_agent
from streams import Scenario

SCENARIOS = frozenset({Scenario.CLASS_INCREMENTAL, Scenario.DOMAIN_INCREMENTAL})
"""Single-head scenarios; task-incremental (multi-head) models are not supported yet."""


class LifelongStrategy(SupervisedTemplate):
    """Avalanche front end of ``LifelongAgent``.

    Training batches fire ``before_training_iteration`` and ``after_training_iteration``
    (with ``mb_output`` and ``loss`` set, so training metrics work); the forward, backward
    and update callbacks do not fire, because the agent's meta step replaces them.
    Evaluation is Avalanche's own.

    References:
        Gupta, Yadav & Paull, "La-MAML: Look-ahead Meta Learning for Continual Learning",
        NeurIPS 2020.

    Args:
        agent: The core agent; it trains ``agent.model``.
        **kwargs: Passed to ``SupervisedTemplate`` (evaluator, plugins, batch sizes, ...).
    """

    def __init__(self, *, agent: LifelongAgent, **kwargs: Any) -> None:
        # The optimizer is never stepped: the agent moves the weights itself.
        optimizer = torch.optim.SGD(agent.model.parameters(), lr=agent.lr)
        super().__init__(
            model=agent.model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(), **kwargs
        )
        self.agent = agent

    def stored_samples(self) -> int:
        """Samples held in the agent's episodic memory."""
        return self.agent.stored_samples()

    def run_report(self) -> dict[str, Any]:
        """What a run records about the agent beside its metrics.

        Returns:
            ``extra_state_bytes``: the stored logits kept beside the stored samples.
        """
        return {"extra_state_bytes": self.agent.extra_bytes}

    def _before_training_exp(self, **kwargs: Any) -> None:
        super()._before_training_exp(**kwargs)
        self.agent.start_task()

    def training_epoch(self, **kwargs: Any) -> None:
        """One pass over the experience's data; each batch goes to ``LifelongAgent.observe``."""
        for batch in self.dataloader:
            if self._stop_training:
                break
            self.mbatch = batch
            self._unpack_minibatch()
            self._before_training_iteration(**kwargs)
            step = self.agent.observe(self.mb_x, self.mb_y)
            self.mb_output = step.logits
            self.loss = step.meta_loss
            self._after_training_iteration(**kwargs)

    def _after_training_exp(self, **kwargs: Any) -> None:
        assert self.experience is not None
        x, y = _tensors(self.experience.dataset, self.device)
        self.agent.end_task(x, y)
        super()._after_training_exp(**kwargs)


def _tensors(dataset: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sample of an Avalanche dataset, in order, as ``(x, y)`` tensors.

    Indexing, not a DataLoader: a loader would draw from the global torch RNG and so change
    the run's later random numbers.
    """
    items = [dataset[i] for i in range(len(dataset))]
    x = torch.stack([item[0] for item in items]).to(device)
    y = torch.as_tensor([int(item[1]) for item in items], device=device)
    return x, y


def build_lifelong(context: AgentContext, config: LifelongConfig | None = None) -> LifelongStrategy:
    """Build the ``lifelong`` strategy for a run's context with a given configuration.

    Args:
        context: What the run built (model, training settings, evaluator, plugins).
        config: The agent's hyperparameters; ``LifelongConfig()`` by default.

    Returns:
        A strategy ready for ``strategy.train(train_stream, eval_streams=[test_stream])``.
    """
    agent = LifelongAgent(
        context.model,
        n_classes=context.stream.n_classes,
        lr=context.train.lr,
        memory_size=context.train.memory_size,
        config=config,
        seed=context.seed,
    )
    return LifelongStrategy(
        agent=agent,
        train_mb_size=context.train.batch_size,
        train_epochs=context.train.epochs,
        eval_mb_size=context.train.eval_batch_size,
        device=context.device,
        evaluator=context.evaluator,
        plugins=list(context.plugins),
        eval_every=0,
    )


@register_agent(
    "lifelong",
    description=(
        "This project's agent: a first-order look-ahead step per batch, replaying "
        "stored samples with the logits they were stored with."
    ),
    scenarios=SCENARIOS,
    uses_memory=True,
)
def lifelong(context: AgentContext) -> LifelongStrategy:
    """The ``lifelong`` agent at its default configuration."""
    return build_lifelong(context)
