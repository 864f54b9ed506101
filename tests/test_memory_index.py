"""The index layer: exact search equals brute force, approximate search has high recall, ids
stay stable through removal, update and automatic kind changes, and bad input is refused."""

from __future__ import annotations

import dataclasses

import faiss
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memory import (
    AUTO,
    IndexConfig,
    UnknownIdError,
    VectorIndex,
    choose_kind,
    get_index_kind,
    index_kinds,
    register_index_kind,
)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str):
    """What a user would write by hand: torch matmul or cdist, then topk."""
    x = torch.from_numpy(vectors).double()
    q = torch.from_numpy(queries).double()
    if metric == "cosine":
        scores = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(x, dim=1).T
    else:
        scores = -torch.cdist(q, x) ** 2
    top = torch.topk(scores, min(k, len(vectors)), dim=1)
    return scores.numpy(), top.values.numpy(), top.indices.numpy()


def assert_matches_brute_force(sims, ids, vectors, vector_ids, queries, k, metric):
    scores, best, best_rows = brute_force(vectors, queries, k, metric)
    k_eff = min(k, len(vectors))
    assert sims.shape == ids.shape == (len(queries), k_eff)
    scale = max(1.0, float(np.abs(scores).max())) if scores.size else 1.0
    atol = 1e-4 * scale
    np.testing.assert_allclose(sims, best, atol=atol, rtol=0)
    row_of = {int(i): r for r, i in enumerate(vector_ids)}
    for q in range(len(queries)):
        assert len(set(ids[q].tolist())) == k_eff, "an id repeats within one result row"
        true = np.array([scores[q, row_of[int(i)]] for i in ids[q]])
        np.testing.assert_allclose(sims[q], true, atol=atol, rtol=0)
        # Where the k-th and (k+1)-th neighbours are clearly apart, the sets must agree exactly.
        ordered = np.sort(scores[q])[::-1]
        if k_eff < len(vectors) and ordered[k_eff - 1] - ordered[k_eff] > 10 * atol:
            assert set(ids[q].tolist()) == {int(vector_ids[r]) for r in best_rows[q]}


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    dim=st.integers(1, 24),
    k=st.integers(1, 320),
    metric=st.sampled_from(["cosine", "l2"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_flat_search_equals_brute_force(n, dim, k, metric, seed):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    queries = rng.standard_normal((7, dim)).astype(np.float32)
    ids = rng.permutation(4 * n)[:n]
    index = VectorIndex(dim, metric, "flat")
    index.add(ids, vectors)
    sims, found = index.search(queries, k)
    assert_matches_brute_force(sims, found, vectors, ids, queries, k, metric)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 200),
    k=st.integers(1, 60),
    metric=st.sampled_from(["cosine", "l2"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_flat_search_equals_brute_force_after_removes_and_updates(n, k, metric, seed):
    rng = np.random.default_rng(seed)
    dim = 8
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    index = VectorIndex(dim, metric, "flat", IndexConfig(max_dead_fraction=0.9))
    index.add(np.arange(n), vectors)
    removed = rng.choice(n, size=int(rng.integers(0, n)), replace=False)
    index.remove(removed)
    live = np.setdiff1d(np.arange(n), removed)
    if live.size:
        changed = rng.choice(live, size=int(rng.integers(0, live.size + 1)), replace=False)
        vectors[changed] = rng.standard_normal((changed.size, dim))
        index.update(changed, vectors[changed])
    queries = rng.standard_normal((5, dim)).astype(np.float32)
    sims, found = index.search(queries, k)
    assert len(index) == live.size
    if live.size == 0:
        assert found.shape == (5, 0)
        return
    assert_matches_brute_force(sims, found, vectors[live], live, queries, k, metric)


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 50), dim))
    points = centres[rng.integers(0, len(centres), n)] + 0.3 * rng.standard_normal((n, dim))
    return points.astype(np.float32)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_approximate_kinds_have_high_recall(kind, metric):
    data = clustered(3000, 32, seed=1)
    vectors, queries = data[:2900], data[2900:]
    index = VectorIndex(32, metric, kind, IndexConfig(ivf_nprobe=8))
    index.add(np.arange(2900), vectors)
    truth = brute_force(vectors, queries, 10, metric)[2]
    _, found = index.search(queries, 10)
    assert recall_at(found, truth) >= 0.95


