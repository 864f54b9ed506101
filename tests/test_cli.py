"""The command line: one real subprocess run, and bad input handled in one line."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lifelong.cli import main

REPO = Path(__file__).resolve().parents[1]

EXTERNAL_STREAM = textwrap.dedent(
    """
    import torch
    from streams import Scenario, tensor_stream

    def two_blobs(spec):
        generator = torch.Generator().manual_seed(spec.seed)
        def task(t):
            x = torch.randn(40, 5, generator=generator) + 3.0 * t
            y = torch.arange(40) % 2 + 2 * t
            return x, y
        tasks = [task(t) for t in range(spec.n_tasks or 2)]
        return tensor_stream(
            "two-blobs", Scenario.CLASS_INCREMENTAL, tasks, tasks, n_classes=2 * len(tasks)
        )
    """
)


def _cli(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "run_stream.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def test_cli_runs_a_benchmark_and_writes_results(tmp_path):
    out = tmp_path / "out"
    done = _cli(
        "--stream",
        "split-digits",
        "--agents",
        "naive,replay",
        "--seeds",
        "0",
        "--n-tasks",
        "2",
        "--out",
        str(out),
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    assert "naive" in done.stdout and "replay" in done.stdout
    assert f"results written to {out}" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert [r["agent"] for r in results["runs"]] == ["naive", "replay"]
    assert "Traceback" not in done.stderr


def test_a_stream_from_a_file_outside_the_package(tmp_path):
    stream_file = tmp_path / "my_streams.py"
    stream_file.write_text(EXTERNAL_STREAM)
    out = tmp_path / "out"
    code = main(
        [
            "--stream",
            f"{stream_file}:two_blobs",
            "--agents",
            "naive",
            "--seeds",
            "0",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    assert json.loads((out / "results.json").read_text())["stream"] == "two-blobs"


def test_a_stream_from_an_installed_entry_point(tmp_path):
    # A real distribution on sys.path: importlib.metadata finds its entry point.
    (tmp_path / "blob_streams.py").write_text(EXTERNAL_STREAM)
    dist_info = tmp_path / "blob_streams-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: blob-streams\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[lifelong.streams]\nblobs = blob_streams:two_blobs\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    listed = _cli("--list", env=env)
    assert "blobs" in listed.stdout
    done = _cli(
        "--stream",
        "blobs",
        "--agents",
        "naive",
        "--seeds",
        "0",
        "--out",
        str(tmp_path / "out"),
        "--quiet",
        env=env,
    )
    assert done.returncode == 0, done.stderr


def test_list_names_streams_and_agents(capsys):
    assert main(["--list"]) == 0
    text = capsys.readouterr().out
    for name in ("split-digits", "rotated-mnist", "naive", "gem", "lamaml"):
        assert name in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--stream", "nope"], "unknown stream 'nope'; choose one of: .*split-digits"),
        (["--agents", "naive,nope"], "unknown agent 'nope'; choose from: .*replay"),
        (["--n-tasks", "0"], "--n-tasks must be at least 1, got 0"),
        (["--memory-size", "-1"], "--memory-size must be 0 or more"),
        (["--seeds", "x"], "--seeds must be non-negative integers"),
        (["--validation-fraction", "1"], "--validation-fraction must be 0 .* or between 0 and 1"),
        (["--agents", "naive,replay", "--memory-size", "0"], "'replay' stores samples but"),
        (["--agents", "gem", "--memory-size", "2"], "leaves no sample per task"),
        (
            ["--agents", "lifelong", "--agent-option", "lifelong.nope=1"],
            "agent 'lifelong' has no setting 'nope'; valid: .*retrieval",
        ),
        (
            ["--agents", "lifelong", "--agent-option", "lifelong.inner_steps=1.5"],
            "lifelong.inner_steps must be an integer, got 1.5",
        ),
        (
            ["--agents", "lifelong", "--agent-option", "lifelong.retrieval=maybe"],
            "lifelong.retrieval must be true or false, got 'maybe'",
        ),
        (
            ["--agents", "lifelong", "--agent-option", "lifelong.recur_accuracy=2"],
            r"recur_accuracy and route_quantile must lie in \(0, 1\]",
        ),
        (
            ["--agents", "naive", "--agent-option", "lifelong.meta=false"],
            "names agent 'lifelong', which this run does not compare",
        ),
        (["--agents", "naive", "--agent-option", "naive.lr=1"], "agent 'naive' has no settings"),
        (["--agent-option", "retrieval=false"], "must look like AGENT.KEY=VALUE"),
        (
            ["--agents", "lifelong", "--agent-option", "lifelong.routing=false"],
            "lifelong settings routing apply to task-switching streams only",
        ),
        (["--memory-size", "200", "--memory-bytes", "3000"], "two budgets for one memory"),
        (["--memory-bytes", "0"], "--memory-bytes must be a positive number of bytes, got 0"),
        (
            ["--agents", "replay", "--memory-bytes", "100"],
            r"'replay' keeps each sample in 256 bytes \(float32 input\); --memory-bytes 100 "
            "holds none; give at least 256",
        ),
        (
            ["--agents", "der", "--memory-bytes", "290"],
            r"'der' keeps each sample in 296 bytes \(float32 input and its logits\)",
        ),
        (
            ["--agents", "replay-coded", "--agent-option", "replay-coded.codec=PQ7x8",
             "--memory-bytes", "100000"],
            "FAISS refuses codec 'PQ7x8' for 64-dimensional samples",
        ),
        (
            ["--agents", "lifelong", "--agent-option", "lifelong.bytes_codec=nope",
             "--memory-bytes", "100000"],
            "FAISS refuses codec 'nope'",
        ),
        (
            ["--agents", "lifelong", "--agent-option", "lifelong.bytes_codec_fallback=nope",
             "--memory-bytes", "100000"],
            "FAISS refuses codec 'nope'",
        ),
        (
            ["--agents", "replay-coded", "--agent-option", "replay-coded.codec=PQ/99x4",
             "--memory-bytes", "100000"],
            "sub-vectors of 99 values; rows have 64",
        ),
        (
            ["--agents", "lifelong", "--memory-bytes", "2000"],
            "byte budget 2000 leaves no room for samples beside the .* bytes of 5 task records",
        ),
        (["--agents", "ewc", "--memory-bytes", "1000"], "'ewc' keeps .* over --memory-bytes 1000"),
        (["--agents", "cumulative", "--memory-bytes", "1000"], "'cumulative' keeps an unbounded"),
        (
            ["--stream", "rotated-mnist", "--data-root", "/no/such/folder"],
            "rotated-mnist.*/no/such/folder.*--data-root",
        ),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args, expected, capsys, tmp_path):
    code = main([*args, "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ")
    assert re.search(expected, err), err
    assert not (tmp_path / "out").exists()


def test_bad_input_exit_code_from_a_real_process(tmp_path):
    done = _cli("--stream", "nope", "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: unknown stream 'nope'")
    assert "Traceback" not in done.stderr


def test_flags_override_the_config_file(tmp_path, capsys):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        "agents: [naive]\nseeds: [0]\nstream:\n  name: split-digits\n"
        "  n_tasks: 2\ntrain:\n  memory_size: 10\n"
    )
    out = tmp_path / "out"
    code = main(["--config", str(config_file), "--memory-size", "20", "--out", str(out), "--quiet"])
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["memory_size"] == 20
    assert saved["agents"] == ["naive"]


def test_a_diverging_run_is_recorded_marked_and_warned_about(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--agents", "naive,replay", "--seeds", "0", "--n-tasks", "2", "--lr", "1e6",
                 "--memory-size", "20", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    for record in runs:
        diverged = record["diverged"]
        assert (diverged["agent"], diverged["seed"], diverged["task"]) == (record["agent"], 0, 0)
        assert diverged["step"] >= 0 and diverged["loss"] in ("nan", "inf", "-inf")
    assert "naive (diverged 1/1)" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and "diverged" in warnings[0] and "--lr" in warnings[0]


def test_a_healthy_run_records_no_divergence(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--agents", "naive", "--seeds", "0", "--n-tasks", "2", "--out", str(out),
                 "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
    (record,) = json.loads((out / "results.json").read_text())["runs"]
    assert record["diverged"] is None


def test_a_named_variant_runs_in_a_process_pool_with_its_own_settings(tmp_path):
    out = tmp_path / "out"
    code = main(["--agents", "der,der-a03", "--agent-variant", "der-a03=der",
                 "--agent-option", "der-a03.alpha=0.3", "--seeds", "0", "--n-tasks", "2",
                 "--memory-size", "20", "--executor", "process", "--workers", "2",
                 "--out", str(out), "--quiet"])
    assert code == 0
    runs = {r["agent"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert runs["der-a03"]["agent_settings"]["alpha"] == 0.3
    assert runs["der-a03"]["variant_of"] == "der"
    assert runs["der"]["agent_settings"]["alpha"] == 1.0 and "variant_of" not in runs["der"]
    assert runs["der"]["accuracy_matrix"] != runs["der-a03"]["accuracy_matrix"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--agents", "der,replay", "--agent-variant", "replay=der"],
         "variant name 'replay' is a registered agent's"),
        (["--agents", "der", "--agent-option", "der.alpah=0.3"],
         "agent 'der' has no setting 'alpah'; valid: alpha, beta"),
        (["--agents", "der", "--agent-option", "der.alpha=high"],
         "der.alpha must be a number, got 'high'"),
        (["--agents", "x", "--agent-variant", "x"], "--agent-variant must look like NAME=AGENT"),
        (["--agents", "x", "--agent-variant", "x=nope"], "unknown agent 'nope'"),
    ],
)
def test_bad_variants_and_agent_options_give_one_line(args, expected, capsys, tmp_path):
    code = main([*args, "--seeds", "0", "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert expected in err, err


EXTERNAL_AGENTS = textwrap.dedent(
    """
    from dataclasses import dataclass

    from avalanche.training.supervised import Naive

    from lifelong.agents import register_agent
    from lifelong.methods.common import common_arguments


    def plain(context):
        '''Fine-tuning, from a file outside the package.'''
        return Naive(**common_arguments(context))


    @dataclass(frozen=True)
    class ScaledSettings:
        lr_scale: float = 1.0


    @register_agent("scaled-naive-plugin", options=ScaledSettings)
    def scaled(context):
        '''Fine-tuning with a scaled learning rate.'''
        arguments = common_arguments(context)
        for group in arguments["optimizer"].param_groups:
            group["lr"] *= context.options.lr_scale
        return Naive(**arguments)
    """
)


def test_agents_from_a_file_outside_the_package(tmp_path):
    agent_file = tmp_path / "my_agents.py"
    agent_file.write_text(EXTERNAL_AGENTS)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"agents: ['{agent_file}:plain',\n"
        f"         {{name: '{agent_file}:scaled', as: slow-naive, lr_scale: 0.1}}]\n"
        "seeds: [0]\nstream: {n_tasks: 2}\n"
    )
    out = tmp_path / "out"
    assert main(["--config", str(config), "--out", str(out), "--quiet"]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["agent"] for r in runs] == [f"{agent_file}:plain", "slow-naive"]
    assert runs[0]["agent_settings"] is None
    assert runs[1]["agent_settings"] == {"lr_scale": 0.1}
    assert runs[0]["accuracy_matrix"] != runs[1]["accuracy_matrix"]


def test_an_agent_from_an_installed_entry_point(tmp_path):
    (tmp_path / "plug_agents.py").write_text(EXTERNAL_AGENTS)
    dist_info = tmp_path / "plug_agents-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: plug-agents\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[lifelong.agents]\nplain = plug_agents:plain\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = _cli("--agents", "plain", "--seeds", "0", "--n-tasks", "2",
                "--out", str(tmp_path / "out"), "--quiet", env=env)
    assert done.returncode == 0, done.stderr
    assert "plain" in done.stdout


def test_a_missing_agent_file_gives_one_line(tmp_path, capsys):
    code = main(["--agents", "nowhere.py:build", "--seeds", "0",
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "file 'nowhere.py' does not exist" in err


def test_loggers_write_the_matrix_offline_as_tensorboard_events_and_csv(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    assert main(["--agents", "replay", "--seeds", "0", "--n-tasks", "3", "--memory-size", "30",
                 "--logger", "tensorboard", "--logger", "csv", "--out", str(out), "--quiet"]) == 0
    (record,) = json.loads((out / "results.json").read_text())["runs"]
    matrix = record["accuracy_matrix"]
    folder = out / "logs" / "replay__seed0"
    events = EventAccumulator(str(folder))
    events.Reload()
    for j in range(3):
        scalars = events.Scalars(f"Top1_Acc_Exp/eval_phase/test_stream/Exp{j:03d}")
        assert [s.step for s in scalars] == [0, 1, 2, 3]
        assert [s.value for s in scalars] == pytest.approx([row[j] for row in matrix], abs=1e-6)
    lines = (folder / "eval_results.csv").read_text().splitlines()
    assert lines[0] == "eval_exp,training_exp,eval_accuracy,eval_loss,forgetting"
    assert len(lines) == 1 + 4 * 3
    last = [line.split(",") for line in lines[-3:]]
    assert [float(cells[2]) for cells in last] == pytest.approx(matrix[3], abs=1e-4)
    assert float(last[0][4]) == pytest.approx(matrix[1][0] - matrix[3][0], abs=1e-4)


def test_loggers_need_the_tensor_evaluator(tmp_path, capsys):
    code = main(["--agents", "naive", "--seeds", "0", "--logger", "csv", "--evaluator",
                 "avalanche", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    assert "--logger logs the tensor evaluator's matrix" in capsys.readouterr().err


def _program(main_body: str) -> subprocess.CompletedProcess:
    """Run ``run_stream.program`` in a child whose ``lifelong.cli.main`` is ``main_body``.

    The child's ``lifelong.cli`` is a stand-in module, so it starts without torch.
    """
    script = textwrap.dedent(
        """
        import atexit, gc, sys, threading, time, types
        import run_stream

        def main():
        {body}

        sys.modules["lifelong.cli"] = types.SimpleNamespace(main=main)
        atexit.register(print, "exit handler ran")
        run_stream.program()
        """
    ).format(body=textwrap.indent(textwrap.dedent(main_body), "    "))
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )


def test_program_runs_main_with_the_collector_on_and_exits_with_its_status():
    done = _program(
        """
        print("collector on:", gc.isenabled())
        return 3
        """
    )
    assert done.returncode == 3, done.stderr
    # Exit handlers still run, after main's output, and all of it reaches the pipe.
    assert done.stdout.splitlines() == ["collector on: True", "exit handler ran"]


def test_program_waits_for_a_thread_that_keeps_the_process_alive():
    done = _program(
        """
        def late():
            time.sleep(0.2)
            print("thread finished")

        threading.Thread(target=late).start()
        return 0
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["thread finished", "exit handler ran"]
