"""The ``lifelong`` agent on task-switching streams: task memory, routing, meta-learning, budget.

A synthetic pool keeps these fast and exact: each class is a tight blob of 16 "pixels", each
distribution its own set of blobs, and the encoder is ``nn.Flatten`` (as a frozen pre-trained
encoder would be: it only maps inputs to features).
"""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from lifelong.agent import LifelongConfig
from lifelong.agent.switching import SwitchingLearner
from lifelong.prequential import (
    prequential_accuracies,
    prequential_metrics,
    retrieval_precision,
)
from streams.switching import Distribution, DistributionKind, build_switching_stream

WAYS = 5


def _pool(
    n_distributions: int = 4, classes: int = 8, seed: int = 0, spread: float = 0.3
) -> list[Distribution]:
    generator = torch.Generator().manual_seed(seed)

    def drawings(centre: torch.Tensor, n: int) -> torch.Tensor:
        return (centre + spread * torch.randn(n, 16, generator=generator)).reshape(n, 1, 4, 4)

    pool = []
    for d in range(n_distributions):
        centres = 3 * torch.randn(classes, 16, generator=generator)
        kind = DistributionKind.PRETRAIN if d < 2 else DistributionKind.NEW
        train = tuple(drawings(c, 15) for c in centres)
        test = tuple(drawings(c, 5) for c in centres)
        pool.append(Distribution(f"blobs{d}", kind, train, test))
    return pool


def _stream(labels: str, boundaries: str = "hidden", steps: int = 200, spread: float = 0.3):
    return build_switching_stream(
        "blobs",
        _pool(spread=spread),
        n_steps=steps,
        seed=0,
        ways=WAYS,
        p_stay=0.8,
        labels=labels,
        boundaries=boundaries,
    )


def _learner(memory_size: int = 60, **settings) -> SwitchingLearner:
    torch.manual_seed(0)
    return SwitchingLearner(nn.Flatten(), WAYS, memory_size, LifelongConfig(**settings), seed=0)


def _run(stream, learner):
    accuracies = prequential_accuracies(stream, learner)
    return prequential_metrics(accuracies, stream.truth, max_lag=5)


def test_a_recurring_task_is_recognised_from_its_unlabelled_first_batch():
    stream = _stream("fixed")
    with_memory = _run(stream, _learner())
    without = _run(stream, _learner(retrieval=False))
    first_step_of_revisits = with_memory["recovery_curve"]["revisit"][0]
    assert first_step_of_revisits > 0.85
    # Without the task memory the first batch after a switch is a guess.
    assert without["recovery_curve"]["revisit"][0] < 0.6
    assert with_memory["oca"] > without["oca"] + 0.05


def test_the_task_memory_holds_one_record_per_recurring_distribution():
    stream = _stream("fixed")
    learner = _learner()
    _run(stream, learner)
    assert learner.tasks is not None
    assert len(learner.tasks) == len(set(stream.truth.distribution.tolist()))
    assert learner.decisions["recognised"] > 0 and learner.decisions["routed"] > 0
    trace = learner.retrieval_trace
    found = retrieval_precision(trace["observed"], trace["retrieved"], stream.truth)
    assert found["events"] == learner.decisions["recognised"] + learner.decisions["routed"]
    assert found["precision_at_1"] > 0.95 and found["chance"] == 0.25


