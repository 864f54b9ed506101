"""The stateful agent: a thin class that calls the pure functions of ``functional`` in order.

Verbs: ``adapt`` (start of a task: embed, retrieve, initialise), ``observe`` (one incoming
batch: replay selection and one meta step), ``predict`` and ``end_task`` (write the task
record, refresh stored features).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lifelong.agent import functional as fn
from lifelong.agent.config import LifelongConfig
from memory import EpisodicMemory, TaskMemory, TaskRecord


@dataclass(frozen=True)
class Retrieved:
    """Past tasks retrieved for the current one, best first.

    Attributes:
        task_ids: Ids of the past tasks (their index in the stream).
        similarities: Cosine similarity of each to the current task's embedding.
    """

    task_ids: tuple[int, ...]
    similarities: tuple[float, ...]


_NO_TASKS = Retrieved((), ())


class LifelongAgent:
    """Meta-learner with a FAISS task memory and retrieval-driven replay.

    At the start of a task (``adapt``) it embeds the task with a fixed random probe and
    retrieves the ``k`` most similar past tasks from its ``TaskMemory``. On every batch
    (``observe``) it takes ``steps_per_batch`` first-order La-MAML steps with learned
    per-parameter learning rates, each on the batch plus a fresh replay draw: a share from
    the retrieved tasks' samples, a share nearest the batch in feature space, the rest
    uniform over past tasks; replayed samples are also pulled towards the logits the model
    gave them when they were stored. At the end (``end_task``) it stores samples and their
    logits, writes the task record (embedding, classes) and refreshes the stored samples'
    features.

    The model must expose ``features`` (the trunk) and ``classifier`` (an ``nn.Linear``), as
    ``lifelong.models.MLP`` does; its parameters are updated in place.

    References:
        Gupta, Yadav & Paull, "La-MAML: Look-ahead Meta Learning for Continual Learning",
        NeurIPS 2020. Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", 2019.
        Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
        Baseline", NeurIPS 2020 (the stored-logit replay).

    Args:
        model: The network to train.
        n_classes: Output units of the classifier.
        lr: Initial learning rate of every parameter (the run's ``lr``).
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
        head = getattr(model, "classifier", None)
        trunk = getattr(model, "features", None)
        if not isinstance(head, nn.Linear) or not isinstance(trunk, nn.Module):
            raise TypeError(
                f"the lifelong agent needs a model with a `features` trunk and an nn.Linear "
                f"`classifier` (lifelong.models.MLP); got {type(model).__name__}"
            )
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if memory_size < 1:
            raise ValueError(
                f"the lifelong agent stores samples but memory_size is {memory_size}; "
                "set memory_size to 1 or more"
            )
        self.model = model
        self._trunk: nn.Module = trunk
        self.config = config if config is not None else LifelongConfig()
        self.n_classes = n_classes
        self.max_lr = lr * self.config.max_lr_factor
        self.log_lrs = {k: torch.full_like(p, math.log(lr)) for k, p in model.named_parameters()}
        self.task_memory = TaskMemory(dim=2 * self.config.probe_dim, metric="cosine")
        self.episodic = EpisodicMemory(
            memory_size,
            self.config.memory_policy,
            feature_dim=head.in_features,
            metric="l2",  # ReLU features can be all zero, where cosine is undefined
            seed=seed,
        )
        self.task = -1
        self.retrieved = _NO_TASKS
        self._probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self._embedding: torch.Tensor | None = None
        self._past: dict[int, int] = {}
        self._stored_logits: torch.Tensor | None = None

    # --- verbs -------------------------------------------------------------------------

    def adapt(self, x: torch.Tensor) -> Retrieved:
        """Start a new task from its first inputs: embed it and retrieve similar past tasks.

        Args:
            x: The first ``probe_samples`` (or fewer, at least 2) inputs of the task; no
                labels are needed.

        Returns:
            The retrieved past tasks.
        """
        if len(x) < 2:
            raise ValueError(f"adapt needs at least 2 samples of the task, got {len(x)}")
        self.task += 1
        self.retrieved = _NO_TASKS
        self._embedding = None
        self._past = dict(self.episodic.task_counts())
        if self.config.embed:
            if self._probe is None:
                in_features = int(np.prod(x.shape[1:]))
                self._probe = fn.make_probe(
                    in_features, self.config.probe_dim, self.config.probe_seed
                )
            self._embedding = fn.embed_task(x.detach().cpu(), self._probe)
            if len(self.task_memory):
                found = self.task_memory.search(self._embedding, self.config.k)
                self.retrieved = Retrieved(
                    tuple(int(i) for i in found.ids[0]),
                    tuple(float(s) for s in found.similarities[0]),
                )
        return self.retrieved

    def observe(self, x: torch.Tensor, y: torch.Tensor) -> fn.MetaStep:
        """Learn from one incoming batch: replay selection, then one meta step.

        Returns:
            The step's losses and the incoming batch's logits before the step.
        """
        if self.task < 0:
            raise RuntimeError("call adapt() with the task's first samples before observe()")
        first: fn.MetaStep | None = None
        for _ in range(self.config.steps_per_batch):
            step = self._meta_step(x, y)
            first = first or step
        assert first is not None
        # Report the first step's view of the batch: its logits before any update.
        return step._replace(logits=first.logits, inner_loss=first.inner_loss)

    def _meta_step(self, x: torch.Tensor, y: torch.Tensor) -> fn.MetaStep:
        """One meta step on the batch plus a fresh replay draw; updates the model in place."""
        combined = (x, y)
        targets = None
        if self.config.replay and self._past:
            replayed = self._replay_batch(x)
            if replayed is not None:
                rx, ry, slots = replayed
                combined = (torch.cat([x, rx.to(x.device, x.dtype)]), torch.cat([y, ry.to(y)]))
                if self.config.distill_weight > 0 and self._stored_logits is not None:
                    stored = self._stored_logits[slots].to(x.device)
                    targets = fn.LogitTargets(stored, self.config.distill_weight)
        params = dict(self.model.named_parameters())
        step = fn.meta_step(
            self.model,
            params,
            self.log_lrs,
            (x, y),
            combined,
            lr_meta_lr=self.config.lr_meta_lr,
            max_lr=self.max_lr,
            learn_lrs=self.config.learn_lrs,
            commit_lookahead=self.config.commit_lookahead,
            targets=targets,
        )
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(step.params[name])
        self.log_lrs = step.log_lrs
        return step

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch."""
        with torch.no_grad():
            return self.model(x)

    def end_task(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """Store the task's samples and logits, write its record, refresh stored features.

        The samples are offered to the episodic memory once, here, rather than batch by
        batch: replay draws only from past tasks, so nothing is lost, and one FAISS update
        per task replaces one per step.

        Args:
            x: The task's training inputs (each offered once).
            y: Their labels.

        Returns:
            The task memory's id of the new record.
        """
        if self.task < 0:
            raise RuntimeError("end_task() called before adapt(); start a task first")
        if len(x) != len(y):
            raise ValueError(f"end_task got {len(x)} inputs but {len(y)} labels; pass pairs")
        if len(x):
            with torch.no_grad():
                feats = self._trunk(x.to(self._device())).cpu()
            slots = self.episodic.add_batch(x.cpu(), y.cpu(), self.task, features=feats)
            if self.config.distill_weight > 0:
                self._store_logits(x, slots)
        classes = sorted(int(c) for c in y.cpu().unique())
        record = TaskRecord(
            metadata={
                "task": self.task,
                "classes": classes,
                "stored_samples": self.episodic.task_counts().get(self.task, 0),
            },
        )
        embedding = (
            self._embedding
            if self._embedding is not None
            else torch.zeros(2 * self.config.probe_dim)
        )
        if self._embedding is None:
            embedding[self.task % len(embedding)] = 1.0  # a placeholder; never searched
        record_id = self.task_memory.add(embedding, record)
        if self.config.refresh_features and self.task > 0:
            self._refresh_features(skip_task=self.task)
        return record_id

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
        with torch.no_grad():
            logits = self.model(x[kept.to(x.device)].to(self._device())).cpu()
        self._stored_logits[slots[kept]] = logits

    # --- accounting --------------------------------------------------------------------

    def stored_samples(self) -> int:
        """Samples in the episodic memory (bounded by ``memory_size``)."""
        return len(self.episodic)

    @property
    def extra_bytes(self) -> int:
        """Bytes kept beyond the stored samples: task embeddings (float32) and stored logits.

        Task records hold only JSON metadata (task, classes, stored samples) besides.
        """
        embedding_bytes = len(self.task_memory) * self.task_memory.dim * 4
        logits = self._stored_logits
        logit_bytes = 0 if logits is None else logits.numel() * logits.element_size()
        return embedding_bytes + logit_bytes

    # --- steps -------------------------------------------------------------------------

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _replay_batch(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Replayed samples for one step, all from past tasks.

        One weighted draw covers the retrieved share (tasks weighted by the softmax of their
        similarities) and the uniform share (every past task alike); the nearest share adds
        the stored samples nearest each incoming sample in trunk-feature space.
        """
        past, size = self._past, self.config.replay_batch
        retrieved = {
            t: s
            for t, s in zip(self.retrieved.task_ids, self.retrieved.similarities, strict=True)
            if t in past
        }
        n_retrieved = round(size * self.config.retrieved_share) if retrieved else 0
        n_nearest = round(size * self.config.nearest_share)
        n_drawn = size - n_nearest
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        slots: list[torch.Tensor] = []
        if n_drawn:
            weights = dict.fromkeys(past, (n_drawn - n_retrieved) / (n_drawn * len(past)))
            if n_retrieved:
                ids = list(retrieved)
                soft = fn.softmax_weights(
                    torch.tensor([retrieved[t] for t in ids]), self.config.retrieval_temperature
                )
                for t, w in zip(ids, soft.tolist(), strict=True):
                    weights[t] += w * n_retrieved / n_drawn
            drawn = self.episodic.sample(n_drawn, task_weights=weights)
            xs.append(drawn.x)
            ys.append(drawn.y)
            slots.append(drawn.slot)
        if n_nearest:
            with torch.no_grad():
                feats = self._trunk(x).cpu()
            near = self.episodic.nearest(feats, k=1)
            _, first = np.unique(near.slots[:, 0].numpy(), return_index=True)
            order = torch.from_numpy(np.sort(first))[:n_nearest]
            xs.append(near.x[:, 0][order])
            ys.append(near.y[:, 0][order])
            slots.append(near.slots[:, 0][order])
        x_out = torch.cat(xs)
        return (x_out, torch.cat(ys), torch.cat(slots)) if len(x_out) else None

    def _refresh_features(self, skip_task: int) -> None:
        """Recompute the stored samples' trunk features with the current trunk.

        Samples of ``skip_task`` (just added) already carry current features.
        """
        if len(self.episodic) == 0:
            return
        stored = self.episodic.stored()
        stale = stored.task_id != skip_task
        if not stale.any():
            return
        slots = torch.nonzero(stale).reshape(-1)
        with torch.no_grad():
            feats = self._trunk(stored.x[stale].to(self._device())).cpu()
        self.episodic.update_features(slots.numpy(), feats.numpy())