def test_auto_moves_to_approximate_past_the_threshold_with_stable_ids():
    data = clustered(1300, 16, seed=2)
    vectors, queries = data[:1200], data[1200:]
    ids = np.arange(1200) * 3 + 7
    index = VectorIndex(16, "cosine", AUTO, IndexConfig(exact_until=500))
    kinds = []
    for start in range(0, 1200, 100):
        index.add(ids[start : start + 100], vectors[start : start + 100])
        kinds.append(index.built_kind)
    assert kinds[:5] == ["flat"] * 5 and kinds[5:] == ["hnsw"] * 7
    expected = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(index.get_vectors(ids), expected, atol=1e-6)
    _, truth_rows = brute_force(vectors, queries, 10, "cosine")[1:]
    _, found = index.search(queries, 10)
    assert recall_at(found, ids[truth_rows]) >= 0.95
    # Shrinking below half the threshold goes back to exact search, still with the same ids.
    index.remove(ids[200:])
    index.search(queries, 1)
    assert index.built_kind == "flat"
    sims, found = index.search(queries, 10)
    assert_matches_brute_force(sims, found, vectors[:200], ids[:200], queries, 10, "cosine")


@pytest.mark.parametrize("scale", [1e-42, 1e-25, 1.0, 1e25, 1e37])
def test_cosine_normalises_tiny_and_huge_vectors(scale):
    direction = np.array([[3.0, 4.0, 0.0]])
    index = VectorIndex(3, "cosine", "flat")
    index.add([0], (direction * scale).astype(np.float32))
    np.testing.assert_allclose(index.get_vectors([0]), [[0.6, 0.8, 0.0]], rtol=1e-2)
    sims, ids = index.search((direction * scale).astype(np.float32), 1)
    assert ids[0, 0] == 0 and sims[0, 0] == pytest.approx(1.0, rel=1e-2)


def test_choose_kind_has_hysteresis():
    config = IndexConfig(exact_until=100)
    assert choose_kind(AUTO, 100, None, config, on_gpu=False) == "flat"
    assert choose_kind(AUTO, 101, "flat", config, on_gpu=False) == "hnsw"
    assert choose_kind(AUTO, 101, "flat", config, on_gpu=True) == "ivf"
    assert choose_kind(AUTO, 60, "hnsw", config, on_gpu=False) == "hnsw"
    assert choose_kind(AUTO, 50, "hnsw", config, on_gpu=False) == "flat"
    assert choose_kind("ivf", 1, None, config, on_gpu=False) == "ivf"
    config = IndexConfig(exact_until=100, approximate_kind="ivf")
    assert choose_kind(AUTO, 101, "flat", config, on_gpu=False) == "ivf"


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "flat"])
def test_removed_ids_never_return_and_updated_ids_move(kind):
    data = clustered(2000, 16, seed=3)
    index = VectorIndex(16, "l2", kind, IndexConfig(max_dead_fraction=0.5))
    index.add(np.arange(2000), data)
    removed = np.arange(0, 2000, 5)
    index.remove(removed)
    assert index.n_tombstones == removed.size
    _, found = index.search(data[:200], 20)
    assert not np.isin(found, removed).any()
    far = np.full((1, 16), 50.0, np.float32)
    index.update([1], far)
    sims, found = index.search(far, 1)
    assert found[0, 0] == 1 and sims[0, 0] == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(UnknownIdError, match="id 0 is not in this memory"):
        index.update([0], far)


