"""The agent's configuration: one frozen dataclass, every field documented."""

from __future__ import annotations

from dataclasses import dataclass, fields

from memory import policies

ROUTE_RULES = ("below_current", "below_threshold")
"""Values of ``LifelongConfig.route_rule``."""
SWITCH_RULES = ("accuracy", "accuracy_and_fit")
"""Values of ``LifelongConfig.switch_rule``."""
RECOGNISE_RULES = ("prototypes", "head")
"""Values of ``LifelongConfig.recognise_rule``."""


@dataclass(frozen=True)
class LifelongConfig:
    """Hyperparameters of the ``lifelong`` agent, one configuration for every stream.

    Every default was chosen on validation data (held-out training data,
    ``--validation-fraction``, or validation streams built from alphabets no test stream
    uses), never on a test split. A field whose value was chosen says where; the tables are in
    ``benchmarks/results/``, and the ablations of the task-sequence path in
    ``benchmarks/results/sequence_ablation/``.
    """

    lookahead: bool = True
    """Start every step with a look-ahead SGD step on the incoming batch alone (off: each
    step is one SGD step on the incoming plus replayed samples, as in experience replay).
    Chosen on validation data: ``benchmarks/results/agent_search/``."""
    commit_lookahead: bool = True
    """Start the weight update from the look-ahead weights θ' (off: from θ, as La-MAML does).
    Chosen on split-digits validation data: ``benchmarks/results/agent_search/``."""

    # --- Replay ---
    replay: bool = True
    """Mix replayed samples into every meta step."""
    replay_batch: int = 50
    """Replayed samples per step, drawn from the episodic memory. A method hyperparameter,
    not part of the memory budget (the baselines replay 10). Chosen on validation data:
    ``benchmarks/results/agent_search/``."""
    distill_weight: float = 0.5
    """Weight of the mean squared error between replayed samples' logits and the logits the
    model gave them when they were stored (dark-knowledge replay, as in DER); 0 turns it off.
    The stored logits cost ``n_classes`` floats per stored sample and are counted in
    ``LifelongAgent.extra_bytes``. Chosen on validation data:
    ``benchmarks/results/agent_search/``."""
    steps_per_batch: int = 1
    """Meta steps per incoming batch, each with a fresh replay draw and each costing two
    forward and backward passes. The best setting on validation data within twice replay's
    wall time: ``benchmarks/results/agent_search/``."""
    slow_momentum: float = 0.998
    """Task sequences: keep slow weights, a moving average θ_slow ← m·θ_slow + (1 − m)·θ_fast
    of the trained (fast) weights after every step, with this ``m``; predictions mix the two
    networks (``slow_share``). 0 turns them off: predictions from the trained weights
    alone. The copy costs one model's float32 parameters, counted as ``records``. Chosen on
    validation data: ``benchmarks/results/slow_weights/``."""
    slow_share: float = 0.5
    """Weight of the slow weights' class probabilities in a prediction, the trained weights'
    taking the rest (0: the trained weights alone; 1: the slow ones alone, which lag behind
    the current task). Chosen on validation data: ``benchmarks/results/slow_weights/``."""
    slow_budget_share: float = 0.25
    """Under a byte budget (``--memory-bytes``), keep the slow weights only when their bytes
    are at most this share of it; otherwise the bytes buy stored samples. Set between two
    validation budgets: ``benchmarks/results/slow_weights/``."""
    memory_policy: str = "class_balanced"
    """Replacement policy of the episodic memory (``memory.policies``)."""
    bytes_codec: str = "PQ/4x4"
    """How stored samples are kept when the budget is in bytes (``--memory-bytes``): a FAISS
    factory string (``memory.codec``), or ``"none"`` for float32. Under ``--memory-size``
    samples stay float32, since codes would only lose detail there. The default is a product
    quantiser over sub-vectors of 4 values with 16 centroids each (98 bytes an MNIST image).
    Chosen on validation data: ``benchmarks/results/memory_bytes/``."""
    bytes_codec_fallback: str = "SQ4"
    """A codec the memory moves to, once, instead of retraining ``bytes_codec`` the first
    time it needs retraining, if what it stores fits (``memory.EpisodicMemory``'s
    ``fallback_codec``), or ``"none"`` to always retrain; ignored without ``bytes_codec``.
    A product quantiser's codebook fits one input distribution and is costly to retrain
    (permuted MNIST would retrain it at every task); a scalar quantiser is cheap to."""

    # --- Both paths: the task memory and meta-learning ---
    retrieval: bool = True
    """Search the FAISS task memory. Task sequences: a task's first batch retrieves the
    ``candidates`` most similar finished tasks (``agent.task_retrieval``). Task-switching
    streams: at a detected switch, it looks for a stored task that labels the batch well (its
    prototypes, samples and block offsets then start the task), and, with ``routing``, at
    prediction. Off: no search; on task-switching streams every detected switch starts a new
    task from the meta-learned initialisation on its own samples."""
    retrieval_replay: bool = True
    """Replay chosen by retrieval. Task sequences: half of every replay draw comes from the
    retrieved tasks, by similarity (the tasks the new one's gradients are likeliest to
    disturb), half uniformly over past tasks. Task-switching streams: a recognised task's head
    adapts on a draw of its stored samples as well as the segment's, and every meta-update
    adds an episode of stored samples of the retrieved task nearest the batch. Off: uniform
    draws; heads adapt on the segment's samples, meta-updates on the current task."""
    meta: bool = True
    """Learn by gradients through an inner adaptation. Task sequences: the look-ahead step's
    learning rates, one per output unit of every layer (La-MAML's rule, ``functional.
    lookahead_lr_grads``), starting at the run's ``lr``. Task-switching streams: the feature
    map, inner learning rates and temperature, and each task's block offsets
    (``fast_block``), through the head's adaptation on the task's earlier samples; the block
    offsets' initialisation by Reptile. Off: they keep their initial values (on sequences:
    the run's ``lr``; block offsets: zero)."""
    meta_lr: float = 0.001
    """Adam's learning rate for the meta-parameters, on both paths (on task sequences it
    steps log learning rates). Chosen on a task-switching validation stream:
    ``benchmarks/results/task_switching/README.md``."""
    candidates: int = 5
    """Records the FAISS task memory returns per search (set by hand). Task-switching: the
    best-fitting one is used; task sequences: all share the retrieved half of replay."""

    # --- Task-switching streams only (few-shot steps, test-then-train: ``agent.switching``) ---
    routing: bool = True
    """Predict an unlabelled batch that fits the current task poorly with the stored task
    that fits it best (task-agnostic prediction). Needs ``retrieval``."""
    inner_steps: int = 5
    """SGD steps that adapt a task's head on its samples (set by hand, then checked on
    validation streams: ``benchmarks/results/block_validation/inner_steps/``)."""
    inner_lr: float = 0.01
    """Initial inner learning rate of every head parameter, then meta-learned (checked on a
    validation stream: ``benchmarks/results/task_switching/README.md``)."""
    support_window: int = 50
    """Most recent samples of the current segment a head adapts on, and whose prototypes
    under a task's block offsets start it (set by hand; checked on validation streams:
    ``benchmarks/results/block_validation/support_window/``)."""
    replay_samples: int = 50
    """Stored samples of a task drawn into an adaptation or a replayed meta-episode. Chosen
    on validation streams: ``benchmarks/results/block_validation/replay_samples/``."""
    recur_accuracy: float = 0.8
    """Share of a labelled batch a stored task must get right to be the same task coming
    back (set by hand: four of five labels at 5 ways)."""
    recognise_rule: str = "head"
    """How a stored task labels a batch when recognising it (after a switch, and in
    ``adapt``): by the nearest of its prototypes in the frozen encoder's features
    (``prototypes``, the first rule), or by the head it would predict with, adapted on its
    stored samples under its block offsets, as a routed prediction is (``head``). A task
    whose samples sit far from their prototypes (a new or out-of-distribution alphabet) is
    labelled far better by its head, so under ``prototypes`` it was often not recognised
    and came back as a new record. Chosen on validation streams:
    ``benchmarks/results/block_validation/recognise_rule/``."""
    route_quantile: float = 0.95
    """Routing is proposed when a batch fits the current task worse than this quantile of
    the recent batches that were in-task; routing then checks itself (set by hand, then
    checked on validation streams: ``benchmarks/results/block_validation/route_quantile/``)."""
    route_rule: str = "below_current"
    """Which stored record a batch flagged by ``route_quantile`` is routed to: the
    best-fitting one the FAISS search returns, if it fits the batch better than the current
    task (``below_current``), or only if it also fits no worse than that quantile
    (``below_threshold``, the first rule, under which a task whose samples sit far from their
    prototypes, a new or out-of-distribution alphabet's, was never routed back to). Chosen on
    validation streams: ``benchmarks/results/block_validation/route_rule/``."""
    switch_rule: str = "accuracy_and_fit"
    """How a switch is detected when the stream does not say (hidden boundaries). Under
    ``accuracy`` (ProtoNet's learner's rule): the current head gets fewer than halfway
    between chance and all of a labelled batch right. Under ``accuracy_and_fit``: that, unless
    the batch fits the current task's prototypes no worse than ``route_quantile`` of the
    in-task batches, in which case it is a hard batch of the same task and stays in it (a
    new record would restart the task from one shot). Such a keep is never made twice in a
    row (two low batches are a relabelled task), and stops once the batch after a keep
    refutes it (the labels did change). Chosen on validation streams, a tie on OCA broken by
    20-way ``adapt``: ``benchmarks/results/block_validation/switch_rule/``."""
    projection_decay: float = 0.01
    """Share of ``P - I`` removed after every meta-update, which keeps the meta-learned
    feature map ``P`` near the identity, the pre-trained encoder's own geometry (decoupled
    from Adam's step, as AdamW's weight decay is; 0: none). Chosen on validation streams, by
    20-way ``adapt`` at no cost in OCA: ``benchmarks/results/task_switching_validation/``."""
    fast_block: bool = True
    """Give every task offsets of the encoder's last block's parameters (task-switching
    streams): each labelled batch of the task steps them along its meta-gradient (the
    batch's loss after the head's adaptation), the task's record keeps them (counted in its
    bytes), and they start the task again when retrieval recognises it; a new task starts
    them from an initialisation meta-learned by Reptile, moved towards the nearest stored
    task's (``retrieved_offsets_share``). Off: the head alone adapts, over the frozen
    encoder's features. Encoders that are not an ``nn.Sequential`` with a convolution or
    linear layer have no block to adapt and always run as off. Its effect on validation
    streams: ``benchmarks/results/block_validation/``."""
    block_lr: float = 0.3
    """Length of the step a task's block offsets take on each of its labelled batches (the
    gradient clipped to norm 1; ``fast_block``). Chosen on validation streams by mean OCA,
    ties broken by 20-way ``adapt`` (``benchmarks/results/block_validation/``)."""
    retrieved_offsets_share: float = 0.5
    """Share of the way a new task's block offsets start from their meta-learned
    initialisation towards those of the stored task nearest its first batch (FAISS search
    on the batch's mean feature; needs ``retrieval``): 0, the initialisation alone; 1, the
    nearest task's offsets. Chosen on the validation streams of ``block_lr`` by mean OCA
    (``benchmarks/results/block_validation/retrieved_offsets/``)."""
    encoder_lr: float = 1e-4
    """Adam learning rate of the slow encoder (task-switching streams, with ``fast_block``):
    a copy of the pre-trained encoder that feeds the fast weights and learns across the
    whole stream. 0 keeps it frozen. At every labelled batch that stays in its task it takes
    one ProtoNet step, the task's previous batch the support and this one the query; with
    ``retrieval_replay`` an episode of the stored samples of the retrieved record nearest the
    batch joins that step, so the shared encoder keeps serving the tasks most like the
    current one. Task keys, prototypes and fits stay on the frozen pre-trained encoder, so
    they remain comparable across the stream; the copy's float32 weights are counted as
    ``records``. Chosen on validation streams:
    ``benchmarks/results/block_validation/slow_encoder/``."""
    encoder_refresh: int = 100
    """Labelled batches between re-encodings of the stored samples' fast-weight inputs by the
    slow encoder (``encoder_lr``), whose outputs drift as it learns."""
    route_fresh_inputs: bool = True
    """Whether a routed prediction adapts the stored task's head on its stored samples as the
    slow encoder encodes them at that step, rather than as of their last re-encoding
    (``encoder_refresh``). Recognising a task after a switch, and ``adapt``, keep the
    re-encoded inputs. Chosen on validation streams
    (``benchmarks/results/block_validation/encoder_refresh/``)."""
    prototype_vote: bool = True
    """Whether ``adapt``'s predictor adds to the adapted head's log-probabilities those of
    nearest-prototype classification under the frozen pre-trained encoder (the support's
    prototypes, merged with a recognised record's): the stable view beside the slow
    encoder's. It changes nothing on the stream. Chosen by 20-way 1-shot ``adapt`` on the
    validation streams' held-out alphabet
    (``benchmarks/results/adapt_after_stream/prototype_vote/``)."""
    vote_normalise: bool = True
    """Whether the prototype vote first centres the frozen features on the mean of the task's
    prototypes and scales them to unit length (SimpleShot's CL2N), so that no direction of
    the pre-trained feature space dominates the distances; off, it uses the raw squared
    distances. Chosen, with ``vote_scale``, by 20-way 1-shot ``adapt`` on the validation
    streams' held-out alphabet (``benchmarks/results/adapt_after_stream/normalised_vote/``)."""
    vote_scale: float = 16.0
    """With ``vote_normalise``: the vote is the softmax of minus this times the squared
    distances between unit vectors (which lie in [0, 4]), so it sets how sharp the vote is
    beside the head's."""
    block_meta_step: float = 0.1
    """Reptile's step: share of the way the block offsets' initialisation moves towards a
    task's adapted offsets when the stream leaves that task (``fast_block`` with ``meta``).
    Set by hand, then checked on the validation streams of ``block_lr`` by mean OCA
    (``benchmarks/results/block_validation/reptile_step/``)."""

    def byte_codecs(self) -> tuple[str | None, str | None]:
        """``bytes_codec`` and ``bytes_codec_fallback`` as ``EpisodicMemory`` takes them.

        ``"none"`` becomes ``None``, and there is no fallback without a codec.
        """
        if self.bytes_codec == "none":
            return None, None
        fallback = self.bytes_codec_fallback
        return self.bytes_codec, None if fallback == "none" else fallback

    def changed(self, names: tuple[str, ...]) -> list[str]:
        """Which of the fields ``names`` differ from their defaults."""
        defaults = {f.name: f.default for f in fields(self)}
        return [name for name in names if getattr(self, name) != defaults[name]]

    def __post_init__(self) -> None:
        if not self.distill_weight >= 0:
            raise ValueError(f"distill_weight must be 0 or more, got {self.distill_weight}")
        if not self.encoder_lr >= 0:
            raise ValueError(f"encoder_lr must be 0 or more, got {self.encoder_lr}")
        if not self.vote_scale > 0:
            raise ValueError(f"vote_scale must be positive, got {self.vote_scale}")
        for name in (
            "replay_batch", "steps_per_batch", "candidates", "support_window", "encoder_refresh"
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.inner_steps < 0 or not self.inner_lr > 0 or not self.meta_lr > 0:
            raise ValueError(
                f"inner_steps must be 0 or more and inner_lr, meta_lr positive; got "
                f"{self.inner_steps}, {self.inner_lr}, {self.meta_lr}"
            )
        if not self.block_lr > 0:
            raise ValueError(f"block_lr must be positive, got {self.block_lr}")
        for name in ("block_meta_step", "retrieved_offsets_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.projection_decay < 1:
            raise ValueError(f"projection_decay must lie in [0, 1), got {self.projection_decay}")
        if not (0 < self.recur_accuracy <= 1 and 0 < self.route_quantile <= 1):
            raise ValueError(
                f"recur_accuracy and route_quantile must lie in (0, 1]; got "
                f"{self.recur_accuracy}, {self.route_quantile}"
            )
        if self.route_rule not in ROUTE_RULES:
            raise ValueError(f"unknown route_rule {self.route_rule!r}; choose from {ROUTE_RULES}")
        if self.recognise_rule not in RECOGNISE_RULES:
            raise ValueError(
                f"unknown recognise_rule {self.recognise_rule!r}; choose from {RECOGNISE_RULES}"
            )
        if self.switch_rule not in SWITCH_RULES:
            raise ValueError(
                f"unknown switch_rule {self.switch_rule!r}; choose from {SWITCH_RULES}"
            )
        slow = (self.slow_momentum, self.slow_share, self.slow_budget_share)
        if not (0 <= slow[0] < 1 and 0 <= slow[1] <= 1 and 0 <= slow[2] <= 1):
            raise ValueError(
                f"slow_momentum must lie in [0, 1), slow_share and slow_budget_share in "
                f"[0, 1]; got {slow[0]}, {slow[1]}, {slow[2]}"
            )
        for name in ("bytes_codec", "bytes_codec_fallback"):
            if not getattr(self, name).strip():
                raise ValueError(
                    f"{name} must be a FAISS factory string such as 'SQ4', or 'none'"
                )
        if self.memory_policy not in policies():
            raise ValueError(
                f"unknown memory_policy {self.memory_policy!r}; choose from {policies()}"
            )


SWITCHING_FIELDS = (
    "routing",
    "inner_steps",
    "inner_lr",
    "support_window",
    "replay_samples",
    "recur_accuracy",
    "recognise_rule",
    "route_quantile",
    "route_rule",
    "switch_rule",
    "projection_decay",
    "fast_block",
    "block_lr",
    "retrieved_offsets_share",
    "block_meta_step",
    "encoder_lr",
    "encoder_refresh",
    "prototype_vote",
    "vote_normalise",
    "vote_scale",
)
"""Fields only the task-switching learner reads."""
