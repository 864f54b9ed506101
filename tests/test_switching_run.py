"""A task-switching run end to end through ``lifelong.run``, on the real Omniglot subset."""

import json
from dataclasses import replace

import pytest

from lifelong import ConfigError, RunConfig, StreamConfig, TrainConfig, load_agent, run
from lifelong.agents import UnsupportedScenarioError, available_agents
from lifelong.checkpoint import JobFiles
from lifelong.run import resume
from lifelong.switching_run import SWITCHING_SUMMARY_KEYS
from streams import Scenario

# Every registered agent that runs on task-switching streams passes the same checks.
AGENTS = tuple(
    sorted(a for a, e in available_agents().items() if Scenario.TASK_SWITCHING in e.scenarios)
)
RUN_KEYS = {"oca", "oca_by_type", "oca_first_visit", "oca_revisit", "recovery_curve"}
STEPS = 20
"""Steps of the test stream: seeds 0 and 1 both meet every kind of distribution, switch and
revisit within them (p 0.8: seed 1 comes back twice); each step costs every agent of both
seeds (MER about 0.3 s)."""
PREFIX_STEPS = 10
"""Steps the same-seed check runs again: four switches on seed 0, at a third of the cost."""


@pytest.fixture(scope="module")
def config(shared_data, tmp_path_factory) -> RunConfig:
    return RunConfig(
        stream=StreamConfig(
            name="omniglot-switching",
            n_tasks=STEPS,
            data_root=str(shared_data / "omniglot"),
            options={"labels": "fixed", "p": 0.8},
        ),
        agents=AGENTS,
        seeds=(0, 1),
        train=TrainConfig(pretrain_episodes=20),
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )


@pytest.fixture(scope="module")
def results(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("switching")
    return run(replace(config, out=str(out)), progress=False), out


def test_records_hold_the_fixed_online_keys_and_the_ground_truth(results):
    found, _ = results
    assert found["scenario"] == "task-switching" and found["n_steps"] == STEPS
    assert [(r["agent"], r["seed"]) for r in found["runs"]] == [
        (agent, seed) for seed in (0, 1) for agent in AGENTS
    ]
    for record in found["runs"]:
        assert set(record) >= RUN_KEYS
        assert set(record["oca_by_type"]) == {"pretrain", "new", "ood"}
        assert len(record["step_accuracy"]) == STEPS
        assert sum(record["step_accuracy"]) / STEPS == pytest.approx(record["oca"])
        assert len(record["ground_truth"]["switch"]) == STEPS
        assert all(0 <= a <= 1 for a in record["step_accuracy"])


def test_the_summary_has_oca_mean_and_std_per_agent(results):
    found, _ = results
    assert tuple(row["agent"] for row in found["summary"]) == AGENTS
    for row in found["summary"]:
        assert tuple(row) == SWITCHING_SUMMARY_KEYS
        assert row["n_seeds"] == 2 and 0 <= row["oca_mean"] <= 1


def test_every_output_file_is_written(results):
    found, out = results
    for name in (
        "results.json",
        "config.json",
        "summary.csv",
        "summary.md",
        "recovery_curves.png",
        "prequential_accuracy.png",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "results.json").read_text())["summary"] == found["summary"]


def test_the_same_seed_gives_the_same_online_accuracies(config, results, tmp_path):
    # A shorter stream of the same seed is a prefix of the longer one (test-then-train: a
    # step's accuracy depends on the steps before it only), and costs less than half the time.
    shorter = replace(config.stream, n_tasks=PREFIX_STEPS)
    again = run(replace(config, stream=shorter, seeds=(0,), out=str(tmp_path)), progress=False)
    first = [r["step_accuracy"][:PREFIX_STEPS] for r in results[0]["runs"] if r["seed"] == 0]
    assert [r["step_accuracy"] for r in again["runs"]] == first