def test_a_loose_task_is_routed_back_to_when_its_record_fits_better_than_the_current_one():
    # One distribution's samples sit far from their prototypes (spread 1.5 against 0.3), so
    # its batches fit its own record worse than the median in-task batch: the threshold
    # that flags a batch (route_quantile 0.5 here, so that the three tight distributions
    # set it) is one its own record never meets.
    pool = _pool()
    loose = _pool(n_distributions=1, seed=7, spread=1.5)[0]
    pool[3] = dataclasses.replace(loose, name="loose", kind=DistributionKind.NEW)
    stream = build_switching_stream(
        "blobs", pool, n_steps=300, seed=0, ways=WAYS, p_stay=0.8, labels="fixed"
    )
    truth = stream.truth
    returns = [
        step
        for step in range(1, len(truth.switch))
        if truth.switch[step] and not truth.first_visit[step] and truth.distribution[step] == 3
    ]
    assert len(returns) >= 5
    first_batch = {}
    for rule in ("below_current", "below_threshold"):
        learner = _learner(route_rule=rule, route_quantile=0.5)
        accuracies = prequential_accuracies(stream, learner)
        first_batch[rule] = float(np.mean(accuracies[returns]))
    assert first_batch["below_current"] > 0.85
    assert first_batch["below_current"] > first_batch["below_threshold"] + 0.3


