"""The ``lifelong`` agent as an Avalanche strategy, registered in ``lifelong.agents``.

``LifelongStrategy`` is one level below ``SupervisedTemplate``: it keeps Avalanche's
experience loop and plugin callbacks, and replaces the body of a training epoch (shuffled
batches of the experience's tensors go to ``LifelongAgent.observe``) and the task boundaries
(``start_task`` before an experience, ``end_task`` after it).
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from lifelong.agent.config import SWITCHING_FIELDS, LifelongConfig
from lifelong.agent.core import LifelongAgent
from lifelong.agent.switching import SwitchingLearner
from lifelong.agents import AgentContext, register_agent
from lifelong.budget import FLOAT32_BYTES, sample_bytes, samples_within
from lifelong.config import ConfigError
from lifelong.methods.replay_coded import budget_errors_as_memory_budget, codec_report, coded_memory
from streams import Scenario, dataset_tensors

SCENARIOS = frozenset({Scenario.CLASS_INCREMENTAL, Scenario.DOMAIN_INCREMENTAL})
"""Single-head scenarios; task-incremental (multi-head) models are not supported yet."""


_NO_DATA = (torch.empty(0), torch.empty(0, dtype=torch.long))
"""The strategy's task data between experiences (nothing, so checkpoints stay small)."""


class LifelongStrategy(SupervisedTemplate):
    """Avalanche front end of ``LifelongAgent``.

    Training batches fire ``before_training_iteration`` and ``after_training_iteration``
    (with ``mb_output`` and ``loss`` set, so training metrics work); the forward, backward
    and update callbacks do not fire, because the agent's meta step replaces them.
    Evaluation is Avalanche's own (or the tensor evaluator's), of ``agent.network``.

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
        # Avalanche evaluates ``agent.network`` (the slow and fast weights' mixture, or the
        # trained network itself); the agent trains ``agent.model`` inside it.
        super().__init__(
            model=agent.network, optimizer=optimizer, criterion=nn.CrossEntropyLoss(), **kwargs
        )
        self.agent = agent
        self._task_data = _NO_DATA

    def stored_samples(self) -> int:
        """Samples held in the agent's episodic memory."""
        return self.agent.stored_samples()

    def memory_bytes_by_kind(self) -> dict[str, int]:
        """Stored bytes by kind (``lifelong.budget``)."""
        return self.agent.memory_bytes_by_kind()

    def run_report(self) -> dict[str, Any]:
        """What a run records about the agent beside its metrics.

        Returns:
            ``extra_state_bytes``: the stored logits kept beside the stored samples; under a
            byte budget, ``codec``: the codec, its retrainings and reconstruction errors.
        """
        report: dict[str, Any] = {
            "extra_state_bytes": self.agent.extra_bytes,
            **self.agent.report(),
        }
        if self.agent.episodic.byte_budget is not None:
            report["codec"] = codec_report(self.agent.episodic)
        return report

    def _before_training_exp(self, **kwargs: Any) -> None:
        super()._before_training_exp(**kwargs)
        assert self.experience is not None
        x, y = dataset_tensors(self.experience.dataset)
        self._task_data = (x.to(self.device), y.to(self.device))
        self.agent.start_task()

    def training_epoch(self, **kwargs: Any) -> None:
        """One shuffled pass over the experience's tensors; each batch goes to ``observe``.

        Batches come straight from the experience's tensors, not through a data loader's
        per-sample indexing; the shuffle draws from torch's global generator, as the
        loader's would.
        """
        x, y = self._task_data
        order = torch.randperm(len(y))
        no_task = torch.zeros(self.train_mb_size, dtype=torch.long, device=self.device)
        for start in range(0, len(y), self.train_mb_size):
            if self._stop_training:
                break
            batch = order[start : start + self.train_mb_size].to(self.device)
            self.mbatch = [x[batch], y[batch], no_task[: len(batch)]]
            self._unpack_minibatch()
            self._before_training_iteration(**kwargs)
            step = self.agent.observe(self.mb_x, self.mb_y)
            self.mb_output = step.logits
            self.loss = step.meta_loss
            self._after_training_iteration(**kwargs)

    def _after_training_exp(self, **kwargs: Any) -> None:
        with budget_errors_as_memory_budget():
            self.agent.end_task(*self._task_data)
        self._task_data = _NO_DATA
        super()._after_training_exp(**kwargs)


def build_lifelong(context: AgentContext, config: LifelongConfig | None = None) -> LifelongStrategy:
    """Build the ``lifelong`` strategy for a run's context with a given configuration.

    Args:
        context: What the run built (model, training settings, evaluator, plugins).
        config: The agent's hyperparameters; ``LifelongConfig()`` by default.

    Returns:
        A strategy ready for ``strategy.train(train_stream, eval_streams=[test_stream])``.

    Raises:
        ConfigError: If a setting of task-switching streams only was changed.
    """
    changed = (config or LifelongConfig()).changed(SWITCHING_FIELDS)
    if changed:
        raise ConfigError(
            f"lifelong settings {', '.join(changed)} apply to task-switching streams only; "
            "drop them for this stream"
        )
    settings = config or LifelongConfig()
    budget = context.train.memory_bytes
    if budget is not None:
        # Check the codec string and that one sample fits before anything runs.
        logits = context.stream.n_classes * FLOAT32_BYTES if settings.distill_weight > 0 else 0
        codec, fallback = settings.byte_codecs()
        if codec is None:
            what = "float32 input" + (" and its logits" if logits else "")
            samples_within("lifelong", budget, sample_bytes(context.stream) + logits, what=what)
        else:
            coded_memory(
                "lifelong", context, codec, extra_per_sample=logits, fallback=fallback
            )
    with budget_errors_as_memory_budget():
        agent = _agent(context, config)
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


def _agent(context: AgentContext, config: LifelongConfig | None) -> LifelongAgent:
    return LifelongAgent(
        context.model,
        n_classes=context.stream.n_classes,
        lr=context.train.lr,
        memory_size=context.train.memory_size,
        config=config,
        seed=context.seed,
        memory_bytes=context.train.memory_bytes,
        n_tasks=context.stream.n_tasks,
    )


@register_agent(
    "lifelong",
    description=(
        "This project's agent: look-ahead steps with stored-logit replay on task sequences; "
        "FAISS task memory and meta-learned fast weights on task-switching streams."
    ),
    scenarios=SCENARIOS | {Scenario.TASK_SWITCHING},
    uses_memory=True,
    options=LifelongConfig,
)
def lifelong(context: AgentContext) -> LifelongStrategy | SwitchingLearner:
    """The ``lifelong`` agent with the run's settings (``context.options``)."""
    if context.stream.scenario is Scenario.TASK_SWITCHING:
        return build_switching(context, context.options)
    return build_lifelong(context, context.options)


def build_switching(
    context: AgentContext, config: LifelongConfig | None = None
) -> SwitchingLearner:
    """Build the ``lifelong`` learner of a task-switching stream (``agent.switching``)."""
    return SwitchingLearner(
        context.model,
        ways=context.stream.n_classes,
        memory_size=context.train.memory_size,
        config=config,
        seed=context.seed,
    )
