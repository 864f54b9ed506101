"""The stateful agent: a thin class that calls the pure functions of ``functional`` in order.

Verbs: ``start_task``, ``observe`` (one incoming batch: replay draws and meta steps),
``predict`` and ``end_task`` (store samples and their logits).
"""

from __future__ import annotations

import torch
from torch import nn

from lifelong.agent import functional as fn
from lifelong.agent.config import LifelongConfig
from memory import EpisodicMemory


class LifelongAgent:
    """Look-ahead learner with stored-logit replay from a bounded episodic memory.

    On every incoming batch (``observe``) it takes ``steps_per_batch`` first-order look-ahead
    steps, each on the batch plus a fresh draw of ``replay_batch`` stored samples, uniform
    over past tasks; replayed samples are also pulled towards the logits the model gave them
    when they were stored. At the end of a task (``end_task``) it offers the task's samples
    to the episodic memory and keeps the trained model's logits of those it stored.

    References:
        Gupta, Yadav & Paull, "La-MAML: Look-ahead Meta Learning for Continual Learning",
        NeurIPS 2020. Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", 2019.
        Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
        Baseline", NeurIPS 2020 (the stored-logit replay).

    Args:
        model: The network to train; its parameters are updated in place.
        n_classes: Output units of the model.
        lr: Learning rate of every step (the run's ``lr``).
        memory_size: Most samples the episodic memory holds.
        config: The agent's hyperparameters.
        seed: Seed of the episodic memory's generator.
    """

    def __init__(
        self,
        model: nn.Module,
        n_classes: int,
        lr: float,
        memory_size: int,
        config: LifelongConfig | None = None,
        seed: int = 0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if memory_size < 1:
            raise ValueError(
                f"the lifelong agent stores samples but memory_size is {memory_size}; "
                "set memory_size to 1 or more"
            )
        self.model = model
        self.config = config if config is not None else LifelongConfig()
        self.n_classes = n_classes
        self.lr = lr
        self.episodic = EpisodicMemory(memory_size, self.config.memory_policy, seed=seed)
        self.task = -1
        # Every past task weighs alike, however many samples the memory kept of it.
        self._replay_weights: dict[int, float] = {}
        self._stored_logits: torch.Tensor | None = None

    # --- verbs -------------------------------------------------------------------------

    def start_task(self) -> None:
        """Begin the next task: replay draws from the tasks stored so far."""
        self.task += 1
        self._replay_weights = dict.fromkeys(self.episodic.task_counts(), 1.0)

    def observe(self, x: torch.Tensor, y: torch.Tensor) -> fn.MetaStep:
        """Learn from one incoming batch: ``steps_per_batch`` meta steps, each with replay.

        Returns:
            The last step's result, with the first step's inner loss and logits (the
            incoming batch before any update).
        """
        if self.task < 0:
            raise RuntimeError("call start_task() before observe()")
        first = step = self._meta_step(x, y)
        for _ in range(self.config.steps_per_batch - 1):
            step = self._meta_step(x, y)
        return step._replace(logits=first.logits, inner_loss=first.inner_loss)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch."""
        with torch.no_grad():
            return self.model(x)

    def end_task(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Offer the task's samples to the episodic memory and keep the stored ones' logits.

        The samples are offered once, here, rather than batch by batch: replay draws only
        from past tasks, so nothing is lost.

        Args:
            x: The task's training inputs (each offered once).
            y: Their labels.
        """
        if self.task < 0:
            raise RuntimeError("end_task() called before start_task(); start a task first")
        if len(x) != len(y):
            raise ValueError(f"end_task got {len(x)} inputs but {len(y)} labels; pass pairs")
        if not len(x):
            return
        slots = self.episodic.add_batch(x.cpu(), y.cpu(), self.task)
        if self.config.distill_weight > 0:
            self._store_logits(x, slots)

    # --- accounting --------------------------------------------------------------------

    def stored_samples(self) -> int:
        """Samples in the episodic memory (bounded by ``memory_size``)."""
        return len(self.episodic)

    @property
    def extra_bytes(self) -> int:
        """Bytes kept beside the stored samples: their stored logits (float32)."""
        logits = self._stored_logits
        return 0 if logits is None else logits.numel() * logits.element_size()

    # --- steps -------------------------------------------------------------------------

    def _meta_step(self, x: torch.Tensor, y: torch.Tensor) -> fn.MetaStep:
        """One meta step on the batch plus a fresh replay draw; updates the model in place."""
        combined = (x, y)
        targets = None
        if self.config.replay and self._replay_weights:
            drawn = self.episodic.sample(
                self.config.replay_batch, task_weights=self._replay_weights
            )
            combined = (
                torch.cat([x, drawn.x.to(x.device, x.dtype)]),
                torch.cat([y, drawn.y.to(y)]),
            )
            if self.config.distill_weight > 0 and self._stored_logits is not None:
                stored = self._stored_logits[drawn.slot].to(x.device)
                targets = fn.LogitTargets(stored, self.config.distill_weight)
        params = dict(self.model.named_parameters())
        step = fn.meta_step(
            self.model,
            params,
            (x, y),
            combined,
            lr=self.lr,
            lookahead=self.config.lookahead,
            commit_lookahead=self.config.commit_lookahead,
            targets=targets,
        )
        with torch.no_grad():
            torch._foreach_copy_(list(params.values()), [step.params[k] for k in params])
        return step

    def _store_logits(self, x: torch.Tensor, slots: torch.Tensor) -> None:
        """Keep the logits the trained model gives the samples just stored, by slot.

        Logits come from the end of the task, after the model has learned it, so they are
        the best targets this agent will ever have for these samples.
        """
        kept = slots >= 0
        if not kept.any():
            return
        if self._stored_logits is None:
            self._stored_logits = torch.zeros(self.episodic.capacity, self.n_classes)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(x[kept.to(x.device)].to(device)).cpu()
        self._stored_logits[slots[kept]] = logits