def test_a_stopped_run_resumes_its_unfinished_jobs_only_with_equal_records(results):
    found, out = results
    # As if the run was killed during its last job: that job's record and the run's outputs
    # are missing. The first job's record is marked to show it is read back, not rerun.
    last, first = found["runs"][-1], found["runs"][0]
    JobFiles.of(out, last["agent"], last["seed"]).result.unlink()
    (out / "results.json").unlink()
    marked = JobFiles.of(out, first["agent"], first["seed"]).result
    record = json.loads(marked.read_text())
    marked.write_text(json.dumps({**record, "wall_time_s": 12345.0}))
    resumed = resume(out, progress=False)
    assert resumed["runs"][0]["wall_time_s"] == 12345.0
    for before, after in zip(found["runs"], resumed["runs"], strict=True):
        assert {**before, "wall_time_s": 0} == {**after, "wall_time_s": 0}
    assert json.loads((out / "results.json").read_text())["runs"] == resumed["runs"]
    marked.write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (
            {"agents": ("ewc",)},
            UnsupportedScenarioError,
            "cannot run on stream 'omniglot-switching'",
        ),
        ({"agents": ("protonet",), "executor": "process"}, ConfigError, "--executor local"),
        ({"agents": ("protonet",), "device": "cuda"}, ConfigError, "cuda"),
    ],
)
def test_settings_a_task_switching_run_cannot_honour_are_refused(
    config, tmp_path, changes, error, message
):
    with pytest.raises(error, match=message):
        run(replace(config, out=str(tmp_path), **changes), progress=False)


def test_a_validation_split_is_refused(config, tmp_path):
    stream = replace(config.stream, validation_fraction=0.2)
    with pytest.raises(ConfigError, match="--validation-fraction applies to task-sequence"):
        run(replace(config, stream=stream, agents=("protonet",), out=str(tmp_path)), progress=False)


def test_agent_options_reach_the_agent_and_are_saved_with_its_record(config, tmp_path):
    options = {"lifelong": {"retrieval": False, "inner_steps": 2}}
    found = run(
        replace(config, agents=("lifelong",), seeds=(0,), agent_options=options, out=str(tmp_path)),
        progress=False,
    )
    (record,) = found["runs"]
    assert record["agent_settings"]["retrieval"] is False
    assert record["agent_settings"]["inner_steps"] == 2
    # Without retrieval the task memory is never searched: nothing is recognised or routed.
    assert record["decisions"]["recognised"] == 0 and record["decisions"]["routed"] == 0
    assert record["retrieval"]["events"] == 0 and record["retrieval"]["precision_at_1"] is None
    assert set(record["memory_bytes_by_kind"]) == {"samples", "sample_extras", "records", "index"}
    assert record["memory_bytes"] == sum(record["memory_bytes_by_kind"].values()) > 0
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["agent_options"] == options


def test_every_trained_agent_is_saved_with_its_run_and_loads_back(results):
    found, out = results
    for record in found["runs"]:
        if available_agents()[record["agent"]].online_strategy:
            # Avalanche strategies run online have no saved form; nothing is claimed.
            assert "saved_agent" not in record
            continue
        agent = load_agent(out / record["saved_agent"])
        assert (agent.name, agent.seed) == (record["agent"], record["seed"])


class _KilledError(Exception):
    """Stands for the process being killed in the middle of a job."""


@pytest.mark.parametrize("agent", ["lifelong", "cmaml"])
def test_a_job_killed_midway_resumes_from_its_checkpoint_with_an_equal_record(
    config, results, tmp_path, monkeypatch, agent
):
    import lifelong.switching_run as switching_run

    real = switching_run.make_agent

    def dies_after_15_steps(entry, context):
        learner = real(entry, context)
        observe, calls = learner.observe, []

        def observe_then_die(x, y, new_segment):
            if len(calls) == 15:
                raise _KilledError
            calls.append(1)
            observe(x, y, new_segment)

        learner.observe = observe_then_die
        return learner

    monkeypatch.setattr(switching_run, "make_agent", dies_after_15_steps)
    killed = replace(config, agents=(agent,), seeds=(0,), out=str(tmp_path), checkpoint_every_s=0)
    with pytest.raises(_KilledError):
        run(killed, progress=False)
    checkpoint = JobFiles.of(tmp_path, agent, 0).checkpoint
    assert json.loads((checkpoint / "progress.json").read_text())["steps_done"] == 15
    monkeypatch.setattr(switching_run, "make_agent", real)
    (resumed,) = resume(tmp_path, progress=False)["runs"]
    (uninterrupted,) = [r for r in results[0]["runs"] if (r["agent"], r["seed"]) == (agent, 0)]
    for key in ("step_accuracy", "distribution_matrix", "decisions", "retrieval", "oca"):
        assert resumed.get(key) == uninterrupted.get(key), key
    assert not checkpoint.exists()


def test_a_fresh_run_clears_a_checkpoint_folder_left_in_its_folder(config, tmp_path):
    stale = JobFiles.of(tmp_path, "protonet", 0).checkpoint
    (stale / "agent").mkdir(parents=True)
    (stale / "progress.json").write_text("{}")
    one_job = replace(config, agents=("protonet",), seeds=(0,), out=str(tmp_path))
    found = run(one_job, progress=False)
    assert len(found["runs"]) == 1 and not stale.exists()
