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

    At the start of a task (``adapt``) it embeds the task with a fixed random probe, retrieves
    the ``k`` most similar past tasks from its ``TaskMemory``, blends their stored heads into
    the classifier when they are similar enough and imprints rows for never-seen classes. On
    every batch (``observe``) it draws a replay batch mostly from the retrieved tasks'
    samples, some nearest the batch in feature space, the rest uniform over past tasks, and
    takes one first-order La-MAML step with learned per-parameter learning rates. At the end
    (``end_task``) it writes the task record (embedding, head, class prototypes) and refreshes
    the stored samples' features.

    The model must expose ``features`` (the trunk) and ``classifier`` (an ``nn.Linear``), as
    ``lifelong.models.MLP`` does; its parameters are updated in place.

    References:
        Gupta, Yadav & Paull, "La-MAML: Look-ahead Meta Learning for Continual Learning",
        NeurIPS 2020. Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", 2019.
        Qi, Brown & Lowe, "Low-Shot Learning with Imprinted Weights", CVPR 2018.

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
        self._head: nn.Linear = head
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
        self.seen_classes = torch.zeros(n_classes, dtype=torch.bool)
        self._probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self._probe_x: torch.Tensor | None = None
        self._probe_y: torch.Tensor | None = None
        self._embedding: torch.Tensor | None = None
        self._past: dict[int, int] = {}

    # --- verbs -------------------------------------------------------------------------

    def adapt(self, x: torch.Tensor, y: torch.Tensor) -> Retrieved:
        """Start a new task from its first samples: embed, retrieve, initialise the head.

        Args:
            x: The first ``probe_samples`` (or fewer, at least 2) inputs of the task.
            y: Their labels (used only to imprint rows of never-seen classes).

        Returns:
            The retrieved past tasks.
        """
        if len(x) < 2:
            raise ValueError(f"adapt needs at least 2 samples of the task, got {len(x)}")
        self.task += 1
        device = self._device()
        self._probe_x, self._probe_y = x.detach().to(device), y.detach().to(device)
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
            if self.config.init_from_memory:
                self._init_from_retrieved()
        if self.config.imprint:
            self._imprint_new_classes()
        return self.retrieved

    def observe(self, x: torch.Tensor, y: torch.Tensor) -> fn.MetaStep:
        """Learn from one incoming batch: replay selection, then one meta step.

        Returns:
            The step's losses and the incoming batch's logits before the step.
        """
        if self.task < 0:
            raise RuntimeError("call adapt() with the task's first samples before observe()")
        combined = (x, y)
        if self.config.replay and self._past:
            replayed = self._replay_batch(x)
            if replayed is not None:
                rx, ry = replayed
                combined = (torch.cat([x, rx.to(x.device, x.dtype)]), torch.cat([y, ry.to(y)]))
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
        """Store the task's samples, write its record and refresh the stored features.

        The samples are offered to the episodic memory once, here, rather than batch by
        batch: replay draws only from past tasks, so nothing is lost, and one FAISS update
        per task replaces one per step.

        Args:
            x: The task's training inputs (each offered once).
            y: Their labels.

        Returns:
            The task memory's id of the new record.
        """
        if self.task < 0 or self._probe_x is None or self._probe_y is None:
            raise RuntimeError("end_task() called before adapt(); start a task first")
        if len(x) != len(y):
            raise ValueError(f"end_task got {len(x)} inputs but {len(y)} labels; pass pairs")
        self.seen_classes[y.cpu().unique()] = True
        if len(x):
            with torch.no_grad():
                feats = self._trunk(x.to(self._device())).cpu()
            self.episodic.add_batch(x.cpu(), y.cpu(), self.task, features=feats)
        with torch.no_grad():
            feats = self._trunk(self._probe_x).cpu()
        protos, present = fn.class_prototypes(feats, self._probe_y.cpu(), self.n_classes)
        head = self._head
        tensors = {
            "head.weight": head.weight.detach().cpu().clone(),
            "head.bias": head.bias.detach().cpu().clone(),
            "prototypes": protos[present],
        }
        classes = torch.nonzero(present).reshape(-1).tolist()
        record = TaskRecord(
            tensors=tensors,
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

    # --- accounting --------------------------------------------------------------------

    def stored_samples(self) -> int:
        """Samples in the episodic memory (bounded by ``memory_size``)."""
        return len(self.episodic)

    @property
    def record_bytes(self) -> int:
        """Bytes of tensors kept in task records (heads, prototypes), not counted as samples."""
        total = 0
        for task_id in self.task_memory.task_ids():
            record = self.task_memory.get(task_id)
            total += sum(t.numel() * t.element_size() for t in record.tensors.values())
        return total

    # --- steps -------------------------------------------------------------------------

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _replay_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
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
        if n_nearest:
            with torch.no_grad():
                feats = self._trunk(x).cpu()
            near = self.episodic.nearest(feats, k=1)
            _, first = np.unique(near.slots[:, 0].numpy(), return_index=True)
            order = torch.from_numpy(np.sort(first))[:n_nearest]
            xs.append(near.x[:, 0][order])
            ys.append(near.y[:, 0][order])
        x_out, y_out = torch.cat(xs), torch.cat(ys)
        return (x_out, y_out) if len(x_out) else None

    def _init_from_retrieved(self) -> None:
        similar = [
            (t, s)
            for t, s in zip(self.retrieved.task_ids, self.retrieved.similarities, strict=True)
            if s >= self.config.init_threshold
        ]
        if not similar:
            return
        records = [self.task_memory.get(t) for t, _ in similar]
        rows = torch.zeros(self.n_classes, dtype=torch.bool)
        for record in records:
            rows[torch.tensor(list(record.metadata["classes"]), dtype=torch.long)] = True
        head = self._head
        weights = fn.softmax_weights(
            torch.tensor([s for _, s in similar]), self.config.retrieval_temperature
        )
        device = head.weight.device
        blended = fn.blend_heads(
            {"weight": head.weight.detach().cpu(), "bias": head.bias.detach().cpu()},
            [{"weight": r.tensors["head.weight"], "bias": r.tensors["head.bias"]} for r in records],
            weights,
            rows,
            self.config.init_blend,
        )
        with torch.no_grad():
            head.weight.copy_(blended["weight"].to(device))
            head.bias.copy_(blended["bias"].to(device))

    def _imprint_new_classes(self) -> None:
        assert self._probe_x is not None and self._probe_y is not None
        labels = self._probe_y.cpu()
        present = torch.zeros(self.n_classes, dtype=torch.bool)
        present[labels.unique()] = True
        new = present & ~self.seen_classes
        if not new.any():
            return
        head = self._head
        with torch.no_grad():
            feats = self._trunk(self._probe_x).cpu()
            protos, _ = fn.class_prototypes(feats, labels, self.n_classes)
            weight, bias = fn.imprint_rows(
                head.weight.detach().cpu(),
                head.bias.detach().cpu(),
                protos,
                new,
                self.seen_classes,
            )
            head.weight.copy_(weight.to(head.weight.device))
            head.bias.copy_(bias.to(head.bias.device))

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
