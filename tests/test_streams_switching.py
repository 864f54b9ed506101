"""The task-switching stream contract, on the real Omniglot subset and digits."""

import dataclasses

import numpy as np
import pytest
import torch

from streams import StreamError, StreamSpec
from streams.omniglot_switching import omniglot_switching, omniglot_switching_pool
from streams.switching import DistributionKind, Step, build_switching_stream


@pytest.fixture(scope="module")
def pool(shared_data):
    return omniglot_switching_pool(shared_data / "omniglot", 3, seed=0)


def _stream(pool, **kwargs):
    settings = {"n_steps": 400, "seed": 0} | kwargs
    return build_switching_stream("test-switching", pool, **settings)


def test_the_pool_has_pretraining_new_and_out_of_distribution_sets(pool):
    kinds = [d.kind for d in pool]
    assert kinds.count(DistributionKind.PRETRAIN) == 3
    assert kinds.count(DistributionKind.NEW) == 2  # five alphabets in the shared subset
    assert [d.name for d in pool if d.kind is DistributionKind.OOD] == ["mnist", "digits"]
    for distribution in pool:
        assert all(x.shape[1:] == (1, 28, 28) for x in distribution.train)
        assert distribution.min_train_drawings == 15
        assert all(len(x) == 5 for x in distribution.test)


def test_the_same_seed_gives_the_same_steps_and_another_seed_others(pool):
    first, again, other = _stream(pool), _stream(pool), _stream(pool, seed=1)
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    assert np.array_equal(first.truth.distribution, again.truth.distribution)
    assert not np.array_equal(first.truth.distribution, other.truth.distribution)


def test_a_step_shows_the_learner_nothing_of_the_ground_truth(pool):
    hidden, known = _stream(pool), _stream(pool, boundaries="known")
    assert {f.name for f in dataclasses.fields(Step)} == {"x", "y", "new_segment"}
    assert all(step.new_segment is None for step in hidden.steps())
    assert [s.new_segment for s in known.steps()] == known.truth.switch.tolist()


@pytest.mark.parametrize("p_stay", [0.9, 0.98])
def test_switches_come_at_rate_one_minus_p(pool, p_stay):
    stream = _stream(pool, n_steps=5000, p_stay=p_stay)
    rate = stream.truth.switch[1:].mean()
    # Binomial standard error over 4,999 steps is below 0.005.
    assert abs(rate - (1 - p_stay)) < 0.015


def test_each_step_is_an_n_way_k_shot_batch(pool):
    stream = _stream(pool, ways=5, shots=3, n_steps=50)
    assert stream.x.shape == (50, 15, 1, 28, 28)
    for step in stream.steps():
        assert sorted(step.y.tolist()) == sorted(list(range(5)) * 3)


def test_no_test_drawing_is_ever_shown_in_a_step(pool):
    stream = _stream(pool)
    test_images = {
        x.numpy().tobytes() for d in pool for drawings in d.test for x in drawings
    }
    shown = {x.numpy().tobytes() for step in stream.x for x in step}
    assert not shown & test_images


def test_fixed_labels_bring_a_distribution_back_with_its_classes(pool):
    stream = _stream(pool, labels="fixed")
    truth = stream.truth
    by_distribution: dict[int, set[tuple[int, ...]]] = {}
    for d, classes in zip(truth.distribution, truth.classes, strict=True):
        by_distribution.setdefault(int(d), set()).add(tuple(classes))
    assert all(len(assignments) == 1 for assignments in by_distribution.values())
    switches = np.flatnonzero(truth.switch)[1:]
    assert all(truth.distribution[t] != truth.distribution[t - 1] for t in switches)
    assert (~truth.first_visit).any(), "no revisit in 400 steps"


def test_shuffled_labels_draw_new_classes_at_every_switch(pool):
    truth = _stream(pool, labels="shuffled").truth
    segments = np.flatnonzero(truth.switch)
    assignments = {(*truth.classes[t].tolist(), int(truth.distribution[t])) for t in segments}
    assert len(assignments) > 0.9 * len(segments)


def test_first_visit_marks_each_distributions_first_segment_only(pool):
    truth = _stream(pool).truth
    seen: set[int] = set()
    for t in np.flatnonzero(truth.switch):
        d = int(truth.distribution[t])
        assert truth.first_visit[t] == (d not in seen)
        seen.add(d)


def test_the_draw_follows_the_kind_weights(pool):
    truth = _stream(pool, n_steps=8000, p_stay=0.5).truth
    kinds = np.array([k.value for k in truth.kind])[truth.switch]
    assert abs((kinds == "pretrain").mean() - 0.5) < 0.03
    assert abs((kinds == "ood").mean() - 0.25) < 0.03


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"p": 1.0}, "p=1.0; pass a probability strictly between 0 and 1"),
        ({"p": "0"}, "p='0'; pass a probability strictly between 0 and 1"),
        ({"ways": 11}, "ways=11 but distribution 'mnist' has only 10 classes"),
        ({"shots": 16}, "shots=16 but a class of .* has only 15 training drawings"),
        ({"pretrain_alphabets": "Greek+Klingon"}, "names 'Klingon', which the data do not"),
        ({"pretrain_alphabets": 5}, "leaves none new; ask for at most 4"),
        ({"labels": "sorted"}, "labels='sorted'; choose one of 'shuffled', 'fixed'"),
        ({"weights": "1,2"}, "weights='1,2'; pass three non-negative numbers"),
        ({"speed": 3}, "unknown option 'speed'"),
    ],
)
def test_bad_options_are_refused_in_one_line(shared_data, options, message):
    spec = StreamSpec(n_tasks=20, data_root=shared_data / "omniglot", options=options)
    with pytest.raises(StreamError, match=message) as caught:
        omniglot_switching(spec)
    assert "\n" not in str(caught.value)


def test_named_pretraining_alphabets_are_taken_as_given(shared_data):
    spec = StreamSpec(
        n_tasks=30,
        data_root=shared_data / "omniglot",
        options={"pretrain_alphabets": "Greek+Latin", "labels": "fixed"},
    )
    stream = omniglot_switching(spec)
    assert [d.name for d in stream.pretraining()] == ["Greek", "Latin"]
    assert stream.n_steps == 30 and stream.labels == "fixed"


def test_building_leaves_the_global_generators_alone(pool):
    import random

    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    _stream(pool, n_steps=50)
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])
