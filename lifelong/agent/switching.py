"""The ``lifelong`` agent on task-switching streams: FAISS task memory, meta-learned fast weights.

Each step brings an unlabelled few-shot batch to predict, then its labels. The agent keeps:

- the pre-trained encoder, frozen, so that task embeddings and stored prototypes stay
  comparable across the whole stream (a task's block offsets change only its own
  predictions);
- ``MetaParameters`` (feature map, inner learning rates, temperature), meta-learned online
  through the inner adaptation (``fast_weights``);
- a ``memory.TaskMemory``: one record per task the agent has met, keyed by the normalised
  mean of its class prototypes, holding its per-class feature sums and counts; and a
  ``memory.EpisodicMemory`` of samples tagged with their record's id, within the run's
  ``memory_size``.

A task's fast weights are a linear head and, with ``fast_block``, offsets of the encoder's
last block's parameters. The head starts from the task's prototypes and adapts on its
labelled samples: the current segment's and, for a task met before, replay of its stored
samples. The block offsets are the task's own: every labelled batch of the task takes one
clipped step on them along the meta-gradient (the batch's loss after the head's adaptation);
its record keeps them, so a recognised task resumes with them, and a new task starts from
their initialisation, meta-learned by Reptile over the tasks the stream leaves. Each
meta-update also replays an episode of stored samples of the retrieved task nearest the
batch, the one the update is likeliest to disturb.

With ``encoder_lr``, the fast weights sit on a slow encoder, a copy of the pre-trained one
that learns across the whole stream: every labelled batch that stays in its task is the
query of a ProtoNet episode whose support is the task's previous batch, and, with retrieval
replay, an episode of the stored samples of the retrieved record nearest the batch joins the
step, so the shared representation keeps serving the tasks most like the current one. Task
keys, prototypes and fits stay on the frozen pre-trained encoder, comparable across the
stream; the stored samples' fast-weight inputs are re-encoded as the slow encoder moves.

On the unlabelled batch (``predict``), with ``routing``: if the batch fits the current task's
prototypes worse than nearly all batches that turned out to belong to it, the task memory is
searched with the batch's mean feature and the best-fitting retrieved record, if it fits the
batch better than the current task, predicts instead (a task recognised before any of its
labels arrive), as long as such routed predictions have beaten staying on the occasions
scored so far. On the labels (``observe``): a switch is given, or detected as ProtoNet's
learner does (the current head gets fewer than halfway between chance and all of the batch
right), unless the batch fits the current task's prototypes as in-task batches do: then it
is a hard batch of the same task (``switch_rule``). At a switch the memory is searched and
a retrieved record that labels the batch well enough is the task coming back, its
prototypes, stored samples and block offsets the new start; otherwise a new record starts
from the meta-learned initialisation. Within a task, each labelled batch is first the query
of a meta-update, then support.

References:
    Caccia et al., "Online Fast Adaptation and Knowledge Accumulation (OSAKA)", NeurIPS 2020.
    Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
    Sprechmann et al., "Memory-based Parameter Adaptation", ICLR 2018 (retrieval then local
    adaptation).
    Raghu et al., "Rapid Learning or Feature Reuse? Towards Understanding the Effectiveness
    of MAML" (ANIL), ICLR 2020 (a body learned in the outer loop, a head in the inner loop).
    Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms" (Reptile), 2018.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lifelong.agent import fast_weights as fw
from lifelong.agent.config import LifelongConfig
from lifelong.budget import tensor_bytes
from lifelong.methods.online import Predictor, check_support
from memory import EpisodicMemory, TaskMemory, TaskRecord

__all__ = ["SwitchingLearner"]

_MIN_FIT_HISTORY = 10
"""In-task batches seen before routing trusts its threshold (until then it never routes)."""
_FIT_HISTORY = 200
"""Recent in-task batches whose fit sets the routing threshold."""
_MIN_ROUTING_TRIALS = 3
"""Routing occasions scored before the record's prediction must have paid to be used."""
_ADAPT_SEED = 0
"""Seed of the replay draws inside ``adapt``."""
_ROUTING_HISTORY = 50
"""Recent routing occasions that decide whether routing pays."""
_KEEP_HISTORY = 50
"""Recent keeps of a hard batch that decide whether keeping pays."""
_KEEP_RIGHT_SHARE = 0.9
"""Share of recent keeps the batch after them must have confirmed for keeping to go on."""
_ENCODER_REPLAY = 10
"""Stored samples drawn for the replayed episode of a slow-encoder step."""
_OFFSET = "offset."
"""Prefix of a block offset's name among a record's tensors."""
_SETTINGS_ADDED_LATER = {
    "projection_decay": 0.0,
    "fast_block": False,
    "route_rule": "below_threshold",
    "switch_rule": "accuracy",
    "recognise_rule": "prototypes",
    "encoder_lr": 0.0,
    "encoder_refresh": 100,
    "route_fresh_inputs": False,
    "prototype_vote": False,
    "vote_normalise": False,
}
"""Settings newer than some saved learners, each with the value those learned with."""