def test_tombstones_are_compacted_past_the_dead_fraction():
    rng = np.random.default_rng(4)
    index = VectorIndex(8, "l2", "flat", IndexConfig(max_dead_fraction=0.25))
    index.add(np.arange(100), rng.standard_normal((100, 8)))
    index.remove(np.arange(20))
    index.search(np.zeros(8), 1)
    assert index.n_tombstones == 20  # 20 % dead: kept, skipped by the selector
    index.remove(np.arange(20, 30))
    index.search(np.zeros(8), 1)
    assert index.n_tombstones == 0 and len(index) == 70
    # Exact search skips tombstones by over-fetching, which stays cheap only for a few hundred.
    index = VectorIndex(8, "l2", "flat", IndexConfig(max_dead_fraction=0.9))
    index.add(np.arange(2000), rng.standard_normal((2000, 8)))
    index.remove(np.arange(256))
    index.search(np.zeros(8), 1)
    assert index.n_tombstones == 256
    index.remove([256])
    index.search(np.zeros(8), 1)
    assert index.n_tombstones == 0 and len(index) == 2000 - 257


def test_ivf_retrains_as_it_grows_and_short_rows_fall_back_to_exact():
    data = clustered(4000, 8, seed=5)
    index = VectorIndex(8, "l2", "ivf", IndexConfig(ivf_nprobe=1))
    index.add(np.arange(100), data[:100])
    small = int(index._index.nlist)
    index.add(np.arange(100, 4000), data[100:])
    assert int(index._index.nlist) > small
    # nprobe=1 visits one list, far too few for k = all: every row must still be full.
    sims, found = index.search(data[:3], 4000)
    assert found.shape == (3, 4000)
    assert all(len(set(row.tolist())) == 4000 for row in found)
    assert (np.diff(sims, axis=1) <= 1e-6).all()


def test_empty_index_and_k_larger_than_the_index():
    index = VectorIndex(4, "cosine", "flat")
    sims, ids = index.search(np.ones((3, 4)), 5)
    assert sims.shape == ids.shape == (3, 0)
    index.add([10, 11], np.eye(4)[:2])
    sims, ids = index.search(np.ones((3, 4)), 5)
    assert ids.shape == (3, 2) and set(ids[0].tolist()) == {10, 11}
    index.remove([10, 11])
    assert len(index) == 0 and index.search(np.ones(4), 1)[1].shape == (1, 0)


def test_faiss_settings_are_restored_after_search_and_do_not_change_results():
    threshold, threads = faiss.cvar.distance_compute_blas_threshold, faiss.omp_get_max_threads()
    rng = np.random.default_rng(0)
    vectors, queries = rng.standard_normal((3000, 8)), rng.standard_normal((40, 8))
    tuned = VectorIndex(8, "l2", "flat", IndexConfig(blas_min_queries=4))
    plain = VectorIndex(8, "l2", "flat",
                        IndexConfig(blas_min_queries=None, serial_below_queries=None))
    for index in (tuned, plain):
        index.add(np.arange(3000), vectors)
    for batch in (queries[:1], queries):
        np.testing.assert_array_equal(tuned.search(batch, 5)[1], plain.search(batch, 5)[1])
    assert faiss.cvar.distance_compute_blas_threshold == threshold
    assert faiss.omp_get_max_threads() == threads


def test_nbytes_is_linear_in_the_number_of_vectors():
    rng = np.random.default_rng(6)
    sizes = []
    for n in (1000, 2000, 4000):
        index = VectorIndex(32, "l2", "flat")
        index.add(np.arange(n), rng.standard_normal((n, 32)))
        sizes.append(index.nbytes)
    assert sizes[1] - sizes[0] == pytest.approx((sizes[2] - sizes[1]) / 2, rel=0.01)
    assert sizes[0] / 1000 == pytest.approx(2 * 32 * 4 + 8 + 1 + 8, rel=0.01)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (np.ones((2, 5)), ValueError, "dimension 5, this memory expects dimension 4"),
        (np.ones((2, 2, 4)), ValueError, r"shape \(4,\) or \(n, 4\)"),
        (np.array([[1.0, np.nan, 0, 0]]), ValueError, "non-finite value \\(nan\\) at row 0"),
        (np.array([[1.0, 0, np.inf, 0]]), ValueError, "non-finite value \\(inf\\)"),
        (np.zeros((1, 4)), ValueError, "zero norm"),
        (np.array([["a", "b", "c", "d"]]), TypeError, "must be numeric"),
    ],
)
def test_bad_vectors_are_refused(bad, error, message):
    index = VectorIndex(4, "cosine", "flat")
    with pytest.raises(error, match=message):
        index.add(np.arange(len(bad)), bad)
    index.add([0], np.ones(4))
    with pytest.raises(error, match=message.replace("vectors", "queries")):
        index.search(bad, 1)
    assert len(index) == 1


