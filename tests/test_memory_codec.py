"""SampleCodec and the coded, byte-budgeted EpisodicMemory: code sizes, round-trip error
bounds, the retraining rule, search over codes, byte accounting, save and load, bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from memory import ByteBudgetError, CodecError, EpisodicMemory, SampleCodec
from memory.codec import resolve_spec

DIM = 64


def uniform_rows(n: int, low: float = 0.0, high: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, (n, DIM)).astype(np.float32)


@pytest.mark.parametrize(("spec", "code_size"), [("SQ8", DIM), ("SQ4", DIM // 2), ("PQ8x8", 8)])
def test_code_size_is_what_the_string_promises(spec, code_size):
    assert SampleCodec(spec, DIM).code_size == code_size


@pytest.mark.parametrize(("spec", "bits"), [("SQ8", 8), ("SQ4", 4)])
def test_scalar_codes_round_trip_within_half_a_quantisation_step(spec, bits):
    rows = uniform_rows(500)
    codec = SampleCodec(spec, DIM)
    codec.train(rows)
    decoded = codec.decode(codec.encode(rows))
    # Each value is trained to its dimension's [min, max]; 2**bits - 1 steps span that range.
    step = (rows.max(axis=0) - rows.min(axis=0)) / (2**bits - 1)
    assert np.all(np.abs(decoded - rows) <= step / 2 + 1e-6)
    assert codec.relative_error(rows) < (0.01 if bits == 4 else 1e-4)


def test_product_codes_reconstruct_better_than_the_mean():
    rows = uniform_rows(2000)
    codec = SampleCodec("PQ16x4", DIM)
    codec.train(rows)
    assert codec.relative_error(rows) < 0.5


def test_product_codes_skip_polysemous_training():
    # FAISS's factory trains "PQ..." polysemously (centroids reordered for Hamming search)
    # unless the string ends in "np"; the codec never searches by Hamming distance, so both
    # strings must train the same codebook, at the cost of the plain k-means.
    rows = uniform_rows(500)
    plain, no_polysemous = SampleCodec("PQ16x4", DIM), SampleCodec("PQ16x4np", DIM)
    plain.train(rows)
    no_polysemous.train(rows)
    np.testing.assert_array_equal(plain.encode(rows), no_polysemous.encode(rows))


def test_codebook_bytes_are_what_faiss_serialises():
    codec = SampleCodec("SQ8", DIM)
    codec.train(uniform_rows(10))
    # A scalar quantiser keeps a minimum and a range per dimension, float32, plus a header.
    assert codec.codebook_bytes == len(codec.to_bytes())
    assert 2 * DIM * 4 <= codec.codebook_bytes < 2 * DIM * 4 + 200


def test_retraining_rule_fires_on_data_out_of_the_trained_range_only():
    codec = SampleCodec("SQ8", DIM)
    codec.train(uniform_rows(500))
    assert not codec.needs_retraining(codec.relative_error(uniform_rows(500, seed=1)))
    assert codec.needs_retraining(codec.relative_error(uniform_rows(500, 0.0, 3.0, seed=2)))


def test_search_over_codes_matches_brute_force_on_the_decoded_rows():
    rows = uniform_rows(300)
    codec = SampleCodec("SQ8", DIM)
    codec.train(rows)
    codes = codec.encode(rows)
    queries = uniform_rows(20, seed=5)
    distances, found = codec.search(codes, queries, 3)
    decoded = codec.decode(codes)
    exact = ((queries[:, None, :] - decoded[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(found[:, 0], exact.argmin(1))
    np.testing.assert_allclose(distances[:, 0], exact.min(1), rtol=1e-4)


def test_a_codec_pickles_and_loads_with_identical_codes():
    rows = uniform_rows(100)
    codec = SampleCodec("SQ4", DIM)
    codec.train(rows)
    again = pickle.loads(pickle.dumps(codec))
    np.testing.assert_array_equal(again.encode(rows), codec.encode(rows))
    assert again.trained_error == codec.trained_error


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "FAISS refuses codec 'nope' for 64-dimensional samples"),
        ("PQ7x8", "FAISS refuses codec 'PQ7x8'.*multiple of the number of subquantizers"),
        ("HNSW32", "no standalone codec"),
        ("", "must be a FAISS factory string"),
    ],
)
def test_refused_codec_strings_name_themselves_in_one_line(spec, message):
    with pytest.raises(CodecError, match=message) as error:
        SampleCodec(spec, DIM)
    assert "\n" not in str(error.value)


def test_too_few_rows_for_the_centroids_is_one_line():
    with pytest.raises(CodecError, match="could not train on 10 rows.*at least as large"):
        SampleCodec("PQ8x8", DIM).train(uniform_rows(10))


# --- The coded, byte-budgeted episodic memory ------------------------------------------------


def samples(n: int, low: float = 0.0, high: float = 1.0, seed: int = 0):
    x = torch.from_numpy(uniform_rows(n, low, high, seed)).reshape(n, 1, 8, 8)
    y = torch.arange(n) % 10
    return x, y


def test_a_float_memory_holds_as_many_samples_as_the_bytes_allow():
    memory = EpisodicMemory(byte_budget=10 * DIM * 4, policy="reservoir")
    memory.add_batch(*samples(50), 0)
    assert memory.capacity == 10 and len(memory) == 10
    assert memory.nbytes_by_kind() == {"samples": 10 * DIM * 4, "index": 0}


def test_a_coded_memory_charges_codes_extras_and_codebook_to_the_budget():
    budget, extra = 10_000, 8
    memory = EpisodicMemory(byte_budget=budget, codec="SQ8", extra_bytes_per_sample=extra)
    memory.add_batch(*samples(500), 0)
    assert memory.codec is not None
    codebook = memory.codec.codebook_bytes
    assert memory.capacity == (budget - codebook) // (DIM + extra)
    assert memory.nbytes_by_kind() == {"samples": memory.capacity * DIM, "index": codebook}
    assert sum(memory.nbytes_by_kind().values()) + extra * len(memory) <= budget


def test_a_coded_memory_replays_decoded_floats_close_to_the_originals():
    memory = EpisodicMemory(100, "reservoir", codec="SQ8")
    x, y = samples(100)
    memory.add_batch(x, y, 0)
    stored = memory.stored()
    assert stored.x.shape == x.shape and stored.x.dtype == torch.float32
    np.testing.assert_allclose(stored.x.numpy(), x.numpy(), atol=1 / 255)
    assert memory.sample(7).x.shape == (7, 1, 8, 8)


def test_out_of_range_data_retrain_the_codec_and_re_encode_what_is_stored():
    memory = EpisodicMemory(400, "task_balanced", codec="SQ8")
    first, y = samples(200)
    memory.add_batch(first, y, 0)
    memory.add_batch(samples(200, 0.0, 3.0, seed=1)[0], y, 1)
    assert memory.retrains == 1
    # Each batch's error as it is stored: the second after the retraining it caused.
    assert len(memory.reconstruction_errors) == 2
    assert memory.reconstruction_errors[1] < 1e-4
    # The memory was not full: the first batch still sits in slots 0-199, in order.
    kept_first = memory.stored().x[:200]
    # Decoded once (half a step of [0, 1]), re-encoded on the wider range (half a step of
    # about [0, 3]).
    assert float((kept_first - first).abs().max()) <= (1 / 255 + 3 / 255) / 2 + 1e-6


def test_nearest_samples_of_a_stored_sample_is_itself():
    memory = EpisodicMemory(100, "reservoir", codec="SQ8")
    x, y = samples(100)
    memory.add_batch(x, y, 0)
    distances, neighbours = memory.nearest_samples(x[:3], 1)
    assert distances.shape == (3, 1)
    np.testing.assert_array_equal(neighbours.y.numpy(), y[:3].numpy())
    assert float(distances.max()) < 1e-3


def test_a_coded_memory_saves_and_loads_the_same_codes_and_draws(tmp_path):
    memory = EpisodicMemory(byte_budget=8_000, codec="SQ4", policy="task_balanced", seed=3)
    memory.add_batch(*samples(100), 0)
    memory.add_batch(*samples(100, seed=1), 1)
    memory.save(tmp_path / "coded")
    loaded = EpisodicMemory.load(tmp_path / "coded")
    assert loaded.capacity == memory.capacity and loaded.byte_budget == 8_000
    assert loaded.nbytes_by_kind() == memory.nbytes_by_kind()
    assert loaded.reconstruction_errors == memory.reconstruction_errors
    torch.testing.assert_close(loaded.stored().x, memory.stored().x)
    torch.testing.assert_close(loaded.sample(5).x, memory.sample(5).x)


def test_a_budget_below_one_code_and_the_codebook_is_refused():
    memory = EpisodicMemory(byte_budget=300, codec="SQ8")
    with pytest.raises(ByteBudgetError, match="byte_budget 300 holds no sample"):
        memory.add_batch(*samples(10), 0)


@pytest.mark.parametrize(
    "kwargs", [{}, {"capacity": 10, "byte_budget": 100}], ids=["neither", "both"]
)
def test_a_memory_takes_exactly_one_bound(kwargs):
    with pytest.raises(ValueError, match="exactly one of capacity"):
        EpisodicMemory(**kwargs)


def test_the_capacity_of_a_byte_memory_is_unknown_before_data():
    with pytest.raises(RuntimeError, match="capacity in samples is fixed by the first batch"):
        _ = EpisodicMemory(byte_budget=1000).capacity


def test_a_coded_memory_refuses_integer_samples():
    memory = EpisodicMemory(10, codec="SQ8")
    with pytest.raises(TypeError, match="encodes floating-point samples"):
        memory.add_batch(torch.zeros(2, DIM, dtype=torch.int64), torch.zeros(2), 0)


def test_a_retraining_sets_its_bar_on_the_new_data_not_on_decoded_rows():
    codec = SampleCodec("SQ4", DIM)
    codec.train(uniform_rows(500))
    decoded = codec.decode(codec.encode(uniform_rows(500, seed=1)))
    new = uniform_rows(500, 0.0, 2.0, seed=2)
    codec.train(np.concatenate([decoded, new]), reference=new)
    assert codec.trained_error == pytest.approx(codec.relative_error(new))
    # Data like the new batch do not retrain it again.
    assert not codec.needs_retraining(codec.relative_error(uniform_rows(500, 0.0, 2.0, seed=3)))


# --- Sub-vector widths, one encoding per batch, and the fallback codec ------------------------


@pytest.mark.parametrize(
    ("dim", "spec"),
    [(784, "PQ196x4"), (64, "PQ16x4"), (40, "PQ10x4"), (11025, "PQ2205x4"), (7, "PQ1x4")],
)
def test_a_sub_vector_width_resolves_to_the_largest_count_dividing_the_rows(dim, spec):
    assert resolve_spec("PQ/4x4", dim) == spec
    assert resolve_spec("SQ4", dim) == "SQ4"


def test_a_sub_vector_wider_than_the_rows_is_one_line():
    with pytest.raises(CodecError, match=r"sub-vectors of 9 values; rows have 3: give a width"):
        SampleCodec("PQ/9x4", 3)


def test_one_encoding_gives_the_codes_and_the_error():
    codec = SampleCodec("PQ/4x4", DIM)
    codec.train(uniform_rows(500))
    rows = uniform_rows(100, seed=1)
    codes, error = codec.encode_measured(rows)
    np.testing.assert_array_equal(codes, codec.encode(rows))
    assert error == codec.relative_error(rows)


def fallback_memory(budget: int = 20_000) -> EpisodicMemory:
    return EpisodicMemory(
        byte_budget=budget, codec="PQ/4x4", fallback_codec="SQ4", policy="task_balanced"
    )


def test_a_product_codec_that_needs_retraining_moves_to_its_fallback():
    memory = fallback_memory()
    first, y = samples(200)
    memory.add_batch(first, y, 0)
    assert memory.codec is not None and memory.codec.code_size == 8
    assert memory.capacity == (20_000 - memory.codec.codebook_bytes) // 8
    first_decoded = memory.stored().x
    memory.add_batch(samples(200, 0.0, 3.0, seed=1)[0], y, 1)
    assert memory.codec.spec == "SQ4" and memory.fallback_batch == 1 and memory.retrains == 0
    # The capacity is the fallback's, and the 400 samples fit it; the budget holds.
    codebook = memory.codec.codebook_bytes
    assert memory.capacity == (20_000 - codebook) // (DIM // 2) and len(memory) == 400
    assert memory.nbytes_by_kind() == {"samples": 400 * DIM // 2, "index": codebook}
    # The new batch is stored at SQ4's error on [0, 3]. The first keeps its slots and labels,
    # its decoded values re-encoded within half an SQ4 step of [0, 3].
    assert memory.reconstruction_errors[1] < 0.01
    stored = memory.stored()
    np.testing.assert_array_equal(stored.y[:200].numpy(), y.numpy())
    assert float((stored.x[:200] - first_decoded).abs().max()) <= 3 / 15 / 2 + 1e-6


def test_a_fallback_too_small_for_what_is_stored_leaves_the_codec_retraining():
    memory = fallback_memory()
    x, y = samples(1000)
    memory.add_batch(x, y, 0)
    memory.add_batch(samples(100, 0.0, 3.0, seed=1)[0], y[:100], 1)
    # SQ4 holds (20,000 - 593) // 32 = 606 samples: fewer than the 1,000 stored.
    assert memory.codec is not None and memory.codec.spec == "PQ/4x4"
    assert memory.fallback_batch is None and memory.retrains == 1
    # The fallback is offered once: a later need retrains again.
    memory.add_batch(samples(100, 5.0, 9.0, seed=2)[0], y[:100], 2)
    assert memory.codec.spec == "PQ/4x4" and memory.retrains == 2


def test_a_fallback_needs_a_codec():
    with pytest.raises(ValueError, match="fallback_codec 'SQ4' needs a codec to fall back"):
        EpisodicMemory(10, fallback_codec="SQ4")


def test_a_memory_saved_before_its_fallback_falls_back_the_same_after_loading(tmp_path):
    memory = fallback_memory()
    memory.add_batch(*samples(200), 0)
    memory.save(tmp_path / "before")
    loaded = EpisodicMemory.load(tmp_path / "before")
    for each in (memory, loaded):
        each.add_batch(samples(200, 0.0, 3.0, seed=1)[0], samples(200)[1], 1)
    assert loaded.fallback_batch == memory.fallback_batch == 1
    assert loaded.capacity == memory.capacity
    torch.testing.assert_close(loaded.stored().x, memory.stored().x)
    # After the move, save and load keep the fallback codec and its capacity.
    memory.save(tmp_path / "after")
    after = EpisodicMemory.load(tmp_path / "after")
    assert after.codec is not None and after.codec.spec == "SQ4" and after.fallback_batch == 1
    assert after.capacity == memory.capacity
    assert after.nbytes_by_kind() == memory.nbytes_by_kind()
    torch.testing.assert_close(after.sample(5).x, memory.sample(5).x)
    # A checkpoint pickles the memory: the move survives that too.
    pickled = pickle.loads(pickle.dumps(memory))
    assert pickled.codec is not None and pickled.codec.spec == "SQ4"
    assert pickled.codec_seconds == pytest.approx(memory.codec_seconds)