@dataclass
class _Task:
    """The task the agent is in: its record id, prototype sums, recent samples, block offsets.

    The prototype sums are of the frozen encoder's features; the window holds the fast
    weights' inputs (the same features, or the trunk's output when the last block adapts).
    """

    record_id: int
    sums: torch.Tensor
    counts: torch.Tensor
    window: deque[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=deque)
    recurring: bool = False
    offsets: fw.BlockOffsets | None = None

    @classmethod
    def empty(
        cls, record_id: int, ways: int, like: torch.Tensor, offsets: fw.BlockOffsets | None
    ) -> _Task:
        """A task with no sample yet, for features shaped like ``like`` ``(n, d)``."""
        return cls(
            record_id, torch.zeros(ways, like.shape[1]), torch.zeros(ways), offsets=offsets
        )

    def prototypes(self) -> torch.Tensor:
        """``(ways, d)`` mean raw features; a class not seen yet sits at the origin."""
        return self.sums / self.counts.clamp(min=1).unsqueeze(1)

    def add(self, f: torch.Tensor, u: torch.Tensor, y: torch.Tensor, window: int) -> None:
        """Count features ``f`` in the prototypes; keep the last ``window`` inputs ``u``."""
        self.sums.index_add_(0, y, f)
        self.counts += torch.bincount(y, minlength=len(self.counts)).to(self.counts)
        self.window.append((u, y))
        while sum(len(batch[1]) for batch in self.window) > window and len(self.window) > 1:
            self.window.popleft()


