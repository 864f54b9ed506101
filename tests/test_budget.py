"""Memory counted in bytes: each agent's stored bytes by kind on hand-computed cases, the
``--memory-bytes`` budget (never exceeded, checked after every experience) and
``replay-coded``."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from lifelong import RunConfig, StreamConfig, TrainConfig, run
from lifelong.agents import MemoryBudgetError, StreamFacts
from lifelong.budget import KINDS, ByteBudgetCheck
from streams import Scenario

# split-digits cut to 2 tasks of 2 classes: 8x8 inputs (256 bytes at float32), 4 classes.
SAMPLE = 8 * 8 * 4
LOGITS = 4 * 4
# The MLP 64-100-100-4 every agent trains, in float32.
PARAMETERS = (64 * 100 + 100 + 100 * 100 + 100 + 100 * 4 + 4) * 4
# The default codec, a product quantiser over sub-vectors of 4 values (PQ16x4 for 64): a
# 4-bit code per sub-vector, and FAISS's serialised quantiser: 16 centroids of 4 float32
# values per sub-vector after its 86-byte header.
PQ_CODE, PQ_CODEBOOK = 16 * 4 // 8, 86 + 16 * 16 * 4 * 4
# Its fallback, SQ4: half a byte per value, and a minimum and a range per value (float32)
# after an 81-byte header.
SQ4_CODE, SQ4_CODEBOOK = 32, 81 + 2 * 64 * 4
BUDGET = 30 * SAMPLE

BYTES_RUN = RunConfig(
    stream=StreamConfig(name="split-digits", n_tasks=2),
    agents=("replay", "der", "gem", "replay-coded", "lifelong", "naive"),
    seeds=(0,),
    train=TrainConfig(epochs=1, memory_bytes=BUDGET),
)


@pytest.fixture(scope="module")
def bytes_runs(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("bytes")
    results = run(replace(BYTES_RUN, out=str(out)), progress=False)
    return {record["agent"]: record for record in results["runs"]}


def test_every_run_records_its_bytes_by_kind(bytes_runs):
    for record in bytes_runs.values():
        assert set(record["memory_bytes_by_kind"]) == set(KINDS)
        assert record["memory_bytes"] == sum(record["memory_bytes_by_kind"].values())
        assert len(record["memory_bytes_by_experience"]) == 2


def test_no_agent_ever_exceeds_the_budget(bytes_runs):
    for agent, record in bytes_runs.items():
        assert max(record["memory_bytes_by_experience"]) <= BUDGET, agent


def test_float_baselines_store_as_many_samples_as_fit(bytes_runs):
    assert bytes_runs["replay"]["stored_samples"] == BUDGET // SAMPLE
    assert bytes_runs["replay"]["memory_bytes_by_kind"]["samples"] == 30 * SAMPLE
    # DER keeps each sample's logits beside it: 28 samples of 256 + 16 bytes fit.
    der = bytes_runs["der"]
    assert der["stored_samples"] == BUDGET // (SAMPLE + LOGITS) == 28
    assert der["memory_bytes_by_kind"] == {
        "samples": 28 * SAMPLE, "sample_extras": 28 * LOGITS, "records": 0, "index": 0
    }
    # GEM: the samples that fit, split evenly over the two tasks.
    assert bytes_runs["gem"]["memory_bytes_by_kind"]["samples"] == 2 * 15 * SAMPLE
    assert bytes_runs["naive"]["memory_bytes"] == 0


def test_coded_agents_fit_more_samples_in_the_same_bytes(bytes_runs):
    coded = bytes_runs["replay-coded"]
    assert coded["codec"]["spec"] == "PQ/4x4" and coded["codec"]["fallback_batch"] is None
    capacity = (BUDGET - PQ_CODEBOOK) // PQ_CODE
    assert coded["codec"]["capacity"] == capacity
    assert coded["memory_bytes_by_kind"]["index"] == PQ_CODEBOOK
    assert coded["memory_bytes_by_kind"]["samples"] == coded["stored_samples"] * PQ_CODE
    assert coded["stored_samples"] > 5 * bytes_runs["replay"]["stored_samples"]
    lifelong = bytes_runs["lifelong"]
    kinds = lifelong["memory_bytes_by_kind"]
    # The second task's digits needed a new codebook, so the memory moved to SQ4, whose
    # smaller codebook also leaves more room at this small budget. Room is left for the
    # task records and their index and the learned learning rates.
    assert lifelong["codec"]["spec"] == "SQ4" and lifelong["codec"]["fallback_batch"] == 1
    assert kinds["records"] > 0 and kinds["index"] > SQ4_CODEBOOK
    assert lifelong["codec"]["capacity"] < (BUDGET - SQ4_CODEBOOK) // (SQ4_CODE + LOGITS)
    assert kinds["sample_extras"] == lifelong["stored_samples"] * LOGITS


def test_parameter_keeping_agents_count_their_records(tmp_path):
    config = replace(
        BYTES_RUN, agents=("ewc", "lwf", "si"), train=TrainConfig(memory_size=20),
        out=str(tmp_path),
    )
    records = {r["agent"]: r["memory_bytes_by_kind"] for r in run(config, progress=False)["runs"]}
    # EWC: an importance and an anchor per parameter, for each of the two tasks.
    assert records["ewc"]["records"] == 2 * 2 * PARAMETERS
    # LwF: a copy of the previous model; SI: importance, anchor, path integral, task start.
    assert records["lwf"]["records"] == PARAMETERS
    assert records["si"]["records"] == 4 * PARAMETERS


def test_the_check_refuses_an_agent_over_the_budget():
    facts = StreamFacts(Scenario.CLASS_INCREMENTAL, 2, 10, (1, 8, 8))
    check = ByteBudgetCheck("greedy", facts, budget=100)
    greedy = SimpleNamespace(memory_bytes_by_kind=lambda: {"samples": 80, "records": 30})
    with pytest.raises(MemoryBudgetError, match=r"'greedy' keeps 110 bytes after experience 0 "
                       r"\(samples 80, records 30\), over --memory-bytes 100"):
        check.after_training_exp(greedy)


def test_a_budget_too_small_for_the_codebook_stops_the_run_in_one_line(tmp_path):
    config = replace(
        BYTES_RUN, agents=("replay-coded",), train=TrainConfig(memory_bytes=PQ_CODE + 10),
        out=str(tmp_path),
    )
    with pytest.raises(MemoryBudgetError, match="holds no sample: each costs 8 bytes and the "
                       f"codec {PQ_CODEBOOK}"):
        run(config, progress=False)
