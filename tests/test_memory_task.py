"""TaskMemory: the verbs, the records, save/load round trips and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memory import IndexConfig, TaskMemory, TaskRecord, UnknownIdError


def record(i: int) -> TaskRecord:
    generator = torch.Generator().manual_seed(i)
    return TaskRecord(
        tensors={
            "head.weight": torch.randn(3, 4, generator=generator),
            "prototypes": torch.randn(2, 4, generator=generator).to(torch.bfloat16),
            "counts": torch.arange(5, dtype=torch.int64) * i,
        },
        metadata={"name": f"task-{i}", "classes": [2 * i, 2 * i + 1], "size": 100 + i},
    )


def filled(n: int = 20, dim: int = 8, **kwargs) -> tuple[TaskMemory, torch.Tensor]:
    embeddings = torch.randn(n, dim, generator=torch.Generator().manual_seed(0))
    memory = TaskMemory(dim, **kwargs)
    for i in range(n):
        assert memory.add(embeddings[i], record(i)) == i
    return memory, embeddings


def test_search_returns_the_most_similar_tasks_and_their_records():
    memory, embeddings = filled()
    result = memory.search(embeddings[[3, 7]] * 2.5, k=4)
    assert result.ids[:, 0].tolist() == [3, 7]
    assert result.similarities[:, 0].tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    records = memory.records(result.ids)
    assert [len(row) for row in records] == [4, 4]
    assert records[0][0].metadata["name"] == "task-3"
    assert memory.records(result.ids[0])[0][0] is memory.get(3)
    cosines = torch.nn.functional.cosine_similarity(embeddings[3:4], embeddings)
    assert result.similarities[0].tolist() == pytest.approx(
        torch.topk(cosines, 4).values.tolist(), abs=1e-5
    )


def test_l2_similarity_is_the_negative_squared_distance():
    memory, embeddings = filled(metric="l2")
    query = embeddings[5] + 0.1
    result = memory.search(query, k=3)
    distances = ((embeddings - query) ** 2).sum(1)
    assert result.ids[0].tolist() == torch.topk(-distances, 3).indices.tolist()
    assert result.similarities[0].tolist() == pytest.approx(
        (-torch.sort(distances).values[:3]).tolist(), abs=1e-4
    )


def test_get_update_remove_and_ids_that_are_never_reused():
    memory, _ = filled(5)
    assert len(memory) == 5 and 2 in memory and memory.task_ids() == [0, 1, 2, 3, 4]
    new = torch.tensor([0.0, 0, 0, 0, 0, 0, 0, 1])
    memory.update_embedding(2, new)
    assert torch.allclose(memory.embedding(2), new)
    assert memory.search(new, 1).ids[0, 0] == 2
    assert memory.get(2).metadata["name"] == "task-2"  # the record survives re-embedding
    memory.remove(2)
    assert 2 not in memory and len(memory) == 4
    assert 2 not in memory.search(new, 10).ids
    assert memory.add(new) == 5
    assert memory.get(5).tensors == {} and memory.get(5).metadata == {}


def test_k_larger_than_the_memory_returns_all_and_empty_memory_returns_nothing():
    memory = TaskMemory(4)
    empty = memory.search(torch.ones(3, 4), k=5)
    assert empty.ids.shape == empty.similarities.shape == (3, 0)
    memory.add(torch.ones(4))
    memory.add(torch.tensor([1.0, -1, 0, 0]))
    everything = memory.search(torch.ones(2, 4), k=50)
    assert everything.ids.shape == (2, 2) and everything.ids[0].tolist() == [0, 1]


def test_auto_index_switch_keeps_ids_and_records():
    config = IndexConfig(exact_until=64)
    memory, embeddings = filled(200, dim=16, index_config=config)
    assert memory.index.built_kind == "hnsw"
    result = memory.search(embeddings, k=1)
    assert (result.ids[:, 0] == torch.arange(200)).float().mean() >= 0.99
    assert memory.get(150).metadata["name"] == "task-150"


def test_records_are_private_copies_and_metadata_goes_through_json():
    weight = torch.zeros(3)
    entry = TaskRecord({"w": weight}, {"classes": (1, 2), "nested": {"a": [1.5, None]}})
    weight += 1
    assert entry.tensors["w"].tolist() == [0, 0, 0]
    assert entry.metadata["classes"] == [1, 2]
    with pytest.raises(TypeError):
        entry.tensors["x"] = torch.zeros(1)  # type: ignore[index]
    with pytest.raises(ValueError, match="JSON-serialisable"):
        TaskRecord(metadata={"bad": object()})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        TaskRecord(metadata={"loss": float("nan")})
    with pytest.raises(TypeError, match="metadata keys must be strings"):
        TaskRecord(metadata={1: "a"})
    with pytest.raises(TypeError, match="tensor 'w' must be a dense torch.Tensor"):
        TaskRecord(tensors={"w": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="tensor names must be non-empty strings"):
        TaskRecord(tensors={"": torch.zeros(1)})


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "auto"])
def test_save_load_round_trip(tmp_path, kind):
    memory, embeddings = filled(300, dim=16, metric="cosine", index_kind=kind,
                                index_config=IndexConfig(exact_until=100))
    memory.remove(10)
    memory.update_embedding(11, embeddings[12])
    before = memory.search(embeddings[:50], k=7)
    memory.save(tmp_path / "tasks")
    loaded = TaskMemory.load(tmp_path / "tasks")
    assert loaded.task_ids() == memory.task_ids() and loaded.dim == 16
    assert loaded.index.built_kind == memory.index.built_kind
    after = loaded.search(embeddings[:50], k=7)
    assert torch.equal(after.ids, before.ids)
    assert torch.allclose(after.similarities, before.similarities, atol=1e-6)
    for task_id in memory.task_ids():
        original, copy = memory.get(task_id), loaded.get(task_id)
        assert dict(copy.metadata) == dict(original.metadata)
        assert copy.tensors.keys() == original.tensors.keys()
        for name, tensor in original.tensors.items():
            assert copy.tensors[name].dtype == tensor.dtype
            assert torch.equal(copy.tensors[name].view(torch.uint8), tensor.view(torch.uint8))
        assert torch.equal(loaded.embedding(task_id), memory.embedding(task_id))
    assert loaded.add(embeddings[0]) == 300  # ids continue, never reused


def test_saving_again_replaces_the_previous_save(tmp_path):
    memory, _ = filled(5)
    memory.save(tmp_path / "m")
    memory.remove(0)
    memory.save(tmp_path / "m")
    assert TaskMemory.load(tmp_path / "m").task_ids() == [1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (torch.ones(7), ValueError, "dimension 7, this memory expects dimension 8"),
        (torch.ones(2, 8), ValueError, r"expected one embedding of shape \(8,\)"),
        (torch.full((8,), float("nan")), ValueError, "non-finite value \\(nan\\)"),
        (torch.full((8,), float("inf")), ValueError, "non-finite value \\(inf\\)"),
        (torch.zeros(8), ValueError, "zero norm"),
        ("not a vector", TypeError, "must be numeric"),
    ],
)
def test_bad_embeddings_are_refused(bad, error, message):
    memory, _ = filled(3)
    with pytest.raises(error, match=message):
        memory.add(bad)
    with pytest.raises(error, match=message):
        memory.update_embedding(1, bad)
    assert len(memory) == 3 and memory.task_ids() == [0, 1, 2]


def test_bad_queries_and_k_are_refused():
    memory, _ = filled(3)
    with pytest.raises(ValueError, match="dimension 4, this memory expects dimension 8"):
        memory.search(torch.ones(2, 4), 1)
    with pytest.raises(ValueError, match="non-finite"):
        memory.search(torch.tensor([[float("nan")] * 8]), 1)
    with pytest.raises(ValueError, match="k must be a positive integer, got k=0"):
        memory.search(torch.ones(8), 0)
    with pytest.raises(ValueError, match="got k=-1"):
        memory.search(torch.ones(8), -1)
    with pytest.raises(TypeError, match="k must be a positive integer"):
        memory.search(torch.ones(8), 2.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("verb", ["get", "embedding", "remove", "update_embedding"])
def test_unknown_ids_are_refused(verb):
    memory, _ = filled(3)
    memory.remove(1)
    args = (torch.ones(8),) if verb == "update_embedding" else ()
    for missing in (1, 99):
        with pytest.raises(UnknownIdError, match=rf"task_id {missing} is not in this memory"):
            getattr(memory, verb)(missing, *args)
    with pytest.raises(TypeError, match="task_id must be an int"):
        getattr(memory, verb)("0", *args)
    with pytest.raises(UnknownIdError, match="id 7 is not in this memory"):
        memory.records(torch.tensor([[0, 7]]))
    assert memory.task_ids() == [0, 2]


def test_record_must_be_a_task_record():
    memory = TaskMemory(2)
    with pytest.raises(TypeError, match="record must be a TaskRecord, got dict"):
        memory.add(np.ones(2), {"name": "x"})  # type: ignore[arg-type]
    assert len(memory) == 0