class SwitchingLearner:
    """Test-then-train learner with a FAISS task memory and meta-learned fast weights.

    Args:
        encoder: The pre-trained encoder; frozen.
        ways: Labels per step.
        memory_size: Most samples the episodic memory holds (0: none).
        config: The agent's configuration (its task-switching fields).
        seed: Seed of the episodic memory's generator.
    """

    def __init__(
        self,
        encoder: nn.Module,
        ways: int,
        memory_size: int,
        config: LifelongConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.config = config if config is not None else LifelongConfig()
        self.encoder = encoder.eval()
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        split = fw.split_encoder(self.encoder) if self.config.fast_block else None
        self.trunk: nn.Module | None = None if split is None else split[0]
        self.block: nn.Module | None = None if split is None else split[1]
        # The block offsets a new task starts from (meta-learned by Reptile), and those the
        # current head predicts with.
        self.initial_offsets = None if self.block is None else fw.zero_offsets(self.block)
        # The slow encoder (``encoder_lr``): a trained copy whose trunk and block feed the fast
        # weights, while the frozen encoder keeps giving the task keys and prototypes.
        self.slow_encoder: nn.Module | None = None
        self._slow_split: tuple[nn.Module, nn.Module] | None = None
        self._encoder_optimizer: torch.optim.Adam | None = None
        if self.config.encoder_lr > 0 and split is not None:
            self.slow_encoder = copy.deepcopy(self.encoder).eval()
            for parameter in self.slow_encoder.parameters():
                parameter.requires_grad_(True)
            self._slow_split = fw.split_encoder(self.slow_encoder)
            self._encoder_optimizer = torch.optim.Adam(
                self.slow_encoder.parameters(), lr=self.config.encoder_lr
            )
        # The last labelled batch and its record: the support of the next slow-encoder step.
        self._previous_batch: tuple[torch.Tensor, torch.Tensor, int] | None = None
        self._labelled_batches = 0
        self.offsets: fw.BlockOffsets | None = None
        self.ways = ways
        self.switch_accuracy = (1.0 / ways + 1.0) / 2
        self.meta: fw.MetaParameters | None = None
        self._optimizer: torch.optim.Adam | None = None
        self.tasks: TaskMemory | None = None
        self.samples = (
            EpisodicMemory(memory_size, "task_balanced", seed=seed) if memory_size > 0 else None
        )
        self._stored_features: dict[int, torch.Tensor] = {}
        self.task: _Task | None = None
        self.head: fw.FastWeights | None = None
        self._fit_history: deque[float] = deque(maxlen=_FIT_HISTORY)
        # Whether the last labelled batch was a low-accuracy one kept in its task because it
        # fitted the task's prototypes (``switch_rule="accuracy_and_fit"``), and whether
        # the batches after such keeps were right under the kept task (1) or not (0).
        self._kept_low_batch = False
        self._keep_outcomes: deque[float] = deque(maxlen=_KEEP_HISTORY)
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._pending_route: tuple[torch.Tensor, torch.Tensor] | None = None
        self._route_outcomes: deque[tuple[float, float]] = deque(maxlen=_ROUTING_HISTORY)
        self.decisions = {
            "routed": 0,
            "recognised": 0,
            "new_tasks": 0,
            "kept_low_batches": 0,
            "meta_updates": 0,
            "replayed_episodes": 0,
        }
        # For judging retrieval afterwards against the stream's ground truth, which the
        # learner never sees: the record each step was learned into, and each retrieval's
        # step and record (a routed prediction, or a task recognised at a switch).
        self.retrieval_trace: dict[str, list[Any]] = {"observed": [], "retrieved": []}

    # --- verbs -------------------------------------------------------------------------

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of an unlabelled batch, from the current task or the record it is routed to.

        When a stored record fits the batch better than the current task (``_route``), both
        predict; the record's logits are returned while routing has paid so far (or has been
        tried fewer than ``_MIN_ROUTING_TRIALS`` times), and the labels that ``observe``
        brings score both, so the rule calibrates itself on the stream as it goes.
        """
        return self._predict(x, None)

    def _predict(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        f, u = self._features(x)
        self._pending_route = None
        if self.task is None or self.head is None:
            return torch.zeros(len(x), self.ways)
        current = self._logits(u, self.head, self.offsets)
        routed = self._route(f)
        if routed is None:
            return current
        alternative = self._record_logits(
            routed, f, u, generator, current_inputs=self.config.route_fresh_inputs
        )
        self._pending_route = (alternative.argmax(1), current.argmax(1))
        if not self._routing_pays():
            return current
        self.decisions["routed"] += 1
        self.retrieval_trace["retrieved"].append((len(self.retrieval_trace["observed"]), routed))
        return alternative

    def probe(self, x: torch.Tensor) -> torch.Tensor:
        """``predict`` for an evaluation batch the stream did not bring: same logits, no trace.

        Routing's bookkeeping (the pending route, its counter, the retrieval trace, the
        cached features) is put back, and a routed record's replay draws from a generator of
        its own instead of the memory's, so a run probed for the accuracy matrix learns
        exactly as one that is not.
        """
        kept = (self._pending_route, self._last, self.decisions["routed"])
        retrieved = len(self.retrieval_trace["retrieved"])
        try:
            return self._predict(x, torch.Generator().manual_seed(_ADAPT_SEED))
        finally:
            self._pending_route, self._last, self.decisions["routed"] = kept
            del self.retrieval_trace["retrieved"][retrieved:]

    def observe(self, x: torch.Tensor, y: torch.Tensor, new_segment: bool | None) -> None:
        """Learn the labelled batch: detect a switch, meta-update, then adapt the fast weights."""
        f, u = self._features(x)
        self._score_route(y)
        self._labelled_batches += 1
        self._refresh_stored_features()
        if self.task is None or self._switched(f, u, y, new_segment):
            if self.task is not None:
                self._learn_block_start(self.task)
            self.task = self._next_task(f, u, y)
        else:
            self._fit_history.append(_fit(f, self.task.sums, self.task.counts))
            self._train_slow_encoder(f, x, y)
            if self.config.meta:
                self._meta_update(self.task, f, u, y)
        self._previous_batch = (x, y, self.task.record_id)
        self.task.add(f, u, y, self.config.support_window)
        self._store(x, u, y, self.task.record_id)
        self.head, self.offsets = self._adapted(self.task)
        self._write_record(self.task)
        self.retrieval_trace["observed"].append(self.task.record_id)

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> Predictor:
        """A predictor for a support set's labels, by the route a task of the stream takes.

        A stored record that labels the support well enough is the same task: its
        prototypes and stored samples join the support's. Otherwise the head starts from the
        support's prototypes under the meta-learned feature map. Then ``inner_steps`` steps
        with the meta-learned learning rates. Under ``prototype_vote`` the predictor adds the
        log-probabilities of the task's nearest prototype under the frozen encoder
        (``_prototype_vote``). The learner is unchanged.

        Raises:
            ValueError: On a malformed support set (see ``check_support``).
        """
        ways = check_support(support_x, support_y)
        f, u = self._features(support_x)
        known = None
        if self.config.retrieval and ways == self.ways:
            known = self._recognise(f, u, support_y)
        if known is not None:
            task = self._from_record(known)
        else:
            task = _Task.empty(-1, ways, f, self._new_task_offsets(f))
        task.add(f, u, support_y, max(self.config.support_window, len(support_y)))
        # Its own generator for replay draws: the memory's must not move, or adapting would
        # change what the learner replays next.
        head, offsets = self._adapted(task, torch.Generator().manual_seed(_ADAPT_SEED))
        assert self.meta is not None
        meta = fw.MetaParameters(*(t.detach().clone() for t in self.meta))
        encoder, (trunk, block) = self.encoder, self._fast_modules()
        vote, sums, counts = self.config.prototype_vote, task.sums, task.counts
        scale = self.config.vote_scale if self.config.vote_normalise else None

        def predict(x: torch.Tensor) -> torch.Tensor:
            frozen: torch.Tensor | None = None
            with torch.no_grad():
                if block is None or trunk is None or offsets is None:
                    frozen = features = encoder(x)
                else:
                    features = fw.block_features(block, trunk(x), offsets)
                logits = fw.head_logits(fw.transform(features, meta), head, meta)
                if not vote:
                    return logits
                # Beside the block, the frozen encoder runs only here, where the vote needs it.
                frozen = encoder(x) if frozen is None else frozen
                # The task's nearest prototype under the frozen encoder, as a second opinion.
                return logits.log_softmax(1) + _prototype_vote(frozen, sums, counts, scale)

        return predict

    def memory_bytes_by_kind(self) -> dict[str, int]:
        """Bytes kept besides the frozen encoder, by kind (``lifelong.budget.KINDS``).

        ``samples``: the stored drawings; ``sample_extras``: their stored features (the
        trunk's output when the last block adapts); ``records``: the task records' tensors
        (prototype sums, block offsets), the meta-parameters, the block offsets'
        initialisation and the slow encoder's weights; ``index``: the task memory's FAISS
        index.
        """
        features = tensor_bytes(self._stored_features.values())
        samples = 0 if self.samples is None else self.samples.nbytes_by_kind()["samples"]
        index = 0 if self.tasks is None else self.tasks.index.nbytes
        records = 0 if self.tasks is None else self.tasks.nbytes - index
        meta = 0 if self.meta is None else tensor_bytes(self.meta)
        if self.initial_offsets is not None:
            meta += tensor_bytes(self.initial_offsets.values())
        if self.slow_encoder is not None:
            meta += tensor_bytes(self.slow_encoder.state_dict().values())
        return {
            "samples": samples, "sample_extras": features, "records": records + meta,
            "index": index,
        }

    # --- persistence -------------------------------------------------------------------

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write everything but the encoder to ``folder``: tensors, and both memories.

        The task memory and the episodic memory go through ``memory``'s own atomic
        persistence (FAISS index and the sampling generator's state included).

        Returns:
            The JSON-ready settings ``load_state`` needs.
        """
        tensors: dict[str, Any] = {
            "fit_history": torch.tensor(list(self._fit_history), dtype=torch.float64),
            "kept_low_batch": torch.tensor(self._kept_low_batch),
            "keep_outcomes": torch.tensor(list(self._keep_outcomes), dtype=torch.float64),
            "route_outcomes": torch.tensor(list(self._route_outcomes), dtype=torch.float64),
        }
        if self.meta is not None:
            assert self._optimizer is not None and self.tasks is not None
            tensors["meta"] = {k: v.detach() for k, v in self.meta._asdict().items()}
            tensors["optimizer"] = self._optimizer.state_dict()
            self.tasks.save(folder / "task_memory")
        if self.head is not None:
            tensors["head"] = {"weight": self.head.weight, "bias": self.head.bias}
        if self.initial_offsets is not None:
            tensors["initial_offsets"] = self.initial_offsets
        if self.offsets is not None:
            tensors["offsets"] = self.offsets
        if self.task is not None:
            tensors["task"] = _task_tensors(self.task)
        slots = sorted(self._stored_features)
        if slots:
            tensors["stored_slots"] = torch.tensor(slots)
            tensors["stored_features"] = torch.stack([self._stored_features[i] for i in slots])
        if self.slow_encoder is not None:
            assert self._encoder_optimizer is not None
            tensors["slow_encoder"] = self.slow_encoder.state_dict()
            tensors["encoder_optimizer"] = self._encoder_optimizer.state_dict()
        if self._previous_batch is not None:
            x, y, record_id = self._previous_batch
            tensors["previous_batch"] = {"x": x, "y": y, "record_id": torch.tensor(record_id)}
        tensors["labelled_batches"] = torch.tensor(self._labelled_batches)
        if self.samples is not None:
            self.samples.save(folder / "samples")
        torch.save(tensors, folder / "state.pt")
        return {
            "ways": self.ways,
            "memory_size": 0 if self.samples is None else self.samples.capacity,
            "config": asdict(self.config),
            "decisions": dict(self.decisions),
            "retrieval_trace": self.retrieval_trace,
        }

    @classmethod
    def load_state(cls, folder: Path, encoder: nn.Module, info: dict[str, Any]) -> SwitchingLearner:
        """The learner ``save_state`` wrote, around the loaded ``encoder``."""
        config = LifelongConfig(**{**_SETTINGS_ADDED_LATER, **info["config"]})
        learner = cls(encoder, info["ways"], info["memory_size"], config)
        state = torch.load(folder / "state.pt", weights_only=True)
        learner.decisions.update(info["decisions"])
        learner.retrieval_trace = {
            "observed": list(info["retrieval_trace"]["observed"]),
            "retrieved": [tuple(r) for r in info["retrieval_trace"]["retrieved"]],
        }
        learner._fit_history.extend(state["fit_history"].tolist())
        learner._kept_low_batch = bool(state.get("kept_low_batch", False))
        learner._keep_outcomes.extend(state.get("keep_outcomes", torch.zeros(0)).tolist())
        learner._route_outcomes.extend(tuple(r) for r in state["route_outcomes"].tolist())
        if "meta" in state:
            learner._set_up(int(state["meta"]["beta"].shape[0]))
            assert learner.meta is not None and learner._optimizer is not None
            with torch.no_grad():
                for name, tensor in learner.meta._asdict().items():
                    tensor.copy_(state["meta"][name])
            learner._optimizer.load_state_dict(state["optimizer"])
            learner.tasks = TaskMemory.load(folder / "task_memory")
        if "head" in state:
            learner.head = fw.FastWeights(state["head"]["weight"], state["head"]["bias"])
        if "initial_offsets" in state:
            learner.initial_offsets = dict(state["initial_offsets"])
        if "offsets" in state:
            learner.offsets = dict(state["offsets"])
        if "task" in state:
            learner.task = _task_from_tensors(state["task"])
        if "slow_encoder" in state:
            assert learner.slow_encoder is not None and learner._encoder_optimizer is not None
            learner.slow_encoder.load_state_dict(state["slow_encoder"])
            learner._encoder_optimizer.load_state_dict(state["encoder_optimizer"])
        if "previous_batch" in state:
            batch = state["previous_batch"]
            learner._previous_batch = (batch["x"], batch["y"], int(batch["record_id"]))
        learner._labelled_batches = int(state.get("labelled_batches", 0))
        if "stored_slots" in state:
            features = state["stored_features"]
            learner._stored_features = {
                int(slot): features[row] for row, slot in enumerate(state["stored_slots"])
            }
        if (folder / "samples").exists():
            learner.samples = EpisodicMemory.load(folder / "samples")
        return learner

    # --- steps -------------------------------------------------------------------------

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen encoder's features ``f`` and the fast weights' inputs ``u`` of a batch.

        ``u`` is the trunk's output when the last block adapts (``f`` is then the block's
        output at zero offsets), the slow encoder's trunk's when there is one, otherwise
        ``f`` itself. Task keys, prototypes and fits use ``f``, so they stay comparable
        across the whole stream.
        """
        # predict and observe see the same batch in turn: encode it once.
        if self._last is not None and self._last[0] is x:
            return self._last[1], self._last[2]
        with torch.no_grad():
            if self.trunk is None or self.block is None:
                f = u = self.encoder(x)
            elif self._slow_split is not None:
                f = self.encoder(x)
                u = self._slow_split[0](x)
            else:
                u = self.trunk(x)
                f = self.block(u)
        if self.meta is None:
            self._set_up(int(f.shape[1]))
        self._last = (x, f, u)
        return f, u

    def _fast_features(self, u: torch.Tensor, offsets: fw.BlockOffsets | None) -> torch.Tensor:
        """Raw features of fast-weight inputs under a task's block offsets (``None``: zero)."""
        _, block = self._fast_modules()
        if block is None:
            return u
        with torch.no_grad():
            if offsets is None:
                return block(u)
            return fw.block_features(block, u, offsets)

    def _fast_modules(self) -> tuple[nn.Module | None, nn.Module | None]:
        """The trunk and block under the fast weights: the slow encoder's, or the frozen ones."""
        if self._slow_split is not None:
            return self._slow_split
        return self.trunk, self.block

    def _initial_offsets(self) -> fw.BlockOffsets | None:
        if self.initial_offsets is None:
            return None
        return {name: t.clone() for name, t in self.initial_offsets.items()}

    def _new_task_offsets(self, f: torch.Tensor) -> fw.BlockOffsets | None:
        """Where a new task's block offsets start, from retrieval and meta-learning.

        The meta-learned initialisation, moved ``retrieved_offsets_share`` of the way to the
        offsets of the stored task nearest the batch (FAISS search on its mean feature): a
        new task of a distribution met before (new classes, or labels reshuffled) takes up
        what its block learned there.
        """
        start = self._initial_offsets()
        share = self.config.retrieved_offsets_share
        if start is None or share == 0 or not self.config.retrieval:
            return start
        candidates = self._candidates(f, exclude=None)
        nearest = _offsets_in(self._record(candidates[0])) if candidates else None
        if nearest is None:
            return start
        return fw.moved_towards(start, nearest, share)

    def _learn_block_start(self, leaving: _Task) -> None:
        """Reptile: move the block offsets' initialisation towards the task being left."""
        if not self.config.meta or self.initial_offsets is None or leaving.offsets is None:
            return
        self.initial_offsets = fw.moved_towards(
            self.initial_offsets, leaving.offsets, self.config.block_meta_step
        )

    def _set_up(self, dim: int) -> None:
        self.meta = fw.MetaParameters.initial(dim, self.config.inner_lr)
        for tensor in self.meta:
            tensor.requires_grad_(True)
        self._optimizer = torch.optim.Adam(list(self.meta), lr=self.config.meta_lr)
        self.tasks = TaskMemory(dim, metric="cosine", index_kind="flat")

    def _logits(
        self, u: torch.Tensor, head: fw.FastWeights, offsets: fw.BlockOffsets | None
    ) -> torch.Tensor:
        assert self.meta is not None
        with torch.no_grad():
            z = fw.transform(self._fast_features(u, offsets), self.meta)
            return fw.head_logits(z, head, self.meta)

    def _switched(
        self, f: torch.Tensor, u: torch.Tensor, y: torch.Tensor, new_segment: bool | None
    ) -> bool:
        """Whether a labelled batch starts a new segment (``switch_rule``), unless told.

        Under ``accuracy_and_fit`` a low-accuracy batch that fits the current task is kept in
        it, never twice in a row, while keeping has paid: the batch after a keep scores it
        (labelled well by the kept task, or not), as routing is scored.
        """
        if new_segment is not None:
            return new_segment
        assert self.head is not None and self.task is not None
        right = self._logits(u, self.head, self.offsets).argmax(1) == y
        accurate = float(right.double().mean()) >= self.switch_accuracy
        kept_last, self._kept_low_batch = self._kept_low_batch, False
        if kept_last:
            self._keep_outcomes.append(float(accurate))
        if accurate:
            return False
        if self.config.switch_rule == "accuracy" or kept_last or not self._keeping_pays():
            return True
        threshold = self._fit_threshold()
        if threshold is None or _fit(f, self.task.sums, self.task.counts) > threshold:
            return True
        # Same characters, badly labelled: a hard batch, not a new task.
        self._kept_low_batch = True
        self.decisions["kept_low_batches"] += 1
        return False

    def _keeping_pays(self) -> bool:
        """Whether nearly all recent keeps were followed by a batch the kept task labelled well.

        A keep presumes the task's labels still hold, so a refuted keep (labels that change
        with the characters, as where every segment relabels) stops keeping unless at
        least nine confirmed ones stand beside it; once stopped, nothing new is scored and
        it stays stopped. None scored yet: keep.
        """
        if not self._keep_outcomes:
            return True
        return bool(np.mean(self._keep_outcomes) >= _KEEP_RIGHT_SHARE)

    def _fit_threshold(self) -> float | None:
        """``route_quantile`` of the recent in-task fits; ``None`` until enough are known.

        The bar above which a batch no longer fits the current task, for routing and for
        keeping a hard batch alike.
        """
        if len(self._fit_history) < _MIN_FIT_HISTORY:
            return None
        return float(np.quantile(np.asarray(self._fit_history), self.config.route_quantile))

    def _next_task(self, f: torch.Tensor, u: torch.Tensor, y: torch.Tensor) -> _Task:
        """The task a labelled batch after a switch belongs to: a stored one, or a new one."""
        assert self.tasks is not None
        known = self._recognise(f, u, y) if self.config.retrieval else None
        if known is not None:
            self.decisions["recognised"] += 1
            self.retrieval_trace["retrieved"].append((len(self.retrieval_trace["observed"]), known))
            task = self._from_record(known)
            if self.config.meta:
                self._meta_update(task, f, u, y)
            return task
        self.decisions["new_tasks"] += 1
        offsets = self._new_task_offsets(f)
        record_id = self.tasks.add(torch.nn.functional.normalize(f.mean(0), dim=0))
        return _Task.empty(record_id, self.ways, f, offsets)

    def _recognise(self, f: torch.Tensor, u: torch.Tensor, y: torch.Tensor) -> int | None:
        """The stored record that labels a batch best, if it gets enough of it right.

        Args:
            f: The batch's frozen-encoder features (the FAISS search, and the prototypes).
            u: Its fast-weight inputs (the head).
            y: Its labels.
        """
        best, best_accuracy = None, self.config.recur_accuracy
        for record_id in self._candidates(f, exclude=None):
            accuracy = float((self._record_labels(record_id, f, u) == y).double().mean())
            if accuracy >= best_accuracy:
                best, best_accuracy = record_id, accuracy
        return best

    def _record_labels(self, record_id: int, f: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The labels a stored record gives a batch, by ``recognise_rule``."""
        if self.config.recognise_rule == "head":
            # Its own generator for the replay draws, as in ``probe``: recognising must not
            # move the memory's.
            generator = torch.Generator().manual_seed(_ADAPT_SEED)
            return self._record_logits(record_id, f, u, generator).argmax(1)
        record = self._record(record_id)
        return _distances(f, record["sums"], record["counts"]).argmin(1)

    def _record_logits(
        self,
        record_id: int,
        f: torch.Tensor,
        u: torch.Tensor,
        generator: torch.Generator | None,
        *,
        current_inputs: bool = False,
    ) -> torch.Tensor:
        """Logits of a stored record's head, adapted on its stored samples, for a batch.

        The predictor a routed prediction uses; replay draws come from ``generator`` (the
        memory's own when ``None``), with inputs as ``_replay``'s ``current_inputs`` says. A
        record with no stored sample to adapt on predicts with its prototypes' head over the
        frozen encoder's features ``f``; otherwise over the fast-weight inputs ``u`` under
        its block offsets.
        """
        head, offsets = self._adapted(
            self._from_record(record_id), generator, current_inputs=current_inputs
        )
        if offsets is None and self.block is not None:
            assert self.meta is not None
            with torch.no_grad():
                return fw.head_logits(fw.transform(f, self.meta), head, self.meta)
        return self._logits(u, head, offsets)

    def _candidates(self, f: torch.Tensor, exclude: int | None) -> list[int]:
        """Ids of the records whose keys are nearest the batch's mean feature (FAISS search)."""
        assert self.tasks is not None
        if len(self.tasks) == 0:
            return []
        query = torch.nn.functional.normalize(f.mean(0, keepdim=True), dim=1)
        found = self.tasks.search(query, self.config.candidates)
        return [int(i) for i in found.ids[0] if int(i) != exclude]

    def _route(self, f: torch.Tensor) -> int | None:
        """A stored record to predict ``f`` with instead of the current task, if one fits.

        A record is proposed only when the batch fits the current task worse than
        ``route_quantile`` of the batches that turned out to be in-task; then the best
        retrieved record, if it fits the batch better than the current task (and, under
        ``route_rule="below_threshold"``, no worse than that quantile).
        """
        if not (self.config.routing and self.config.retrieval):
            return None
        threshold = self._fit_threshold()
        if threshold is None:
            return None
        assert self.task is not None
        current = _fit(f, self.task.sums, self.task.counts)
        if current <= threshold:
            return None
        fits = {}
        for record_id in self._candidates(f, exclude=self.task.record_id):
            record = self._record(record_id)
            fits[record_id] = _fit(f, record["sums"], record["counts"])
        if not fits:
            return None
        best = min(fits, key=fits.__getitem__)
        if self.config.route_rule == "below_threshold":
            return best if fits[best] <= threshold else None
        return best if fits[best] < current else None

    def _routing_pays(self) -> bool:
        """Whether routed predictions beat the current task's on recent routing occasions."""
        if len(self._route_outcomes) < _MIN_ROUTING_TRIALS:
            return True
        routed, stayed = np.asarray(self._route_outcomes).mean(0)
        return bool(routed > stayed)

    def _score_route(self, y: torch.Tensor) -> None:
        if self._pending_route is None:
            return
        routed, stayed = self._pending_route
        self._route_outcomes.append(
            (float((routed == y).double().mean()), float((stayed == y).double().mean()))
        )
        self._pending_route = None

    def _meta_update(
        self, task: _Task, f: torch.Tensor, u: torch.Tensor, y: torch.Tensor
    ) -> None:
        """One meta step: this batch is the query of the head adapted on the task's samples.

        With block offsets, the same gradient also takes one clipped step on the task's own
        offsets (``block_lr``).
        """
        assert self.meta is not None and self._optimizer is not None
        support = self._support(task)
        if support is None:
            return
        if self.block is None or task.offsets is None:
            _, grads = fw.meta_gradients(
                self.meta, task.prototypes(), support, (u, y), self.config.inner_steps
            )
        else:
            block = self._fast_modules()[1]
            assert block is not None
            _, grads, offset_grads = fw.block_meta_gradients(
                self.meta,
                block,
                task.offsets,
                support,
                (u, y),
                len(task.counts),
                self.config.inner_steps,
            )
            task.offsets = fw.clipped_step(task.offsets, offset_grads, self.config.block_lr)
        replayed = self._replayed_episode(f, exclude=task.record_id)
        if replayed is not None:
            _, more = fw.meta_gradients(self.meta, *replayed, self.config.inner_steps)
            grads = fw.MetaParameters(*((a + b) / 2 for a, b in zip(grads, more, strict=True)))
            self.decisions["replayed_episodes"] += 1
        for tensor, grad in zip(self.meta, grads, strict=True):
            tensor.grad = grad
        self._optimizer.step()
        if self.config.projection_decay > 0:
            with torch.no_grad():
                projection = self.meta.projection
                identity = torch.eye(len(projection))
                projection.sub_(self.config.projection_decay * (projection - identity))
        self.decisions["meta_updates"] += 1

    def _replayed_episode(
        self, f: torch.Tensor, exclude: int
    ) -> (
        tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
        | None
    ):
        """A past task's episode for the meta-update: the retrieved record nearest ``f``.

        The task most like the current one is the one a meta-update for the current one is
        most likely to disturb. Its stored samples are drawn; the first of each label is the
        support and its prototype, as in the stream's first steps, the rest the query.

        Returns:
            Prototypes, support and query, or ``None`` without retrieval replay or a stored
            task with a label drawn twice.
        """
        if not (self.config.retrieval and self.config.retrieval_replay) or self.samples is None:
            return None
        stored = self.samples.task_counts()
        for record_id in self._candidates(f, exclude=exclude):
            drawn = self._replay(record_id) if stored.get(record_id, 0) >= 2 else None
            if drawn is None:
                continue
            features, labels = drawn
            # Shaped like the stream's episodes: one drawing per label as the support and
            # its prototype, the other drawings as the query.
            first = _first_of_each_label(labels)
            if bool(first.all()):
                continue
            record = self._record(record_id)
            features = self._fast_features(features, _offsets_in(record) or self.initial_offsets)
            support_f, support_y = features[first], labels[first]
            prototypes = fw.class_means(support_f, support_y, len(record["counts"]))
            return prototypes, (support_f, support_y), (features[~first], labels[~first])
        return None

    def _adapted(
        self,
        task: _Task,
        generator: torch.Generator | None = None,
        *,
        current_inputs: bool = False,
    ) -> tuple[fw.FastWeights, fw.BlockOffsets | None]:
        """A task's head adapted on its samples, and the block offsets it predicts with.

        Without block offsets the head starts from the task's prototypes (all its samples).
        With them it starts from the support's prototypes in the block's output under the
        task's offsets (the stored prototypes are the frozen encoder's). A task with no
        sample to adapt on gets the head of its stored prototypes and no offsets: that head
        is over the frozen encoder's features.
        """
        assert self.meta is not None
        support = self._support(task, generator, current_inputs=current_inputs)
        offsets = task.offsets if self.block is not None else None
        if offsets is None or support is None:
            head = fw.initial_head(task.prototypes(), self.meta)
            if support is None:
                return fw.FastWeights(head.weight.detach(), head.bias.detach()), None
        else:
            support = (self._fast_features(support[0], offsets), support[1])
            head = fw.initial_head(fw.class_means(*support, len(task.counts)), self.meta)
        z = fw.transform(support[0], self.meta)
        return fw.adapt_head(head, z, support[1], self.meta, self.config.inner_steps), offsets

    def _support(
        self,
        task: _Task,
        generator: torch.Generator | None = None,
        *,
        current_inputs: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The task's recent samples, plus replay of its stored ones when met before."""
        parts = list(task.window)
        if task.recurring and self.config.retrieval_replay:
            stored = self._replay(task.record_id, generator, current_inputs=current_inputs)
            if stored is not None:
                parts.append(stored)
        if not parts:
            return None
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _replay(
        self,
        record_id: int,
        generator: torch.Generator | None = None,
        *,
        current_inputs: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Stored samples of a record (drawn with the memory's generator unless given one).

        Their fast-weight inputs are those of the last re-encoding (``encoder_refresh``), or
        with ``current_inputs`` the slow encoder's output for them now.
        """
        if self.samples is None or record_id not in self.samples.task_counts():
            return None
        drawn = self.samples.sample(
            self.config.replay_samples, task_weights={record_id: 1.0}, generator=generator
        )
        if current_inputs and self._slow_split is not None:
            with torch.no_grad():
                return self._slow_split[0](drawn.x), drawn.y
        features = torch.stack([self._stored_features[int(s)] for s in drawn.slot])
        return features, drawn.y

    def _train_slow_encoder(self, f: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        """One ProtoNet step of the slow encoder: the task's last batch is the support of this one.

        With retrieval replay, an episode of the stored samples of the retrieved record nearest
        the batch (``f``) joins the step, its loss averaged with the task's.
        """
        if self._slow_split is None or self._previous_batch is None or self.task is None:
            return
        assert self._encoder_optimizer is not None and self.slow_encoder is not None
        previous_x, previous_y, record_id = self._previous_batch
        if record_id != self.task.record_id:
            return
        episodes = [((previous_x, previous_y), (x, y), self.ways)]
        if self.config.retrieval and self.config.retrieval_replay:
            replayed = self._replayed_inputs(f, exclude=record_id)
            if replayed is not None:
                episodes.append(replayed)
        with torch.enable_grad():
            losses = [self._episode_loss(*episode) for episode in episodes]
            self._encoder_optimizer.zero_grad()
            torch.stack(losses).mean().backward()
        self._encoder_optimizer.step()

    def _episode_loss(
        self,
        support: tuple[torch.Tensor, torch.Tensor],
        query: tuple[torch.Tensor, torch.Tensor],
        ways: int,
    ) -> torch.Tensor:
        """ProtoNet's loss of the slow encoder on an episode; labels without support excluded."""
        assert self.slow_encoder is not None
        support_f = self.slow_encoder(support[0])
        prototypes = fw.class_means(support_f, support[1], ways)
        logits = -torch.cdist(self.slow_encoder(query[0]), prototypes).pow(2)
        unseen = torch.bincount(support[1], minlength=ways) == 0
        return torch.nn.functional.cross_entropy(logits.masked_fill(unseen, -torch.inf), query[1])

    def _replayed_inputs(
        self, f: torch.Tensor, exclude: int
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], int] | None:
        """Stored drawings of the retrieved record nearest ``f`` as an episode, if it has one.

        The first drawing of each label is the support, the others the query.
        """
        if self.samples is None:
            return None
        stored = self.samples.task_counts()
        for record_id in self._candidates(f, exclude=exclude):
            if stored.get(record_id, 0) < 2:
                continue
            drawn = self.samples.sample(_ENCODER_REPLAY, task_weights={record_id: 1.0})
            first = _first_of_each_label(drawn.y)
            if bool(first.all()):
                continue
            ways = int(drawn.y.max()) + 1
            return (drawn.x[first], drawn.y[first]), (drawn.x[~first], drawn.y[~first]), ways
        return None

    def _refresh_stored_features(self) -> None:
        """Re-encode the stored samples' fast-weight inputs every ``encoder_refresh`` batches."""
        if self._slow_split is None or self.samples is None or len(self.samples) == 0:
            return
        if self._labelled_batches % self.config.encoder_refresh:
            return
        stored = self.samples.stored()
        with torch.no_grad():
            features = self._slow_split[0](stored.x)
        self._stored_features = {
            int(slot): features[row].clone() for row, slot in enumerate(stored.slot.tolist())
        }

    def _store(self, x: torch.Tensor, u: torch.Tensor, y: torch.Tensor, record_id: int) -> None:
        if self.samples is None:
            return
        slots = self.samples.add_batch(x, y, record_id)
        # Fast-weight inputs are kept by slot. A frozen encoder's never go stale; the slow
        # encoder's are re-encoded every ``encoder_refresh`` labelled batches.
        for row, slot in enumerate(slots.tolist()):
            if slot >= 0:
                self._stored_features[slot] = u[row].clone()

    def _record(self, record_id: int) -> dict[str, torch.Tensor]:
        assert self.tasks is not None
        return dict(self.tasks.get(record_id).tensors)

    def _write_record(self, task: _Task) -> None:
        assert self.tasks is not None
        tensors = {"sums": task.sums, "counts": task.counts}
        record = TaskRecord(tensors=tensors | _offset_tensors(task.offsets))
        self.tasks.update_record(task.record_id, record)
        seen = task.counts > 0
        key = torch.nn.functional.normalize(task.prototypes()[seen].mean(0), dim=0)
        self.tasks.update_embedding(task.record_id, key)

    def _from_record(self, record_id: int) -> _Task:
        record = self._record(record_id)
        offsets = _offsets_in(record) or self._initial_offsets()
        return _Task(
            record_id,
            record["sums"].clone(),
            record["counts"].clone(),
            recurring=True,
            offsets=offsets,
        )


def _first_of_each_label(labels: torch.Tensor) -> torch.Tensor:
    """A mask of each label's first row."""
    first = torch.zeros(len(labels), dtype=torch.bool)
    seen: set[int] = set()
    for row, label in enumerate(labels.tolist()):
        if label not in seen:
            seen.add(label)
            first[row] = True
    return first


def _distances(f: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``(n, ways)`` squared distances to the prototypes; infinite for labels not seen yet."""
    distances = torch.cdist(f, sums / counts.clamp(min=1).unsqueeze(1)).pow(2)
    distances[:, counts == 0] = torch.inf
    return distances


def _prototype_vote(
    f: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, scale: float | None
) -> torch.Tensor:
    """``(n, ways)`` log-probabilities of nearest-prototype classification of features ``f``.

    With ``scale``, the features and the prototypes are first centred on the seen
    prototypes' mean and scaled to unit length, and the squared distances multiplied by
    ``scale``; without it, the raw squared distances are used.
    """
    if scale is None:
        return (-_distances(f, sums, counts)).log_softmax(1)
    seen = counts > 0
    prototypes = sums / counts.clamp(min=1).unsqueeze(1)
    centre = prototypes[seen].mean(0)

    def unit(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x - centre, dim=1)

    distances = _distances(unit(f), unit(prototypes), seen.to(counts.dtype))
    return (-scale * distances).log_softmax(1)


def _fit(f: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor) -> float:
    """Mean squared distance from each sample to its nearest seen prototype (lower fits)."""
    return float(_distances(f, sums, counts).min(1).values.mean())


def _offset_tensors(offsets: fw.BlockOffsets | None) -> dict[str, torch.Tensor]:
    """Block offsets as a record's (or saved task's) tensors; ``_offsets_in`` reads them."""
    return {_OFFSET + name: t for name, t in (offsets or {}).items()}


def _offsets_in(tensors: dict[str, torch.Tensor]) -> fw.BlockOffsets | None:
    """The block offsets among a record's (or saved task's) tensors, if it has any."""
    offsets = {k[len(_OFFSET) :]: t for k, t in tensors.items() if k.startswith(_OFFSET)}
    return offsets or None


def _task_tensors(task: _Task) -> dict[str, torch.Tensor]:
    window_f = [batch[0] for batch in task.window]
    window_y = [batch[1] for batch in task.window]
    return {
        "record_id": torch.tensor(task.record_id),
        "sums": task.sums,
        "counts": task.counts,
        "recurring": torch.tensor(task.recurring),
        "window_sizes": torch.tensor([len(y) for y in window_y], dtype=torch.int64),
        "window_f": torch.cat(window_f) if window_f else torch.empty(0, task.sums.shape[1]),
        "window_y": torch.cat(window_y) if window_y else torch.empty(0, dtype=torch.int64),
    } | _offset_tensors(task.offsets)


def _task_from_tensors(tensors: dict[str, torch.Tensor]) -> _Task:
    sizes = tensors["window_sizes"].tolist()
    window = deque(
        zip(
            torch.split(tensors["window_f"], sizes),
            torch.split(tensors["window_y"], sizes),
            strict=True,
        )
    )
    return _Task(
        int(tensors["record_id"]),
        tensors["sums"],
        tensors["counts"],
        window,
        recurring=bool(tensors["recurring"]),
        offsets=_offsets_in(tensors),
    )
