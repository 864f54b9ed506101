"""EpisodicMemory: capacity, the replacement policies' statistics, seeded reproducibility,
sampling, nearest-neighbour retrieval, removal, save/load and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memory import (
    EpisodicMemory,
    PolicyInput,
    UnknownIdError,
    get_policy,
    policies,
    register_policy,
)
from memory.policies import reservoir


def stream(memory: EpisodicMemory, batches: int, batch: int = 16, tasks: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    for i in range(batches):
        x = torch.randn(batch, 2, 3, generator=generator)
        y = torch.randint(0, 10, (batch,), generator=generator)
        features = x.reshape(batch, -1)[:, :5] if memory.feature_dim else None
        memory.add_batch(x, y, i * tasks // batches, features)


def stored(memory: EpisodicMemory):
    size = len(memory)
    return memory._x[:size], memory._y[:size], memory._task[:size]


@pytest.mark.parametrize("policy", policies())
def test_capacity_is_never_exceeded(policy):
    memory = EpisodicMemory(50, policy, feature_dim=5, seed=3)
    for i in range(30):
        stream_batch = torch.randn(7, 2, 3)
        memory.add_batch(stream_batch, torch.arange(7) % 3, i % 5,
                         stream_batch.reshape(7, -1)[:, :5])
        assert len(memory) == min(50, 7 * (i + 1))
        assert len(memory.features) == len(memory)
    assert memory.seen == 210
    assert memory.nbytes >= 50 * (6 * 4 + 8 + 8)


def test_reservoir_keeps_every_sample_with_equal_probability():
    capacity, length, runs = 10, 100, 400
    kept = np.zeros(length)
    for seed in range(runs):
        memory = EpisodicMemory(capacity, "reservoir", seed=seed)
        for start in range(0, length, 10):
            positions = torch.arange(start, start + 10)
            memory.add_batch(positions.float().unsqueeze(1), positions, 0)
        kept[stored(memory)[1].numpy()] += 1
    inclusion = kept / runs
    # Expected 0.1 everywhere; the bounds are about 4.5 standard deviations.
    assert inclusion.min() > 0.03 and inclusion.max() < 0.17
    assert abs(inclusion[:50].mean() - inclusion[50:].mean()) < 0.02


def test_reservoir_policy_fills_then_replaces_within_capacity():
    uniforms = np.random.default_rng(0).random((6, 2))
    state = PolicyInput(
        capacity=4, stored_y=np.zeros(2, np.int64), stored_task=np.zeros(2, np.int64), seen=2,
        seen_per_class={0: 2}, seen_per_task={0: 2}, incoming_y=np.zeros(6, np.int64),
        incoming_task=np.zeros(6, np.int64), uniforms=uniforms,
    )
    slots = reservoir(state)
    assert slots[:2].tolist() == [2, 3]
    assert ((slots[2:] >= -1) & (slots[2:] < 4)).all()
    expected = np.floor(uniforms[2:, 0] * (np.arange(4, 8) + 1))
    assert slots[2:].tolist() == [int(e) if e < 4 else -1 for e in expected]


def test_class_balanced_keeps_minority_classes_from_an_imbalanced_stream():
    memory = EpisodicMemory(30, "class_balanced", seed=0)
    labels = torch.cat([torch.zeros(300, dtype=torch.long), torch.full((10,), 1),
                        torch.full((10,), 2)])
    labels = labels[torch.randperm(320, generator=torch.Generator().manual_seed(1))]
    for start in range(0, 320, 20):
        chunk = labels[start : start + 20]
        memory.add_batch(chunk.float().unsqueeze(1), chunk, 0)
    counts = torch.bincount(stored(memory)[1], minlength=3).tolist()
    assert counts == [10, 10, 10]
    reservoir_memory = EpisodicMemory(30, "reservoir", seed=0)
    for start in range(0, 320, 20):
        chunk = labels[start : start + 20]
        reservoir_memory.add_batch(chunk.float().unsqueeze(1), chunk, 0)
    assert torch.bincount(stored(reservoir_memory)[1], minlength=3)[0] > 20


def test_task_balanced_gives_each_task_an_equal_share():
    memory = EpisodicMemory(50, "task_balanced", seed=0)
    for task in range(5):
        for _ in range(10):
            memory.add_batch(torch.randn(10, 3), torch.zeros(10, dtype=torch.long), task)
    assert memory.task_counts() == {0: 10, 1: 10, 2: 10, 3: 10, 4: 10}


@pytest.mark.parametrize("policy", policies())
def test_same_seed_same_memory_and_samples(policy):
    first, second, other = (EpisodicMemory(40, policy, seed=s) for s in (5, 5, 6))
    for memory in (first, second, other):
        stream(memory, 20)
    assert all(torch.equal(a, b) for a, b in zip(stored(first), stored(second), strict=True))
    assert torch.equal(first.sample(10).x, second.sample(10).x)
    assert torch.equal(first.sample(5, {0: 1.0, 3: 2.0}).x, second.sample(5, {0: 1.0, 3: 2.0}).x)
    assert not torch.equal(first.sample(20).x, other.sample(20).x)
    generator = torch.Generator().manual_seed(0)
    drawn = first.sample(8, generator=generator).x
    assert torch.equal(drawn, second.sample(8, generator=torch.Generator().manual_seed(0)).x)


def test_sample_sizes_and_task_weights():
    memory = EpisodicMemory(100, seed=0)
    for task in range(4):
        memory.add_batch(torch.randn(25, 3), torch.full((25,), task), task)
    everything = memory.sample(500)
    assert len(everything.x) == 100 and len(set(everything.x[:, 0].tolist())) == 100
    only = memory.sample(60, task_weights={2: 1.0})
    assert len(only.x) == 25 and set(only.task_id.tolist()) == {2}
    shares = torch.zeros(4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        shares += torch.bincount(memory.sample(4, {0: 3.0, 1: 1.0}, generator).task_id,
                                 minlength=4)
    shares /= shares.sum()
    assert shares[0] == pytest.approx(0.73, abs=0.05) and shares[2:].sum() == 0
    empty = EpisodicMemory(5).sample(3)
    assert len(empty.x) == len(empty.y) == 0


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced"])
def test_weighted_sampling_follows_the_memory_as_it_changes(policy):
    """Repeated weighted draws (cached probabilities) see every later add and removal."""
    memory = EpisodicMemory(40, policy, seed=0)
    memory.add_batch(torch.randn(30, 3), torch.arange(30) % 3, 0)
    weights = {0: 1.0}
    assert set(memory.sample(40, weights).task_id.tolist()) == {0}
    # Same size, same weights, different contents: task 1 replaces stored samples.
    memory.add_batch(torch.randn(60, 3), torch.arange(60) % 3 + 3, 1)
    assert len(memory) == 40
    assert len(memory.sample(40, weights).slot) == memory.task_counts()[0] < 30
    both = memory.sample(40, {0: 1.0, 1: 1.0})
    assert set(both.task_id.tolist()) == {0, 1}
    memory.remove_task(0)
    with pytest.raises(UnknownIdError, match="task_weights names task 0"):
        memory.sample(5, weights)
    assert set(memory.sample(40, {1: 1.0}).task_id.tolist()) == {1}


def test_cached_weighted_draws_equal_fresh_ones():
    memory = EpisodicMemory(50, "class_balanced", seed=0)
    for task in range(3):
        memory.add_batch(torch.randn(40, 3), torch.arange(40) % 4 + 4 * task, task)
    weights = {0: 1.0, 1: 2.0, 2: 1.0}
    memory.sample(5, weights)  # fills the cache
    cached = memory.sample(20, weights, torch.Generator().manual_seed(1))
    memory._probability_cache = None
    fresh = memory.sample(20, weights, torch.Generator().manual_seed(1))
    assert torch.equal(cached.slot, fresh.slot)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_nearest_matches_brute_force_over_stored_features(metric):
    memory = EpisodicMemory(200, feature_dim=5, metric=metric, seed=0)
    stream(memory, 30)
    x, y, task = stored(memory)
    features = memory.features.get_vectors(np.arange(len(memory)))
    assert torch.allclose(torch.from_numpy(features), _normalised(x.reshape(len(x), -1)[:, :5],
                                                                  metric))
    queries = torch.randn(6, 5, generator=torch.Generator().manual_seed(9))
    found = memory.nearest(queries, k=8)
    if metric == "l2":
        scores = -torch.cdist(queries, torch.from_numpy(features)) ** 2
    else:
        scores = _normalised(queries, metric) @ torch.from_numpy(features).T
    best = torch.topk(scores, 8)
    assert torch.equal(found.slots, best.indices)
    assert torch.allclose(found.similarities, best.values, atol=1e-4)
    assert found.x.shape == (6, 8, 2, 3)
    assert torch.equal(found.x, x[found.slots]) and torch.equal(found.y, y[found.slots])
    assert torch.equal(found.task_id, task[found.slots])
    assert memory.nearest(queries[0], k=1000).slots.shape == (1, 200)


def test_stored_returns_every_sample_by_slot_and_features_can_be_refreshed():
    memory = EpisodicMemory(30, feature_dim=5, seed=0)
    stream(memory, 5)
    everything = memory.stored()
    assert all(torch.equal(a, b) for a, b in zip(everything[:3], stored(memory), strict=True))
    assert torch.equal(everything.slot, torch.arange(30))
    drawn = memory.sample(7)
    assert torch.equal(drawn.x, everything.x[drawn.slot])
    fresh = torch.randn(30, 5)
    memory.update_features(torch.arange(30), fresh)
    found = memory.nearest(fresh, k=1)
    assert torch.equal(found.slots[:, 0], torch.arange(30))
    with pytest.raises(UnknownIdError, match="id 30 is not in this memory"):
        memory.update_features([30], torch.ones(1, 5))
    with pytest.raises(RuntimeError, match="stores no features"):
        EpisodicMemory(3).update_features([0], torch.ones(1, 5))


def _normalised(features: torch.Tensor, metric: str) -> torch.Tensor:
    return torch.nn.functional.normalize(features, dim=1) if metric == "cosine" else features


def test_remove_task_drops_its_samples_and_keeps_features_aligned():
    memory = EpisodicMemory(120, feature_dim=5, seed=0)
    stream(memory, 20, tasks=4)
    counts = memory.task_counts()
    assert memory.remove_task(1) == counts[1]
    assert 1 not in memory.task_counts() and len(memory) == 120 - counts[1]
    x = stored(memory)[0]
    found = memory.nearest(x.reshape(len(x), -1)[:, :5], k=1)
    assert torch.equal(found.slots[:, 0], torch.arange(len(memory)))
    assert (found.task_id != 1).all()
    with pytest.raises(UnknownIdError, match="task_id 1 has no samples in this memory"):
        memory.remove_task(1)
    stream(memory, 5, seed=3)
    assert len(memory) == 120 and len(memory.features) == 120


@pytest.mark.parametrize("policy", policies())
def test_save_load_round_trip_resumes_the_same_random_sequence(tmp_path, policy):
    memory = EpisodicMemory(60, policy, feature_dim=5, seed=11)
    stream(memory, 12)
    memory.save(tmp_path / "episodic")
    loaded = EpisodicMemory.load(tmp_path / "episodic")
    assert (loaded.capacity, loaded.policy, loaded.seen, loaded.feature_dim) == (
        60, policy, memory.seen, 5)
    for a, b in zip(stored(memory), stored(loaded), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    queries = torch.randn(4, 5)
    assert torch.equal(memory.nearest(queries, 6).slots, loaded.nearest(queries, 6).slots)
    # The generator state is saved: both continue identically.
    stream(memory, 6, seed=1)
    stream(loaded, 6, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(stored(memory), stored(loaded), strict=True))
    assert torch.equal(memory.sample(10, {0: 1.0, 3: 1.0}).x,
                       loaded.sample(10, {0: 1.0, 3: 1.0}).x)


def test_save_load_of_an_empty_memory_and_one_without_features(tmp_path):
    EpisodicMemory(5, seed=2).save(tmp_path / "empty")
    empty = EpisodicMemory.load(tmp_path / "empty")
    assert len(empty) == 0 and empty.sample_shape is None
    memory = EpisodicMemory(5, seed=2)
    memory.add_batch(torch.arange(12, dtype=torch.uint8).reshape(3, 4), [1, 2, 3], 0)
    memory.save(tmp_path / "plain")
    loaded = EpisodicMemory.load(tmp_path / "plain")
    assert loaded.sample_shape == (4,) and torch.equal(stored(loaded)[0], stored(memory)[0])
    with pytest.raises(RuntimeError, match="stores no features"):
        loaded.nearest(torch.ones(4), 1)


def test_bad_input_is_refused():
    memory = EpisodicMemory(10, feature_dim=3)
    memory.add_batch(torch.zeros(2, 4), [0, 1], 0, torch.ones(2, 3))
    cases = [
        (dict(x=torch.zeros(2, 5)), ValueError, r"sample shape \(5,\); this memory stores"),
        (dict(x=torch.zeros(2, 4, dtype=torch.float64)), TypeError, "dtype torch.float64"),
        (dict(x=torch.full((2, 4), float("nan"))), ValueError, "NaN or infinite"),
        (dict(y=[0, 1, 2]), ValueError, r"y must have shape \(2,\)"),
        (dict(y=[0.5, 1.0]), TypeError, "y must be integers"),
        (dict(y=[-1, 0]), ValueError, "y must be non-negative"),
        (dict(task_id=[0, 1, 2]), ValueError, r"task_id must have shape \(2,\)"),
        (dict(features=None), ValueError, "pass features= with every batch"),
        (dict(features=torch.ones(2, 4)), ValueError, "dimension 4, this memory expects dim"),
        (dict(features=torch.ones(3, 3)), ValueError, "got 3 feature rows for a batch of 2"),
        (dict(features=torch.full((2, 3), float("inf"))), ValueError, "non-finite"),
    ]
    for change, error, message in cases:
        arguments = dict(x=torch.zeros(2, 4), y=[0, 1], task_id=0, features=torch.ones(2, 3))
        arguments.update(change)
        with pytest.raises(error, match=message):
            memory.add_batch(**arguments)
    assert len(memory) == 2 and memory.seen == 2
    with pytest.raises(ValueError, match="k must be a positive integer, got k=0"):
        memory.nearest(torch.ones(3), 0)
    with pytest.raises(ValueError, match="dimension 2, this memory expects dimension 3"):
        memory.nearest(torch.ones(2), 1)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        memory.sample(0)
    with pytest.raises(UnknownIdError, match="task_weights names task 7"):
        memory.sample(1, {7: 1.0})
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        memory.sample(1, {0: -1.0})
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        memory.sample(1, {0: float("nan")})
    with pytest.raises(ValueError, match="are all zero"):
        memory.sample(1, {0: 0.0})
    cosine = EpisodicMemory(10, feature_dim=3, metric="cosine")
    with pytest.raises(ValueError, match="features row 1 has zero norm"):
        cosine.add_batch(torch.zeros(2, 4), [0, 1], 0, torch.tensor([[1.0, 0, 0], [0, 0, 0]]))
    assert len(cosine) == 0 and cosine.seen == 0 and len(cosine.features) == 0
    with pytest.raises(ValueError, match="features given, but this memory stores none"):
        EpisodicMemory(3).add_batch(torch.zeros(1, 2), [0], 0, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="capacity must be a positive integer"):
        EpisodicMemory(0)
    with pytest.raises(ValueError, match="unknown policy 'fifo'"):
        EpisodicMemory(3, "fifo")


def test_policy_registry_and_a_misbehaving_policy():
    with pytest.raises(ValueError, match="'reservoir' is already registered"):
        register_policy("reservoir", get_policy("reservoir"))

    def everything_to_slot_nine(state: PolicyInput) -> np.ndarray:
        return np.full(state.incoming_y.shape, 9, np.int64)

    register_policy("test-slot-nine", everything_to_slot_nine)
    memory = EpisodicMemory(4, "test-slot-nine")
    with pytest.raises(ValueError, match=r"returned a slot outside \[-1, 4\)"):
        memory.add_batch(torch.zeros(2, 1), [0, 0], 0)
    assert len(memory) == 0


def test_class_balanced_stays_a_reservoir_when_classes_do_not_divide_the_capacity():
    # 201 slots over 10 interleaved classes: one class is always a sample ahead. Counting only
    # the largest class as full, every new sample evicted an old one (the memory ended as the
    # most recent 201); a reservoir keeps each sample seen with equal probability.
    memory = EpisodicMemory(201, "class_balanced", seed=0)
    for batch in range(40):
        position = torch.arange(batch * 100, (batch + 1) * 100)
        memory.add_batch(position.float().unsqueeze(1), position % 10, 0)
    positions = memory.stored().x.squeeze(1)
    recent_half = float((positions >= 2000).float().mean())
    assert 0.35 < recent_half < 0.65, recent_half
    assert max(memory.task_counts().values()) == 201
    counts = np.bincount(memory.stored().y.numpy(), minlength=10)
    assert counts.max() - counts.min() <= 2
