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


def _pool(n_distributions: int = 4, classes: int = 8, seed: int = 0) -> list[Distribution]:
    generator = torch.Generator().manual_seed(seed)

    def drawings(centre: torch.Tensor, n: int) -> torch.Tensor:
        return (centre + 0.3 * torch.randn(n, 16, generator=generator)).reshape(n, 1, 4, 4)

    pool = []
    for d in range(n_distributions):
        centres = 3 * torch.randn(classes, 16, generator=generator)
        kind = DistributionKind.PRETRAIN if d < 2 else DistributionKind.NEW
        train = tuple(drawings(c, 15) for c in centres)
        test = tuple(drawings(c, 5) for c in centres)
        pool.append(Distribution(f"blobs{d}", kind, train, test))
    return pool


def _stream(labels: str, boundaries: str = "hidden", steps: int = 200):
    return build_switching_stream(
        "blobs",
        _pool(),
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
    used = []
    original = learner._from_record
    learner._from_record = lambda record_id: used.append(record_id) or original(record_id)
    support = torch.stack([pool[0].test[c][0] for c in range(WAYS)])
    queries = torch.cat([pool[0].test[c][1:] for c in range(WAYS)])
    predict = learner.adapt(support, torch.arange(WAYS))
    assert used == [0]
    assert torch.equal(predict(queries).argmax(1), torch.arange(WAYS).repeat_interleave(4))
    # A support set of classes never met starts from the meta-learned initialisation.
    used.clear()
    learner.adapt(torch.stack([pool[3].test[c][0] for c in range(WAYS)]), torch.arange(WAYS))
    assert used == []


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
    ],
)
def test_bad_settings_are_refused_naming_the_field(field, value, message):
    settings = {f.name: f.default for f in dataclasses.fields(LifelongConfig)}
    settings[field] = value
    with pytest.raises(ValueError, match=message):
        LifelongConfig(**settings)
