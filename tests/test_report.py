"""Summaries, tables, output files and atomic writes."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from lifelong import io as lio
from lifelong.io import atomic_path, atomic_write_bytes, atomic_write_text
from lifelong.records import ResultsFile
from lifelong.report import (
    REQUIRED_RESULT_KEYS,
    REQUIRED_RUN_KEYS,
    SUMMARY_KEYS,
    format_summary_table,
    summarize_runs,
    summary_markdown,
    validate_results,
    write_outputs,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Three tasks. Run metrics are given explicitly (not derived from the matrices) so the
# aggregation can be checked by hand.
MATRIX_A = [
    [0.1, 0.1, 0.1],
    [0.9, 0.2, 0.1],
    [0.5, 0.8, 0.3],
    [0.4, 0.6, 0.9],
]
MATRIX_B = [
    [0.2, 0.1, 0.0],
    [0.7, 0.1, 0.2],
    [0.6, 0.9, 0.1],
    [0.6, 0.7, 0.8],
]


def make_run(agent, seed, acc, bwt, fwt, forgetting, wall, matrix=MATRIX_A, **extra):
    return {
        "agent": agent,
        "seed": seed,
        "accuracy_matrix": [list(row) for row in matrix],
        "acc": acc,
        "bwt": bwt,
        "fwt": fwt,
        "forgetting": forgetting,
        "wall_time_s": wall,
        **extra,
    }


def make_runs():
    # "replay/200" appears first, so it leads the summary; its three seeds interleave with
    # the single "naive" run.
    return [
        make_run("replay/200", 0, 0.5, -0.1, 0.0, 0.2, 1.0, avalanche_peak_ram_mb=100.0),
        make_run("naive", 0, 0.3, -0.5, 0.1, 0.5, 0.5, MATRIX_B),
        make_run("replay/200", 1, 0.6, -0.2, 0.0, 0.3, 2.0, MATRIX_B),
        make_run("replay/200", 2, 0.7, -0.3, 0.3, 0.4, 3.0, avalanche_peak_ram_mb=200.0),
    ]


def make_results(runs=None):
    runs = make_runs() if runs is None else runs
    return {
        "stream": "digits",
        "scenario": "class_incremental",
        "config": {"lr": 0.1, "hidden": [100, 100], "seeds": [0, 1, 2]},
        "runs": runs,
        "summary": [row.to_dict() for row in summarize_runs(runs)],
    }


# --- summarize_runs ---------------------------------------------------------------------------


def test_summary_values_match_hand_computed_means_and_stds():
    replay, naive = (row.to_dict() for row in summarize_runs(make_runs()))
    assert list(replay)[: len(SUMMARY_KEYS)] == list(SUMMARY_KEYS)
    # acc 0.5, 0.6, 0.7: mean 0.6; sample std sqrt((0.01 + 0 + 0.01) / 2) = 0.1
    # bwt -0.1, -0.2, -0.3: mean -0.2, std 0.1
    # fwt 0, 0, 0.3: mean 0.1; std sqrt((0.01 + 0.01 + 0.04) / 2) = sqrt(0.03)
    # forgetting 0.2, 0.3, 0.4: mean 0.3, std 0.1; wall time 1, 2, 3: mean 2
    # peak RAM in 2 of the 3 runs: (100 + 200) / 2 = 150
    assert replay == pytest.approx(
        {
            "agent": "replay/200",
            "n_seeds": 3,
            "acc_mean": 0.6,
            "acc_std": 0.1,
            "bwt_mean": -0.2,
            "bwt_std": 0.1,
            "fwt_mean": 0.1,
            "fwt_std": math.sqrt(0.03),
            "forgetting_mean": 0.3,
            "forgetting_std": 0.1,
            "wall_time_s_mean": 2.0,
            "avalanche_peak_ram_mb_mean": 150.0,
        },
        abs=1e-12,
    )
    # One seed: std is 0.0 by convention; no avalanche keys in its runs, none in its row.
    assert naive == pytest.approx(
        {
            "agent": "naive",
            "n_seeds": 1,
            "acc_mean": 0.3,
            "acc_std": 0.0,
            "bwt_mean": -0.5,
            "bwt_std": 0.0,
            "fwt_mean": 0.1,
            "fwt_std": 0.0,
            "forgetting_mean": 0.5,
            "forgetting_std": 0.0,
            "wall_time_s_mean": 0.5,
        },
        abs=1e-12,
    )


def test_summary_std_is_numpys_sample_std():
    rng = np.random.default_rng(0)
    accs = rng.uniform(size=5)
    runs = [make_run("a", s, float(v), 0.0, 0.0, 0.0, 1.0) for s, v in enumerate(accs)]
    (row,) = summarize_runs(runs)
    assert row.acc_mean == pytest.approx(accs.mean())
    assert row.acc_std == pytest.approx(accs.std(ddof=1))


@pytest.mark.parametrize("key", [k for k in REQUIRED_RUN_KEYS if k != "accuracy_matrix"])
def test_summarize_runs_names_a_missing_run_key(key):
    runs = make_runs()
    del runs[2][key]
    with pytest.raises(ValueError, match=rf"runs\[2\] is missing the key '{key}'"):
        summarize_runs(runs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"acc": float("nan")}, r"runs\[1\].*\['acc'\] is nan; it must be a finite number"),
        ({"bwt": "0.1"}, r"\['bwt'\] is '0.1'"),
        ({"avalanche_bwt": None}, r"\['avalanche_bwt'\] is None"),
        ({"seed": 1.5}, r"\['seed'\] is 1.5; it must be an int"),
        ({"agent": ""}, r"\['agent'\] is ''"),
        ({"wall_time_s": -1.0}, r"wall_time_s'\] is -1.0; it must be >= 0"),
        ({"agent": "replay/200"}, r"repeats an \(agent, seed\) pair"),
    ],
)
def test_summarize_runs_rejects_bad_values(change, message):
    runs = make_runs()
    runs[1].update(change)
    with pytest.raises(ValueError, match=message):
        summarize_runs(runs)


def test_summarize_runs_rejects_no_runs():
    with pytest.raises(ValueError, match="non-empty list"):
        summarize_runs([])


# --- tables -----------------------------------------------------------------------------------


def test_terminal_table_is_aligned_and_in_percent():
    table = format_summary_table(summarize_runs(make_runs()))
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, two agents
    assert len({len(line) for line in lines}) == 1  # every column right-aligned to one width
    assert "ACC (%)" in lines[0]
    assert lines[1].replace(" ", "").strip("-") == ""
    replay, naive = lines[2], lines[3]
    assert replay.startswith("replay/200")
    assert "60.0 ± 10.0" in replay
    assert "-20.0 ± 10.0" in replay
    # Time, then stored bytes, which these runs do not record.
    assert replay.split()[-2:] == ["2.0", "-"]
    # A single seed has no spread to show.
    assert "±" not in naive
    assert "30.0" in naive


def test_stored_bytes_are_averaged_and_shown_in_kilobytes():
    runs = make_runs()
    for run, stored in zip(runs, [627_200, 600_000, 0, 0, 0, 0], strict=False):
        run["memory_bytes"] = stored
    summary = summarize_runs(runs)
    mean = summary[0].extras["memory_bytes_mean"]
    assert mean == pytest.approx(
        sum(r["memory_bytes"] for r in runs if r["agent"] == summary[0].agent) / summary[0].n_seeds
    )
    assert format_summary_table(summary).splitlines()[2].split()[-1] == f"{mean / 1000:.1f}"


def test_summary_markdown_has_context_table_and_note():
    md = summary_markdown(make_results())
    assert md.startswith("# digits (class_incremental)")
    assert "seeds 0, 1, 2" in md
    assert "3 tasks" in md
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 4  # header, alignment, two agents
    assert {line.count("|") for line in table} == {9}
    assert "| replay/200 | 3 | 60.0 ± 10.0 |" in md
    assert "BWT" in md and "Chaudhry" in md
    assert md.endswith("\n")


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", REQUIRED_RESULT_KEYS)
def test_missing_result_key_is_named(key, tmp_path):
    results = make_results()
    del results[key]
    with pytest.raises(ValueError, match=f"missing the key '{key}'"):
        write_outputs(results, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_invalid_accuracy_matrix_is_named_with_its_run():
    results = make_results()
    results["runs"][3]["accuracy_matrix"][1][2] = 1.2
    with pytest.raises(ValueError, match=r"runs\[3\] \(agent 'replay/200', seed 2\).*R\[1\]\[2\]"):
        validate_results(results)


def test_runs_with_different_task_counts_are_rejected():
    results = make_results()
    results["runs"][1]["accuracy_matrix"] = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]
    with pytest.raises(ValueError, match="same number of tasks"):
        validate_results(results)


def test_agents_whose_file_names_collide_are_rejected():
    runs = [
        make_run("replay/200", 0, 0.5, 0.0, 0.0, 0.0, 1.0),
        make_run("replay 200", 0, 0.5, 0.0, 0.0, 0.0, 1.0),
    ]
    with pytest.raises(ValueError, match="same file name"):
        validate_results(make_results(runs))


def test_summary_rows_are_checked():
    results = make_results()
    del results["summary"][0]["fwt_std"]
    with pytest.raises(ValueError, match=r"summary\[0\] is missing the key 'fwt_std'"):
        validate_results(results)


def test_values_json_cannot_hold_fail_before_anything_is_written(tmp_path):
    results = make_results()
    results["config"]["lr"] = float("nan")
    with pytest.raises(ValueError, match=r"results\['config'\]\['lr'\] cannot be written as JSON"):
        write_outputs(results, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    results["config"]["lr"] = object()
    with pytest.raises(
        ValueError, match=r"results\['config'\]\['lr'\].*object .* is not JSON serialisable"
    ):
        write_outputs(results, tmp_path / "out")


# --- write_outputs ----------------------------------------------------------------------------

EXPECTED_FILES = {
    "results.json",
    "config.json",
    "accuracy_matrix__replay_200__seed0.csv",
    "accuracy_matrix__replay_200__seed1.csv",
    "accuracy_matrix__replay_200__seed2.csv",
    "accuracy_matrix__naive__seed0.csv",
    "summary.md",
    "summary.csv",
    "forgetting_curves.png",
    "accuracy_matrix.png",
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "nested" / "run"
    results = make_results()
    return results, out, write_outputs(results, out)


def test_every_file_is_written_and_nothing_else(written):
    _, out, paths = written
    assert set(paths) == EXPECTED_FILES
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES  # no temp files left over
    for name, path in paths.items():
        assert path == out / name
        assert path.stat().st_size > 0


def test_json_round_trips(written):
    results, out, _ = written
    loaded = json.loads((out / "results.json").read_text())
    # Every declared field of a run is written; the ones these runs leave out as their default.
    assert loaded == ResultsFile.from_dict(results).to_dict()
    assert ResultsFile.from_dict(loaded) == ResultsFile.from_dict(results)
    for given, written_run in zip(results["runs"], loaded["runs"], strict=True):
        assert written_run == {**written_run, **given}
        assert written_run["task_identities"] is None and written_run["memory_bytes_by_kind"] == {}
    assert json.loads((out / "config.json").read_text()) == results["config"]
    assert (out / "results.json").read_text().startswith('{\n  "stream": "digits"')


def test_accuracy_matrix_csv_has_a_header_and_one_row_per_step(written):
    _, out, _ = written
    with open(out / "accuracy_matrix__naive__seed0.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["after_task", "task_1", "task_2", "task_3"]
    assert len(rows) == 1 + 4  # header + T + 1
    assert [row[0] for row in rows[1:]] == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(np.array(rows[1:], dtype=float)[:, 1:], MATRIX_B)


def test_summary_csv_holds_the_summary_at_full_precision(written):
    results, out, _ = written
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["agent"] for row in rows] == ["replay/200", "naive"]
    assert float(rows[0]["fwt_std"]) == results["summary"][0]["fwt_std"]
    assert rows[1]["avalanche_peak_ram_mb_mean"] == ""  # naive has none


def test_summary_md_is_the_markdown_summary(written):
    results, out, _ = written
    assert (out / "summary.md").read_text() == summary_markdown(results)


@pytest.mark.parametrize("name", ["forgetting_curves.png", "accuracy_matrix.png"])
def test_plots_are_non_trivial_pngs(written, name):
    _, out, _ = written
    data = (out / name).read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 20_000
    pixels = imread(out / name)
    height, width = pixels.shape[:2]
    assert width > 600 and height > 300
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


def test_numpy_values_are_written_as_plain_json(tmp_path):
    runs = make_runs()
    runs[0]["accuracy_matrix"] = np.array(MATRIX_A)
    runs[0]["acc"] = np.float64(0.5)
    runs[0]["seed"] = np.int64(0)
    results = make_results(runs)
    results["config"]["data_root"] = tmp_path
    write_outputs(results, tmp_path)
    loaded = json.loads((tmp_path / "results.json").read_text())
    assert loaded["runs"][0]["accuracy_matrix"] == MATRIX_A
    assert loaded["runs"][0]["acc"] == 0.5
    assert loaded["config"]["data_root"] == str(tmp_path)


def test_a_failed_plot_leaves_the_earlier_file_intact(tmp_path, monkeypatch):
    results = make_results()
    write_outputs(results, tmp_path)
    before = (tmp_path / "accuracy_matrix.png").read_bytes()

    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(results, tmp_path)
    assert (tmp_path / "forgetting_curves.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "accuracy_matrix.png").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --- atomic writes ----------------------------------------------------------------------------


def test_atomic_writes_create_and_replace(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "first\n")
    atomic_write_text(path, "second\n")
    assert path.read_text() == "second\n"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    atomic_write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failure_inside_atomic_path_keeps_the_old_file(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.exists()
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("old")

    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(lio.os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_atomic_write_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="data must be bytes, got str"):
        atomic_write_bytes(tmp_path / "a", "text")
    with pytest.raises(TypeError, match="text must be str, got bytes"):
        atomic_write_text(tmp_path / "a", b"bytes")
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "missing" / "a.txt", "x")
