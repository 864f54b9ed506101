"""The stateful agent: a thin class that calls the pure functions of ``functional`` in order.

Verbs: ``start_task``, ``observe`` (one incoming batch: retrieval at a task's first batch,
replay draws and meta steps), ``predict`` and ``end_task`` (store samples, their logits and
the task's record).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lifelong.agent import functional as fn
from lifelong.agent.adam import LeanAdam
from lifelong.agent.config import LifelongConfig
from lifelong.agent.slow_weights import SlowFastNetwork
from lifelong.agent.task_retrieval import TaskRetrieval, replay_weights
from lifelong.budget import FLOAT32_BYTES, tensor_bytes
from memory import ByteBudgetError, EpisodicMemory


class LifelongAgent:
    """Look-ahead learner with stored-logit replay chosen by a FAISS task memory.

    On every incoming batch (``observe``) it takes ``steps_per_batch`` first-order look-ahead
    steps, each on the batch plus a fresh draw of ``replay_batch`` stored samples; replayed
    samples are also pulled towards the logits the model gave them when they were stored.
    With ``meta``, the look-ahead step's learning rates (one per output unit) are learned by
    the meta-loss's gradient through that step. With ``retrieval``, a task's first batch
    searches the task memory (``task_retrieval``) and, with ``retrieval_replay``, half of
    every draw comes from the retrieved tasks; otherwise draws are uniform over past tasks.
    At the end of a task (``end_task``) it offers the task's samples to the episodic memory,
    keeps the trained model's logits of those it stored, and records the task. With
    ``slow_momentum``, slow weights follow the trained ones as a moving average and
    predictions mix both (``network``, ``lifelong.agent.slow_weights``).

    References:
        Gupta, Yadav & Paull, "La-MAML: Look-ahead Meta Learning for Continual Learning",
        NeurIPS 2020 (look-ahead steps, learned learning rates). Chaudhry et al., "On Tiny
        Episodic Memories in Continual Learning", 2019. Buzzega et al., "Dark Experience for
        General Continual Learning: a Strong, Simple Baseline", NeurIPS 2020 (the
        stored-logit replay). Arani, Sarfraz & Zonooz, "Learning Fast, Learning Slow",
        ICLR 2022 (the slow weights).

    Args:
        model: The network to train; its parameters are updated in place.
        n_classes: Output units of the model.
        lr: Learning rate of every step (the run's ``lr``).
        memory_size: Most samples the episodic memory holds.
        config: The agent's hyperparameters.
        seed: Seed of the episodic memory's generator.
        memory_bytes: A budget in bytes instead of ``memory_size`` (which is then ignored):
            samples kept as ``config.bytes_codec`` codes, their logits counted beside them,
            room left for ``n_tasks`` task records and the learned learning rates.
        n_tasks: Tasks the stream will bring, to reserve their records' bytes.
    """

    def __init__(
        self,
        model: nn.Module,
        n_classes: int,
        lr: float,
        memory_size: int,
        config: LifelongConfig | None = None,
        seed: int = 0,
        memory_bytes: int | None = None,
        n_tasks: int = 1,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if memory_bytes is None and memory_size < 1:
            raise ValueError(
                f"the lifelong agent stores samples but memory_size is {memory_size}; "
                "set memory_size to 1 or more"
            )
        self.model = model
        # Looked up once: every step updates these tensors in place, and walking the modules
        # for them costs more than a small network's update.
        self._params = dict(model.named_parameters())
        self.config = config if config is not None else LifelongConfig()
        self.network = self._new_network(memory_bytes)
        """What predicts: ``model`` itself, or the slow and fast weights' mixture."""
        self.n_classes = n_classes
        self.lr = lr
        self.retrieval = self._new_retrieval() if self.config.retrieval else None
        self._log_lrs, self._lr_optimizer = self._new_learning_rates()
        if memory_bytes is not None:
            reserved = self.reserved_bytes(n_tasks)
            if memory_bytes <= reserved:
                raise ByteBudgetError(
                    f"byte budget {memory_bytes} leaves no room for samples beside the "
                    f"{reserved} bytes of {n_tasks} task records and the learned learning "
                    f"rates; raise it above {reserved}"
                )
            memory_bytes -= reserved
        self.episodic = self._new_memory(memory_size, memory_bytes, seed)
        self.task = -1
        self._first_batch = False
        # Every past task weighs alike, however many samples the memory kept of it.
        self._replay_weights: dict[int, float] = {}
        self._stored_logits: torch.Tensor | None = None

    # --- verbs -------------------------------------------------------------------------

    def start_task(self) -> None:
        """Begin the next task: replay draws from the tasks stored so far."""
        self.task += 1
        self._first_batch = True
        self._replay_weights = dict.fromkeys(self.episodic.task_counts(), 1.0)

    def observe(self, x: torch.Tensor, y: torch.Tensor) -> fn.MetaStep:
        """Learn from one incoming batch: ``steps_per_batch`` meta steps, each with replay.

        Returns:
            The last step's result, with the first step's inner loss and logits (the
            incoming batch before any update).
        """
        if self.task < 0:
            raise RuntimeError("call start_task() before observe()")
        if self._first_batch:
            self._first_batch = False
            self._retrieve(x)
        first = step = self._meta_step(x, y)
        for _ in range(self.config.steps_per_batch - 1):
            step = self._meta_step(x, y)
        return step._replace(logits=first.logits, inner_loss=first.inner_loss)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch (with slow weights: the mixture's log-probabilities)."""
        was_training = self.network.training
        self.network.eval()
        try:
            with torch.no_grad():
                return self.network(x)
        finally:
            self.network.train(was_training)

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
        if self.retrieval is not None:
            self.retrieval.remember(self.task, x, y)
            self.retrieval.reembed(self.episodic.stored())

    def report(self) -> dict[str, object]:
        """What a run records about the agent's own components.

        ``retrieved_tasks``: the task ids each task's first batch retrieved (with
        ``retrieval``); ``lookahead_lrs``: per parameter, the smallest, mean and largest
        learned look-ahead learning rate (with ``meta``); ``slow_weights``: whether the
        agent keeps them (``slow_momentum``, ``slow_budget_share``).
        """
        report: dict[str, object] = {"slow_weights": isinstance(self.network, SlowFastNetwork)}
        if self.retrieval is not None:
            report["retrieved_tasks"] = [list(ids) for ids in self.retrieval.trace]
        if self._log_lrs:
            rates = {name: v.detach().exp() for name, v in self._log_lrs.items()}
            report["lookahead_lrs"] = {
                name: [float(r.min()), float(r.mean()), float(r.max())]
                for name, r in rates.items()
            }
        return report

    # --- accounting --------------------------------------------------------------------

    def stored_samples(self) -> int:
        """Samples in the episodic memory (bounded by ``memory_size``)."""
        return len(self.episodic)

    @property
    def extra_bytes(self) -> int:
        """Bytes kept beside the stored samples: their stored logits (float32)."""
        if self.config.distill_weight <= 0:
            return 0
        return len(self.episodic) * self._logit_bytes

    def memory_bytes_by_kind(self) -> dict[str, int]:
        """Stored bytes by kind (``lifelong.budget.KINDS``).

        The episodic memory's samples and codebook, the stored logits, the task records and
        their index, the learned learning rates and the slow weights.
        """
        kinds = {**self.episodic.nbytes_by_kind(), "sample_extras": self.extra_bytes}
        kinds["records"] = self._parameter_copy_bytes()
        if self.retrieval is not None:
            tasks = self.retrieval.nbytes_by_kind()
            kinds["records"] += tasks["records"]
            kinds["index"] += tasks["index"]
        return kinds

    def reserved_bytes(self, n_tasks: int) -> int:
        """Bytes a byte budget must leave beside the samples.

        ``n_tasks`` task records and their index (measured on stand-in records), the
        learned learning rates and the slow weights.
        """
        lrs = self._parameter_copy_bytes()
        if self.retrieval is None:
            return lrs
        stand_in = TaskRetrieval(self.retrieval.features, self.retrieval.tasks.dim, 1)
        for _ in range(n_tasks):
            stand_in.tasks.add(torch.ones(stand_in.tasks.dim))
        return lrs + sum(stand_in.nbytes_by_kind().values())

    def _parameter_copy_bytes(self) -> int:
        """The learned learning rates and the slow weights."""
        slow = (
            self.network.slow_parameters().values()
            if isinstance(self.network, SlowFastNetwork) else []
        )
        return tensor_bytes(self._log_lrs.values()) + tensor_bytes(slow)

    @property
    def _logit_bytes(self) -> int:
        return self.n_classes * FLOAT32_BYTES

    def _new_memory(self, memory_size: int, memory_bytes: int | None, seed: int) -> EpisodicMemory:
        policy = self.config.memory_policy
        if memory_bytes is None:
            return EpisodicMemory(memory_size, policy, seed=seed)
        codec, fallback = self.config.byte_codecs()
        extra = self._logit_bytes if self.config.distill_weight > 0 else 0
        return EpisodicMemory(
            policy=policy, seed=seed, codec=codec, fallback_codec=fallback,
            byte_budget=memory_bytes, extra_bytes_per_sample=extra,
        )

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
        params = self._params
        rates = None
        if self._log_lrs:
            rates = dict(zip(self._log_lrs, torch._foreach_exp(list(self._log_lrs.values())),
                             strict=True))
        step = fn.meta_step(
            self.model,
            params,
            (x, y),
            combined,
            lr=self.lr,
            lookahead=self.config.lookahead,
            commit_lookahead=self.config.commit_lookahead,
            targets=targets,
            lookahead_lrs=rates,
        )
        with torch.no_grad():
            torch._foreach_copy_(list(params.values()), [step.params[k] for k in params])
        if isinstance(self.network, SlowFastNetwork):
            self.network.follow()
        if step.lr_grads is not None and rates is not None:
            self._learn_rates(step.lr_grads, rates)
        return step

    def _learn_rates(self, lr_grads: fn.Params, rates: fn.Params) -> None:
        """One Adam step on the log learning rates (the chain rule through ``exp``)."""
        assert self._lr_optimizer is not None
        names = list(self._log_lrs)
        self._lr_optimizer.step(
            torch._foreach_mul([lr_grads[k] for k in names], [rates[k] for k in names])
        )

    def _retrieve(self, x: torch.Tensor) -> None:
        """Search the task memory with a task's first batch; weigh replay towards it."""
        if self.retrieval is None:
            return
        found = self.retrieval.retrieve(x)
        if self.config.retrieval_replay and self._replay_weights:
            self._replay_weights = replay_weights(self._replay_weights, found)

    def _new_network(self, memory_bytes: int | None) -> nn.Module:
        """The trained network with its slow weights, or alone.

        Alone when ``slow_momentum`` is 0, or under a byte budget of which the slow copy
        would take more than ``slow_budget_share``.
        """
        if not self.config.slow_momentum:
            return self.model
        if memory_bytes is not None:
            copy_bytes = tensor_bytes(self.model.parameters())
            if copy_bytes > self.config.slow_budget_share * memory_bytes:
                return self.model
        return SlowFastNetwork(self.model, self.config.slow_momentum, self.config.slow_share)

    def _new_retrieval(self) -> TaskRetrieval:
        trunk = getattr(self.model, "features", None)
        head = getattr(self.model, "classifier", None)
        if not isinstance(trunk, nn.Module) or not isinstance(head, nn.Linear):
            raise ValueError(
                "lifelong.retrieval needs a model with a `features` trunk and a linear "
                "`classifier` (lifelong.models.MLP); set lifelong.retrieval=false for this one"
            )
        return TaskRetrieval(trunk, head.in_features, self.config.candidates)

    def _new_learning_rates(
        self,
    ) -> tuple[dict[str, torch.Tensor], LeanAdam | None]:
        """Log look-ahead learning rates, one per output unit of every parameter, at ``lr``."""
        if not (self.config.meta and self.config.lookahead):
            return {}, None
        log_lrs = {
            name: torch.full((p.shape[0],), math.log(self.lr), device=p.device)
            for name, p in self.model.named_parameters()
        }
        return log_lrs, LeanAdam(list(log_lrs.values()), lr=self.config.meta_lr)

    def _store_logits(self, x: torch.Tensor, slots: torch.Tensor) -> None:
        """Keep the logits the trained model gives the samples just stored, by slot.

        Logits come from the end of the task, after the model has learned it, so they are
        the best targets this agent will ever have for these samples.
        """
        kept = slots >= 0
        if not kept.any():
            return
        capacity = self.episodic.capacity
        if self._stored_logits is None or len(self._stored_logits) != capacity:
            # A memory that moved to its fallback codec has another capacity; its samples
            # keep their slots.
            resized = torch.zeros(capacity, self.n_classes)
            if self._stored_logits is not None:
                kept_rows = min(capacity, len(self._stored_logits))
                resized[:kept_rows] = self._stored_logits[:kept_rows]
            self._stored_logits = resized
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(x[kept.to(x.device)].to(device)).cpu()
        self._stored_logits[slots[kept]] = logits
