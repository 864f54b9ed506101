"""End-to-end runs through the importable ``lifelong.run`` on real (offline) data."""

import importlib
import importlib.util
import json
import math
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lifelong import ConfigError, RunConfig, StreamConfig, TrainConfig, run
from lifelong.agents import UnknownAgentError, UnsupportedScenarioError
from lifelong.run import _start_method, build_stream, resolve_agents
from streams import StreamError

TINY = RunConfig(
    stream=StreamConfig(name="split-digits", n_tasks=3),
    agents=("naive", "replay"),
    seeds=(0,),
    train=TrainConfig(epochs=1, memory_size=60),
)


def _measured(run_record: dict) -> dict:
    """The parts of a run that must not depend on timing or the machine's load."""
    return {
        key: value for key, value in run_record.items() if "time" not in key and "ram" not in key
    }


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("tiny")
    return run(replace(TINY, out=str(out)), progress=False), out


def test_results_have_the_documented_shape(tiny_results):
    results, _ = tiny_results
    assert results["stream"] == "split-digits"
    assert results["scenario"] == "class-incremental"
    assert [(r["agent"], r["seed"]) for r in results["runs"]] == [("naive", 0), ("replay", 0)]
    for record in results["runs"]:
        matrix = record["accuracy_matrix"]
        assert len(matrix) == 4 and all(len(row) == 3 for row in matrix)
        assert record["task_identities"] == [0, 1, 2]
        for key in ("acc", "bwt", "fwt", "forgetting", "wall_time_s"):
            assert math.isfinite(record[key]), key
    assert [row["agent"] for row in results["summary"]] == ["naive", "replay"]


def test_a_validation_run_never_reads_the_test_split(tiny_results, tmp_path):
    results, _ = tiny_results
    held_out = replace(
        TINY, stream=replace(TINY.stream, validation_fraction=0.2), out=str(tmp_path / "v")
    )
    validation = run(held_out, progress=False)
    assert results["evaluated_on"] == "test"
    assert validation["evaluated_on"] == "validation"
    assert validation["config"]["stream"]["validation_fraction"] == 0.2
    test_acc = [r["acc"] for r in results["runs"]]
    assert [r["acc"] for r in validation["runs"]] != test_acc


def test_our_metrics_equal_avalanches_on_a_real_run(tiny_results, tmp_path):
    through_avalanche = replace(TINY, evaluator="avalanche", out=str(tmp_path / "a"))
    results = run(through_avalanche, progress=False)
    for record, tensor_record in zip(results["runs"], tiny_results[0]["runs"], strict=True):
        assert record["accuracy_matrix"] == tensor_record["accuracy_matrix"]
        assert record["bwt"] == pytest.approx(record["avalanche_bwt"], abs=1e-6)
        assert record["fwt"] == pytest.approx(record["avalanche_forward_transfer"], abs=1e-6)
        assert -record["bwt"] == pytest.approx(record["avalanche_stream_forgetting"], abs=1e-6)


def test_replay_forgets_less_than_naive(tiny_results):
    results, _ = tiny_results
    by_agent = {r["agent"]: r for r in results["runs"]}
    assert by_agent["replay"]["acc"] > by_agent["naive"]["acc"]


def test_every_output_file_is_written(tiny_results):
    results, out = tiny_results
    assert results["config"]["out"] == str(out)
    for name in (
        "results.json",
        "config.json",
        "summary.md",
        "forgetting_curves.png",
        "accuracy_matrix.png",
        "accuracy_matrix__naive__seed0.csv",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["runs"] == results["runs"]
    assert saved["config"]["train"]["memory_size"] == 60


def test_the_same_seed_gives_the_same_results(tiny_results, tmp_path):
    results, _ = tiny_results
    again = run(replace(TINY, out=str(tmp_path)), progress=False)
    assert [_measured(r) for r in again["runs"]] == [_measured(r) for r in results["runs"]]


def test_a_process_pool_gives_the_same_results_as_one_process(tiny_results, tmp_path):
    results, _ = tiny_results
    pooled = run(
        replace(TINY, out=str(tmp_path), executor="process", workers=2),
        progress=False,
    )
    assert [_measured(r) for r in pooled["runs"]] == [_measured(r) for r in results["runs"]]


def test_pool_workers_fork_only_for_single_threaded_cpu_runs(monkeypatch):
    cpu = replace(TINY, device="cpu")
    assert _start_method(cpu) == "fork"
    assert _start_method(replace(cpu, threads=2)) == "spawn"
    # The module, not the `run` function the package exports under the same name.
    run_module = importlib.import_module("lifelong.run")
    monkeypatch.setattr(run_module, "get_all_start_methods", lambda: ["spawn"])
    assert _start_method(cpu) == "spawn"


def test_cuda_runs_default_to_one_worker_and_cpu_runs_to_one_per_core(monkeypatch):
    run_module = importlib.import_module("lifelong.run")
    assert run_module._default_workers(replace(TINY, device="cpu")) == (os.cpu_count() or 1)
    monkeypatch.setattr(run_module, "resolve_device", lambda name: torch.device("cuda"))
    assert run_module._default_workers(TINY) == 1


@pytest.mark.slow
def test_ray_gives_the_same_results_as_one_process(tiny_results, tmp_path):
    pytest.importorskip("ray", reason="install the ray extra to test the ray executor")
    results, _ = tiny_results
    on_ray = run(replace(TINY, out=str(tmp_path), executor="ray"), progress=False)
    assert [_measured(r) for r in on_ray["runs"]] == [_measured(r) for r in results["runs"]]


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is not None,
    reason="ray is installed here, so its absence cannot be tested",
)
def test_ray_executor_without_ray_says_how_to_install(tmp_path):
    with pytest.raises(ConfigError, match=r"lifelong\[ray\]"):
        run(replace(TINY, out=str(tmp_path), executor="ray"), progress=False)


def test_unknown_agent_lists_the_valid_names(tmp_path):
    with pytest.raises(UnknownAgentError, match="choose from: .*naive"):
        run(replace(TINY, out=str(tmp_path), agents=("nope",)), progress=False)


def test_all_expands_to_agents_supporting_the_scenario():
    stream = build_stream(StreamConfig(name="split-digits", n_tasks=3), seed=0)
    names = resolve_agents(("all",), stream)
    assert {"naive", "replay", "gem", "der"} <= set(names)
    task_incremental = build_stream(
        StreamConfig(name="split-digits", n_tasks=3, options={"scenario": "task-incremental"}),
        seed=0,
    )
    assert "der" not in resolve_agents(("all",), task_incremental)
    with pytest.raises(UnsupportedScenarioError, match="agent 'der' cannot run"):
        resolve_agents(("naive", "der"), task_incremental)


def test_failed_run_leaves_earlier_results_intact(tiny_results, tmp_path):
    _, out = tiny_results
    before = (out / "results.json").read_bytes()
    with pytest.raises(StreamError, match="--data-root"):
        run(
            replace(
                TINY,
                out=str(out),
                stream=StreamConfig(name="rotated-mnist", data_root=str(tmp_path / "nothing")),
            ),
            progress=False,
        )
    assert (out / "results.json").read_bytes() == before