@pytest.mark.parametrize(
    ("k", "error", "message"),
    [
        (0, ValueError, "k must be a positive integer, got k=0"),
        (-3, ValueError, "got k=-3"),
        (1.5, TypeError, "got 1.5"),
        (True, TypeError, "got True"),
    ],
)
def test_bad_k_is_refused(k, error, message):
    index = VectorIndex(4, "l2", "flat")
    index.add([0], np.ones(4))
    with pytest.raises(error, match=message):
        index.search(np.ones(4), k)


def test_bad_ids_and_settings_are_refused():
    index = VectorIndex(4, "l2", "flat")
    index.add([3], np.ones(4))
    with pytest.raises(ValueError, match="id 3 is already held"):
        index.add([3], np.ones(4))
    with pytest.raises(ValueError, match="id 5 appears twice"):
        index.add([5, 5], np.ones((2, 4)))
    with pytest.raises(ValueError, match="got 1 ids for 2 vectors"):
        index.add([6], np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"must lie in \[0, 2147483647\], got -1"):
        index.add([-1], np.ones(4))
    with pytest.raises(UnknownIdError, match="id 9 is not in this memory"):
        index.remove([9])
    with pytest.raises(UnknownIdError, match="id 9"):
        index.get_vectors([3, 9])
    assert len(index) == 1
    with pytest.raises(ValueError, match="unknown metric 'dot'"):
        VectorIndex(4, "dot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown index kind 'annoy'"):
        VectorIndex(4, "l2", "annoy")
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        VectorIndex(0)
    with pytest.raises(ValueError, match="max_dead_fraction must lie in"):
        IndexConfig(max_dead_fraction=1.0)
    if faiss.get_num_gpus() == 0:
        with pytest.raises(ValueError, match="use_gpu=True but faiss sees no GPU"):
            VectorIndex(4, config=IndexConfig(use_gpu=True))


def test_registry_refuses_duplicates_and_reserved_names():
    flat = get_index_kind("flat")
    with pytest.raises(ValueError, match="'flat' is already registered"):
        register_index_kind(flat)
    with pytest.raises(ValueError, match="reserved"):
        register_index_kind(dataclasses.replace(flat, name=AUTO))
    assert {"flat", "hnsw", "ivf"} <= set(index_kinds())


@pytest.mark.parametrize("kind", index_kinds())
def test_every_registered_kind_obeys_the_contract(kind, tmp_path):
    """Add, search, remove, update, save and load, for every kind in the registry."""
    from memory import TaskMemory

    data = clustered(600, 16, seed=7)
    memory = TaskMemory(16, metric="l2", index_kind=kind)
    ids = [memory.add(v) for v in data[:500]]
    assert ids == list(range(500))
    memory.remove(3)
    memory.update_embedding(4, data[550])
    result = memory.search(data[500:], 5)
    assert result.ids.shape == (100, 5) and 3 not in result.ids
    assert (result.similarities[:, :-1] >= result.similarities[:, 1:] - 1e-6).all()
    assert memory.search(data[550], 1).ids[0, 0] == 4
    memory.save(tmp_path / "memory")
    loaded = TaskMemory.load(tmp_path / "memory")
    again = loaded.search(data[500:], 5)
    assert torch.equal(again.ids, result.ids)
    assert torch.allclose(again.similarities, result.similarities, atol=1e-5)
