"""The sequence agent's FAISS task memory: which past tasks an incoming one resembles.

One record per finished task in a ``memory.TaskMemory``, keyed by the normalised mean of the
task's normalised features under the network's trunk. When a task starts, its first batch is
embedded the same way and the most similar records are retrieved; replay then draws half of
its samples from them, in proportion to their similarity (the tasks whose samples the new
task's gradients are likeliest to disturb), and half uniformly over every past task. At the
end of every task each record's key is computed again from its stored samples, so keys stay
comparable as the trunk drifts.

References:
    Aljundi, Chakravarty & Tuytelaars, "Expert Gate: Lifelong Learning with a Network of
    Experts", CVPR 2017 (a task's autoencoder error as its key). Chaudhry et al., "On Tiny
    Episodic Memories in Continual Learning", 2019 (the uniform share).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.functional import normalize

from memory import Samples, TaskMemory, TaskRecord

RETRIEVED_SHARE = 0.5
"""Share of every replay draw that goes to the retrieved tasks (set by hand: half)."""


class Retrieved(NamedTuple):
    """The records a task's first batch retrieved, most similar first."""

    ids: list[int]
    similarities: list[float]


class TaskRetrieval:
    """Records of finished tasks, searched with an incoming task's first batch.

    Args:
        features: The trunk: inputs to feature rows.
        dim: Width of a feature row.
        candidates: Records retrieved per task.
    """

    def __init__(self, features: nn.Module, dim: int, candidates: int) -> None:
        self.features = features
        self.candidates = candidates
        self.tasks = TaskMemory(dim, metric="cosine", index_kind="flat")
        self.trace: list[list[int]] = []
        """The record ids each task retrieved, in task order (empty for the first task)."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """A batch's key: the normalised mean of its normalised feature rows."""
        with torch.no_grad():
            rows = normalize(self.features(x).flatten(1), dim=1)
        return normalize(rows.mean(0), dim=0).cpu()

    def retrieve(self, x: torch.Tensor) -> Retrieved:
        """The records most similar to a task's first batch ``x``; recorded in ``trace``."""
        if not len(self.tasks):
            self.trace.append([])
            return Retrieved([], [])
        found = self.tasks.search(self.embed(x).unsqueeze(0), self.candidates)
        ids, scores = found.ids[0].tolist(), found.similarities[0].tolist()
        self.trace.append(ids)
        return Retrieved(ids, scores)

    def remember(self, task: int, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add the finished task's record, keyed by all its training data."""
        classes = sorted(set(y.tolist()))
        record_id = self.tasks.add(self.embed(x), TaskRecord(metadata={"classes": classes}))
        if record_id != task:
            raise RuntimeError(f"task {task} got record {record_id}; records must follow tasks")

    def reembed(self, stored: Samples) -> None:
        """Key every record again from its stored samples under the current trunk.

        The records go into a fresh index, in task order, rather than being updated in
        place: updates leave tombstones that grow the index until it compacts, and its bytes
        must stay what a budget reserved for them.
        """
        device = next(self.features.parameters()).device
        fresh = TaskMemory(self.tasks.dim, metric="cosine", index_kind="flat")
        for task in self.tasks.task_ids():
            mine = stored.task_id == task
            key = (
                self.embed(stored.x[mine].to(device)) if mine.any()
                else self.tasks.embedding(task)
            )
            fresh.add(key, self.tasks.get(task))
        self.tasks = fresh

    def nbytes_by_kind(self) -> dict[str, int]:
        """``records``: the records' tensors; ``index``: the FAISS index of keys."""
        index = self.tasks.index.nbytes
        return {"records": self.tasks.nbytes - index, "index": index}


def replay_weights(past: Iterable[int], retrieved: Retrieved) -> dict[int, float]:
    """Draw weights over past tasks: a uniform share plus the retrieved tasks' by similarity.

    Retrieved tasks with no stored sample are skipped; with no positive similarity left, the
    weights are uniform.
    """
    past = list(past)
    weights = dict.fromkeys(past, (1 - RETRIEVED_SHARE) / max(len(past), 1))
    kept = [(i, max(s, 0.0)) for i, s in zip(*retrieved, strict=True) if i in weights]
    total = sum(s for _, s in kept)
    if total <= 0:
        return dict.fromkeys(past, 1.0)
    for task, similarity in kept:
        weights[task] += RETRIEVED_SHARE * similarity / total
    return weights