def _same_characters(labels: torch.Tensor, drawing: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One drawing of each of the first five blobs of the pool's first distribution."""
    centres = _pool()[0].train[:WAYS]
    return torch.stack([c[drawing % len(c)] for c in centres]), labels


@pytest.mark.parametrize("rule", ["accuracy", "accuracy_and_fit"])
def test_a_badly_labelled_batch_of_the_same_characters_is_kept_in_its_task_once(rule, tmp_path):
    learner = _learner(switch_rule=rule)
    labels = torch.arange(WAYS)
    for drawing in range(12):  # enough in-task batches for the fit threshold
        learner.observe(*_same_characters(labels, drawing), None)
    assert learner.decisions["new_tasks"] == 1
    relabelled = labels.roll(1)
    learner.observe(*_same_characters(relabelled, 12), None)
    if rule == "accuracy":
        assert learner.decisions["new_tasks"] == 2
        return
    # Every label wrong, but the samples sit on the task's prototypes: a hard batch.
    assert learner.decisions["new_tasks"] == 1 and learner.decisions["kept_low_batches"] == 1
    # The next batch, labelled as before, confirms the keep; so the next hard one is kept.
    learner.observe(*_same_characters(labels, 13), None)
    learner.observe(*_same_characters(relabelled, 14), None)
    assert learner.decisions["new_tasks"] == 1 and learner.decisions["kept_low_batches"] == 2
    # A second such batch in a row is a relabelled task, also after a save and load.
    info = learner.save_state(tmp_path)
    loaded = SwitchingLearner.load_state(tmp_path, nn.Flatten(), info)
    loaded.observe(*_same_characters(relabelled, 12), None)
    assert loaded.decisions["new_tasks"] == 2 and loaded.decisions["kept_low_batches"] == 2


def test_keeping_low_batches_stops_once_the_batch_after_a_keep_refutes_it():
    # After twelve batches of one task, every batch brings the same drawings under a fresh
    # labelling, as a stream whose every low batch is a new task would. (Retrieval off: a
    # new task is never one recognised from the records.)
    learner = _learner(switch_rule="accuracy_and_fit", retrieval=False)
    labels = torch.arange(WAYS)
    for drawing in range(12):
        learner.observe(*_same_characters(labels, drawing), None)
    for shift in (1, 2, 3, 4):
        learner.observe(*_same_characters(labels.roll(shift), 12), None)
    # The first relabelled batch is kept, the second refutes the keep and starts a task;
    # from then on every low batch starts one at once.
    assert learner.decisions["kept_low_batches"] == 1
    assert learner.decisions["new_tasks"] == 1 + 3


@pytest.mark.parametrize("rule", ["prototypes", "head"])
def test_a_task_is_recognised_by_the_labels_its_rule_gives_without_moving_the_memory(rule):
    *seen, last = _stream("fixed", steps=60).steps()
    learner = _learner(recognise_rule=rule)
    for step in seen:
        learner.observe(step.x, step.y, None)
    assert learner.tasks is not None and learner.samples is not None
    y = last.y
    f, u = learner._features(last.x)
    record_id = learner._candidates(f, exclude=None)[0]
    if rule == "head":  # the head a routed prediction of this record would use
        head, offsets = learner._adapted(
            learner._from_record(record_id), torch.Generator().manual_seed(0)
        )
        expected = learner._logits(u, head, offsets).argmax(1)
    else:
        record = learner._record(record_id)
        expected = torch.cdist(f, record["sums"] / record["counts"].clamp(min=1)[:, None])
        expected = expected.argmin(1)
    assert torch.equal(learner._record_labels(record_id, f, u), expected)
    state = learner.samples._generator.get_state()
    assert learner._recognise(f, u, y) is not None
    assert torch.equal(learner.samples._generator.get_state(), state)


def test_a_learner_saved_before_switch_rule_existed_loads_with_the_rules_it_learned_with(tmp_path):
    learner = _learner()
    _run(_stream("fixed", steps=20), learner)
    info = learner.save_state(tmp_path)
    del info["config"]["switch_rule"]
    del info["config"]["recognise_rule"]
    del info["decisions"]["kept_low_batches"]
    loaded = SwitchingLearner.load_state(tmp_path, nn.Flatten(), info)
    assert loaded.config.switch_rule == "accuracy"
    assert LifelongConfig().switch_rule == "accuracy_and_fit"
    assert loaded.config.recognise_rule == "prototypes"
    assert LifelongConfig().recognise_rule == "head"
    assert loaded.decisions["kept_low_batches"] == 0


def test_with_shuffled_labels_routing_turns_itself_off_and_costs_nothing():
    stream = _stream("shuffled")
    default = _run(stream, _learner())
    no_routing = _run(stream, _learner(routing=False))
    # A stored task's labels are stale after a reshuffle, so routed guesses lose; the
    # learner scores them against staying and stops using them after a few.
    assert default["oca"] >= no_routing["oca"] - 0.01


def test_known_boundaries_start_a_new_segment_even_when_the_head_still_fits():
    stream = _stream("fixed", boundaries="known")
    learner = _learner()
    _run(stream, learner)
    switch = np.asarray(stream.truth.switch)
    segments = int(switch.sum()) + (0 if switch[0] else 1)
    assert learner.decisions["new_tasks"] + learner.decisions["recognised"] == segments


def test_meta_learning_moves_the_meta_parameters_and_switching_it_off_freezes_them():
    stream = _stream("shuffled", steps=80)
    learners = {meta: _learner(meta=meta) for meta in (True, False)}
    for learner in learners.values():
        _run(stream, learner)
    initial = _learner()
    initial.predict(torch.zeros(1, 1, 4, 4))  # sets the meta-parameters up
    for name, start in zip(initial.meta._fields, initial.meta, strict=True):
        assert torch.equal(getattr(learners[False].meta, name), start), name
    assert learners[True].decisions["meta_updates"] > 0
    assert not torch.equal(learners[True].meta.projection, initial.meta.projection)


def test_projection_decay_keeps_the_feature_map_nearer_the_identity():
    stream = _stream("shuffled", steps=80)
    drift = {}
    for decay in (0.0, 0.5):
        learner = _learner(projection_decay=decay)
        _run(stream, learner)
        assert learner.meta is not None
        identity = torch.eye(len(learner.meta.projection))
        drift[decay] = float((learner.meta.projection - identity).norm())
    # Halving the deviation after every Adam step (each at most about meta_lr per entry)
    # bounds it near meta_lr per entry, far below the undecayed walk over the stream.
    assert 0 < drift[0.5] < drift[0.0] / 5


def test_a_learner_saved_before_projection_decay_existed_loads_without_it(tmp_path):
    learner = _learner()
    _run(_stream("fixed", steps=20), learner)
    info = learner.save_state(tmp_path)
    del info["config"]["projection_decay"]
    loaded = SwitchingLearner.load_state(tmp_path, nn.Flatten(), info)
    assert loaded.config.projection_decay == 0.0
    assert LifelongConfig().projection_decay > 0


def _block_learner(memory_size: int = 60, **settings) -> SwitchingLearner:
    """A learner whose encoder ends in a linear block (the identity at the start)."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(16, 16))
    with torch.no_grad():
        encoder[1].weight.copy_(torch.eye(16))
        encoder[1].bias.zero_()
    return SwitchingLearner(encoder, WAYS, memory_size, LifelongConfig(**settings), seed=0)


def _offsets_of(learner: SwitchingLearner, record_id: int) -> dict[str, torch.Tensor]:
    assert learner.tasks is not None
    tensors = learner.tasks.get(record_id).tensors
    return {k: v for k, v in tensors.items() if k.startswith("offset.")}


def test_each_task_learns_block_offsets_that_its_record_keeps():
    learner = _block_learner()
    # Blobs that overlap, so that the query loss and its gradient are not vanishingly small.
    _run(_stream("fixed", spread=2.0), learner)
    assert learner.block is not None and learner.tasks is not None
    stored = [_offsets_of(learner, record_id) for record_id in learner.tasks.task_ids()]
    assert all(set(o) == {"offset.0.weight", "offset.0.bias"} for o in stored)
    # A record met for more than one batch has taken steps; each its own.
    moved = [o["offset.0.weight"] for o in stored if float(o["offset.0.weight"].abs().sum()) > 0]
    assert len(moved) >= 2 and not torch.equal(moved[0], moved[1])
    # The task the stream ends in predicts with the offsets its record holds.
    assert learner.task is not None and learner.offsets is not None
    current = _offsets_of(learner, learner.task.record_id)
    assert torch.equal(learner.offsets["0.weight"], current["offset.0.weight"])
    # Reptile has moved the new tasks' start off zero.
    assert learner.initial_offsets is not None
    assert float(learner.initial_offsets["0.weight"].abs().sum()) > 0


def test_without_meta_learning_the_block_offsets_stay_at_zero():
    learner = _block_learner(meta=False)
    _run(_stream("fixed", steps=80, spread=2.0), learner)
    assert learner.tasks is not None and learner.initial_offsets is not None
    for record_id in learner.tasks.task_ids():
        assert all(float(t.abs().sum()) == 0 for t in _offsets_of(learner, record_id).values())
    assert all(float(t.abs().sum()) == 0 for t in learner.initial_offsets.values())


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_a_new_task_starts_its_offsets_part_way_to_the_nearest_stored_tasks(share):
    learner = _block_learner(retrieved_offsets_share=share)
    _run(_stream("fixed", steps=100, spread=2.0), learner)
    batch = torch.stack([d[0] for d in _pool(spread=2.0)[0].test[:WAYS]])
    f, _ = learner._features(batch)
    nearest = _offsets_of(learner, learner._candidates(f, exclude=None)[0])
    assert learner.initial_offsets is not None
    start = learner.initial_offsets["0.weight"]
    assert not torch.equal(start, nearest["offset.0.weight"])
    expected = start + share * (nearest["offset.0.weight"] - start)
    offsets = learner._new_task_offsets(f)
    assert offsets is not None
    torch.testing.assert_close(offsets["0.weight"], expected)


def test_without_retrieval_a_new_task_starts_its_offsets_from_the_initialisation():
    learner = _block_learner(retrieval=False, retrieved_offsets_share=1.0)
    _run(_stream("fixed", steps=60, spread=2.0), learner)
    f, _ = learner._features(torch.stack([d[0] for d in _pool(spread=2.0)[0].test[:WAYS]]))
    offsets = learner._new_task_offsets(f)
    assert learner.initial_offsets is not None and offsets is not None
    assert torch.equal(offsets["0.weight"], learner.initial_offsets["0.weight"])


def test_fast_block_off_or_an_encoder_without_a_block_adapts_the_head_alone():
    for learner in (_block_learner(fast_block=False), _learner()):
        _run(_stream("fixed", steps=40), learner)
        assert learner.block is None and learner.offsets is None
        assert learner.tasks is not None
        assert all(not _offsets_of(learner, r) for r in learner.tasks.task_ids())


def test_block_offsets_are_counted_as_record_bytes():
    learner = _block_learner(memory_size=20, encoder_lr=0.0)
    _run(_stream("fixed", steps=60), learner)
    counted = learner.memory_bytes_by_kind()
    assert learner.tasks is not None and learner.meta is not None
    assert learner.initial_offsets is not None
    records = learner.tasks.nbytes - learner.tasks.index.nbytes
    per_record = (16 * 16 + 16) * 4
    assert records >= len(learner.tasks) * per_record
    meta = sum(t.numel() * t.element_size() for t in learner.meta)
    assert counted["records"] == records + meta + per_record
    # Stored samples keep the trunk's output beside them: here the 16 flattened pixels.
    assert counted["sample_extras"] == 20 * 16 * 4


def test_a_learner_saved_before_fast_block_existed_loads_without_it(tmp_path):
    learner = _block_learner(fast_block=False)
    _run(_stream("fixed", steps=20), learner)
    info = learner.save_state(tmp_path)
    del info["config"]["fast_block"]
    loaded = SwitchingLearner.load_state(tmp_path, learner.encoder, info)
    assert loaded.config.fast_block is False and loaded.block is None
    assert LifelongConfig().fast_block is True


def test_stored_samples_stay_within_the_memory_size_and_every_kind_of_byte_is_counted():
    learner = _learner(memory_size=20)
    _run(_stream("fixed"), learner)
    assert learner.samples is not None and len(learner.samples) == 20
    counted = learner.memory_bytes_by_kind()
    # Each stored sample: 16 float32 pixels (labels and task ids are not counted), and its
    # 16 float32 features beside it.
    assert counted["samples"] == 20 * 16 * 4
    assert counted["sample_extras"] == 20 * 16 * 4
    assert learner.tasks is not None and learner.meta is not None
    meta = sum(t.numel() * t.element_size() for t in learner.meta)
    assert counted["index"] == learner.tasks.index.nbytes > 0
    assert counted["records"] == learner.tasks.nbytes - learner.tasks.index.nbytes + meta


def test_no_memory_size_stores_no_sample_but_still_remembers_tasks():
    learner = _learner(memory_size=0)
    metrics = _run(_stream("fixed"), learner)
    assert learner.samples is None and learner.memory_bytes_by_kind()["samples"] == 0
    assert metrics["recovery_curve"]["revisit"][0] > 0.85


def test_adapt_starts_from_the_stored_task_a_support_set_belongs_to():
    pool = _pool()
    learner = _learner()
    for shot in range(5):  # one task of five steps
        learner.observe(
            torch.stack([pool[0].train[c][shot] for c in range(WAYS)]), torch.arange(WAYS), None
        )
    recognised = []
    original = learner._recognise
    learner._recognise = lambda *batch: recognised.append(original(*batch)) or recognised[-1]
    support = torch.stack([pool[0].test[c][0] for c in range(WAYS)])
    queries = torch.cat([pool[0].test[c][1:] for c in range(WAYS)])
    predict = learner.adapt(support, torch.arange(WAYS))
    assert recognised == [0]
    assert torch.equal(predict(queries).argmax(1), torch.arange(WAYS).repeat_interleave(4))
    # A support set of classes never met starts from the meta-learned initialisation.
    learner.adapt(torch.stack([pool[3].test[c][0] for c in range(WAYS)]), torch.arange(WAYS))
    assert recognised == [0, None]


def test_adapt_changes_nothing_the_learner_does_next():
    stream = _stream("fixed", steps=120)
    steps = list(stream.steps())
    learners = [_learner(), _learner()]
    for learner in learners:
        for step in steps[:80]:
            learner.predict(step.x)
            learner.observe(step.x, step.y, None)
    pool = _pool()
    # A support set of a stored task: adapting replays its stored samples.
    learners[0].adapt(torch.stack([pool[0].test[c][0] for c in range(WAYS)]), torch.arange(WAYS))
    for step in steps[80:]:
        outputs = [learner.predict(step.x) for learner in learners]
        assert torch.equal(outputs[0], outputs[1])
        for learner in learners:
            learner.observe(step.x, step.y, None)
    assert learners[0].decisions == learners[1].decisions


def test_the_same_seed_gives_the_same_predictions():
    stream = _stream("shuffled", steps=100)
    first = _run(stream, _learner())["step_accuracy"]
    assert _run(stream, _learner())["step_accuracy"] == first


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("inner_lr", 0.0, "inner_lr, meta_lr positive"),
        ("recur_accuracy", 1.5, r"must lie in \(0, 1\]"),
        ("candidates", 0, "candidates must be at least 1"),
        ("projection_decay", 1.0, r"projection_decay must lie in \[0, 1\)"),
        ("block_lr", 0.0, "block_lr must be positive"),
        ("block_meta_step", 1.5, r"block_meta_step must lie in \[0, 1\]"),
        ("retrieved_offsets_share", -0.5, r"retrieved_offsets_share must lie in \[0, 1\]"),
        ("encoder_lr", -0.1, "encoder_lr must be 0 or more"),
        ("encoder_refresh", 0, "encoder_refresh must be at least 1"),
        ("vote_scale", 0.0, "vote_scale must be positive, got 0.0"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(field, value, message):
    settings = {f.name: f.default for f in dataclasses.fields(LifelongConfig)}
    settings[field] = value
    with pytest.raises(ValueError, match=message):
        LifelongConfig(**settings)


def _slow_learner(**settings) -> SwitchingLearner:
    return _block_learner(encoder_lr=0.01, **settings)


def _parameters(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_the_slow_encoder_learns_while_task_keys_stay_on_the_frozen_encoder():
    learner = _slow_learner(encoder_refresh=7)
    frozen = _parameters(learner.encoder)
    _run(_stream("fixed", steps=80, spread=2.0), learner)
    assert learner.slow_encoder is not None and learner.samples is not None
    # The pre-trained encoder is untouched and still gives the task keys; the copy moved.
    pairs = zip(frozen, _parameters(learner.encoder), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    moved = zip(frozen, _parameters(learner.slow_encoder), strict=True)
    assert not all(torch.equal(a, b) for a, b in moved)
    batch = torch.stack([d[0] for d in _pool(spread=2.0)[0].test[:WAYS]])
    learner._last = None
    f, u = learner._features(batch)
    torch.testing.assert_close(f, learner.encoder(batch))
    # The fast weights' inputs come from the copy's trunk (here the flattening alone), and the
    # stored ones are re-encoded by it every ``encoder_refresh`` labelled batches.
    torch.testing.assert_close(u, batch.flatten(1))
    learner._labelled_batches = 14
    learner._refresh_stored_features()
    stored = learner.samples.stored()
    for row, slot in enumerate(stored.slot.tolist()):
        torch.testing.assert_close(learner._stored_features[slot], stored.x[row].flatten())


def test_replay_gives_stored_inputs_as_re_encoded_or_as_the_slow_encoder_encodes_them_now():
    learner = _slow_learner()
    _run(_stream("fixed", steps=40, spread=2.0), learner)
    assert learner.samples is not None and learner._slow_split is not None
    # Stale inputs, as after the slow encoder moved since the last re-encoding.
    learner._stored_features = {
        slot: torch.zeros_like(u) for slot, u in learner._stored_features.items()
    }
    record_id = next(iter(learner.samples.task_counts()))
    stale = learner._replay(record_id, torch.Generator().manual_seed(5))
    now = learner._replay(record_id, torch.Generator().manual_seed(5), current_inputs=True)
    drawn = learner.samples.sample(
        learner.config.replay_samples,
        task_weights={record_id: 1.0},
        generator=torch.Generator().manual_seed(5),
    )
    assert stale is not None and now is not None
    assert torch.equal(stale[1], drawn.y) and torch.equal(now[1], drawn.y)
    assert not stale[0].any()
    torch.testing.assert_close(now[0], learner._slow_split[0](drawn.x))


@pytest.mark.parametrize("fresh", [True, False])
def test_only_a_routed_prediction_takes_the_stored_inputs_as_encoded_now(monkeypatch, fresh):
    learner = _slow_learner(route_fresh_inputs=fresh)
    calls: list[tuple[str, bool]] = []
    recognising: list[bool] = []
    record_logits, record_labels = learner._record_logits, learner._record_labels

    def labels(*args, **kwargs):
        recognising.append(True)
        try:
            return record_labels(*args, **kwargs)
        finally:
            recognising.pop()

    def logits(*args, current_inputs=False, **kwargs):
        calls.append(("recognise" if recognising else "route", current_inputs))
        return record_logits(*args, current_inputs=current_inputs, **kwargs)

    monkeypatch.setattr(learner, "_record_labels", labels)
    monkeypatch.setattr(learner, "_record_logits", logits)
    _run(_stream("fixed", steps=120, spread=2.0), learner)
    assert {inputs for use, inputs in calls if use == "route"} == {fresh}
    assert {inputs for use, inputs in calls if use == "recognise"} == {False}


def test_a_slow_encoder_step_is_protonet_on_the_tasks_last_two_batches(monkeypatch):
    learner = _slow_learner(retrieval_replay=False)
    steps = list(_stream("fixed", steps=30, spread=2.0).steps())
    episodes = []
    def recorded(*episode):
        episodes.append(episode)
        return torch.zeros((), requires_grad=True)

    monkeypatch.setattr(learner, "_episode_loss", recorded)
    for step in steps[:2]:
        learner.predict(step.x)
        learner.observe(step.x, step.y, step.new_segment)
    # The first batch has no support yet; the second (same task) is the query of the first.
    assert len(episodes) == 1
    (support_x, support_y), (query_x, query_y), ways = episodes[0]
    assert torch.equal(support_x, steps[0].x) and torch.equal(support_y, steps[0].y)
    assert torch.equal(query_x, steps[1].x) and torch.equal(query_y, steps[1].y)
    assert ways == WAYS


def test_with_retrieval_replay_a_stored_tasks_episode_joins_the_slow_encoder_step(monkeypatch):
    counts = {}
    for replay in (True, False):
        learner = _slow_learner(retrieval_replay=replay)
        episodes = []
        original = learner._episode_loss

        def counted(*episode, original=original, episodes=episodes):
            episodes.append(episode)
            return original(*episode)

        monkeypatch.setattr(learner, "_episode_loss", counted)
        _run(_stream("fixed", steps=80, spread=2.0), learner)
        counts[replay] = len(episodes)
    assert counts[True] > counts[False] > 0


def test_the_slow_encoder_is_on_by_default_and_counted_in_records():
    assert LifelongConfig().encoder_lr > 0 and _block_learner().slow_encoder is not None
    assert _block_learner(encoder_lr=0.0).slow_encoder is None
    on = _slow_learner(memory_size=20)
    _run(_stream("fixed", steps=20), on)
    assert on.slow_encoder is not None and on.tasks is not None and on.meta is not None
    copy_bytes = sum(t.numel() * t.element_size() for t in on.slow_encoder.state_dict().values())
    assert copy_bytes == (16 * 16 + 16) * 4
    counted = on.memory_bytes_by_kind()["records"]
    assert counted == on.tasks.nbytes - on.tasks.index.nbytes + sum(
        t.numel() * t.element_size() for t in on.meta
    ) + (16 * 16 + 16) * 4 + copy_bytes


def test_a_learner_with_a_slow_encoder_resumes_exactly(tmp_path):
    stream = _stream("fixed", steps=60, spread=2.0)
    whole = _slow_learner(encoder_refresh=9)
    expected = prequential_accuracies(stream, whole)
    first = _slow_learner(encoder_refresh=9)
    saved = {}

    def save_at(step: int, accuracy: float) -> None:
        if step == 29:
            saved["info"] = first.save_state(tmp_path)

    prequential_accuracies(stream, first, after_step=save_at)
    resumed = SwitchingLearner.load_state(tmp_path, first.encoder, saved["info"])
    rest = prequential_accuracies(stream, resumed, start=30)
    np.testing.assert_array_equal(rest, expected[30:])
    assert whole.slow_encoder is not None and resumed.slow_encoder is not None
    for a, b in zip(
        _parameters(whole.slow_encoder), _parameters(resumed.slow_encoder), strict=True
    ):
        assert torch.equal(a, b)


def test_a_learner_saved_before_the_slow_encoder_existed_loads_with_it_frozen(tmp_path):
    learner = _block_learner(encoder_lr=0.0)
    _run(_stream("fixed", steps=20), learner)
    info = learner.save_state(tmp_path)
    del info["config"]["encoder_lr"], info["config"]["encoder_refresh"]
    loaded = SwitchingLearner.load_state(tmp_path, learner.encoder, info)
    assert loaded.config.encoder_lr == 0 and loaded.slow_encoder is None


def test_a_learner_saved_before_fresh_routed_inputs_loads_with_its_stored_ones(tmp_path):
    learner = _slow_learner()
    _run(_stream("fixed", steps=20), learner)
    info = learner.save_state(tmp_path)
    del info["config"]["route_fresh_inputs"]
    loaded = SwitchingLearner.load_state(tmp_path, learner.encoder, info)
    assert loaded.config.route_fresh_inputs is False


def _unit_around(x, centre):
    return torch.nn.functional.normalize(x - centre, dim=1)


def test_adapt_adds_the_frozen_encoders_prototype_vote_to_the_adapted_head():
    learner = _block_learner()
    _run(_stream("fixed", steps=40), learner)
    pool = _pool()
    # 8 ways, more than the stream's, so the support is a new task: its prototypes are its own.
    support = torch.stack([pool[3].test[c][0] for c in range(8)])
    queries = torch.cat([pool[3].test[c][1:] for c in range(8)])
    voted = learner.adapt(support, torch.arange(8))(queries)
    raw_voted = _adapted_with(learner, vote_normalise=False)(support, torch.arange(8))(queries)
    head_alone = _adapted_with(learner, prototype_vote=False)(support, torch.arange(8))(queries)
    with torch.no_grad():
        query_f, support_f = learner.encoder(queries), learner.encoder(support)
    # One drawing per label: the support's features are the prototypes.
    centre = support_f.mean(0)
    unit_distances = torch.cdist(_unit_around(query_f, centre), _unit_around(support_f, centre))
    normalised = (-learner.config.vote_scale * unit_distances.pow(2)).log_softmax(1)
    raw = (-torch.cdist(query_f, support_f).pow(2)).log_softmax(1)
    torch.testing.assert_close(voted, head_alone.log_softmax(1) + normalised)
    torch.testing.assert_close(raw_voted, head_alone.log_softmax(1) + raw)
    assert not torch.allclose(voted, raw_voted)
    assert not torch.allclose(voted.log_softmax(1), head_alone.log_softmax(1))


def _adapted_with(learner, **settings):
    """``learner.adapt`` under other adapt-time settings (the learner is left as it was)."""
    config = learner.config

    def adapt(support_x, support_y):
        learner.config = dataclasses.replace(config, **settings)
        try:
            return learner.adapt(support_x, support_y)
        finally:
            learner.config = config

    return adapt


def test_the_prototype_vote_changes_nothing_on_the_stream_and_older_learners_load_without_it(
    tmp_path,
):
    stream = _stream("fixed", steps=40)
    runs = [_run(stream, _learner(prototype_vote=vote)) for vote in (True, False)]
    assert runs[0] == runs[1]
    learner = _learner()
    _run(_stream("fixed", steps=10), learner)
    info = learner.save_state(tmp_path)
    del info["config"]["prototype_vote"], info["config"]["vote_normalise"]
    loaded = SwitchingLearner.load_state(tmp_path, learner.encoder, info).config
    assert not loaded.prototype_vote and not loaded.vote_normalise
