"""The typed schema of run records and results files (``lifelong.records``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lifelong.checkpoint import CheckpointError, read_job_result, write_job_result
from lifelong.records import (
    ResultsFile,
    SequenceRun,
    SequenceSummary,
    SwitchingRun,
    run_from_dict,
    runs_from_dicts,
)

MATRIX = [[0.1, 0.2], [0.9, 0.2], [0.8, 0.7]]


def sequence_run(**change):
    return {
        "agent": "der",
        "seed": 0,
        "accuracy_matrix": [list(row) for row in MATRIX],
        "acc": 0.75,
        "bwt": -0.1,
        "fwt": 0.0,
        "forgetting": 0.1,
        "wall_time_s": 1.5,
        "memory_bytes_by_kind": {"samples": 627_200},
        "avalanche_bwt": -0.1,
        "task_memory": {"records": 2},
        **change,
    }


def switching_run(**change):
    return {
        "agent": "protonet",
        "seed": 1,
        "oca": 0.6,
        "oca_by_type": {"pretrain": 0.7, "new": 0.5, "ood": None},
        "oca_first_visit": 0.55,
        "oca_revisit": None,
        "recovery_curve": {"lag": [0, 1], "first_visit": [0.2, None]},
        "step_accuracy": [0.5, 0.7],
        "ground_truth": {"switch": [True, False]},
        "wall_time_s": 0.5,
        **change,
    }


def test_a_record_reads_its_fields_and_keeps_other_keys_as_extras():
    record = SequenceRun.from_dict(sequence_run(), "runs[0]")
    assert record.acc == 0.75 and record.n_tasks == 2
    assert record.memory_bytes_by_kind == {"samples": 627_200}
    assert record.extras == {"avalanche_bwt": -0.1, "task_memory": {"records": 2}}
    assert record.avalanche == {"avalanche_bwt": -0.1}
    # Fields the dict left out take their defaults.
    assert record.stored_samples is None and record.memory_bytes_by_experience == []


def test_a_record_is_written_flat_and_reads_back_equal():
    record = SequenceRun.from_dict(sequence_run(), "runs[0]")
    written = record.to_dict()
    assert written["task_memory"] == {"records": 2} and "extras" not in written
    # A variant name is only written for variants, as before the schema.
    assert "variant_of" not in written
    assert SequenceRun.from_dict(json.loads(json.dumps(written)), "runs[0]") == record
    assert written == {**written, **sequence_run()}


def test_numpy_values_are_read_as_plain_python():
    data = sequence_run(accuracy_matrix=np.array(MATRIX), acc=np.float32(0.75), seed=np.int64(3))
    record = SequenceRun.from_dict(data, "runs[0]")
    assert record.accuracy_matrix == MATRIX and type(record.seed) is int
    json.dumps(record.to_dict())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"acc": "high"}, r"runs\[0\] \(agent 'der', seed 0\)\['acc'\] is 'high'; it must be a "
         r"finite number"),
        ({"acc": float("inf")}, r"\['acc'\] is inf; it must be a finite number"),
        ({"seed": True}, r"runs\[0\]\['seed'\] is True; it must be an int"),
        ({"stored_samples": 2.5}, r"\['stored_samples'\] is 2.5; it must be an int or None"),
        ({"memory_bytes_by_kind": {"samples": "1"}}, r"it must be a dict of an int"),
        ({"task_identities": [0, "a"]}, r"\['task_identities'\] is \[0, 'a'\]; it must be a list"),
        ({"accuracy_matrix": [[0.1, 1.5], [0.2, 0.2], [0.3, 0.3]]}, r"\['accuracy_matrix'\]: "),
        ({"avalanche_acc": "x"}, r"\['avalanche_acc'\] is 'x'; it must be a finite number"),
        ({"wall_time_s": -2.0}, r"\['wall_time_s'\] is -2.0; it must be >= 0"),
    ],
)
def test_a_wrong_value_is_named_in_one_line(change, message):
    with pytest.raises(ValueError, match=message) as caught:
        SequenceRun.from_dict(sequence_run(**change), "runs[0]")
    assert "\n" not in str(caught.value)


def test_a_missing_key_lists_the_needed_ones():
    data = sequence_run()
    del data["forgetting"]
    with pytest.raises(ValueError, match=r"runs\[0\] is missing the key 'forgetting'; it needs "):
        SequenceRun.from_dict(data, "runs[0]")


def test_the_two_record_kinds_are_told_apart_and_not_mixed():
    assert isinstance(run_from_dict(sequence_run()), SequenceRun)
    switching = run_from_dict(switching_run())
    assert isinstance(switching, SwitchingRun) and switching.oca_by_type["ood"] is None
    with pytest.raises(ValueError, match="one results file holds one kind of stream"):
        runs_from_dicts([sequence_run(), switching_run()])
    with pytest.raises(ValueError, match="repeats an"):
        runs_from_dicts([sequence_run(), sequence_run(acc=0.5)])


def test_a_results_file_reads_back_typed_and_keeps_its_extras():
    run = SequenceRun.from_dict(sequence_run(), "runs[0]")
    row = SequenceSummary(
        agent="der", n_seeds=1, acc_mean=0.75, acc_std=0.0, bwt_mean=-0.1, bwt_std=0.0,
        fwt_mean=0.0, fwt_std=0.0, forgetting_mean=0.1, forgetting_std=0.0,
        wall_time_s_mean=1.5, extras={"memory_bytes_mean": 627_200.0},
    )
    results = ResultsFile(
        stream="rotated-mnist", scenario="domain-incremental", config={"seeds": [0]},
        runs=[run], summary=[row], extras={"n_tasks": 2},
    )
    data = json.loads(json.dumps(results.to_dict()))
    assert data["n_tasks"] == 2 and data["summary"][0]["memory_bytes_mean"] == 627_200.0
    again = ResultsFile.from_dict(data)
    assert again == results and not again.switching


def test_a_job_record_round_trips_through_its_checkpoint_file(tmp_path):
    path = tmp_path / "der__seed0.json"
    record = SequenceRun.from_dict(sequence_run(), "record")
    write_job_result(path, record)
    assert read_job_result(path, SequenceRun) == record
    assert read_job_result(tmp_path / "absent.json", SequenceRun) is None


def test_a_job_file_of_the_wrong_kind_or_shape_is_refused_in_one_line(tmp_path):
    path = tmp_path / "der__seed0.json"
    write_job_result(path, SequenceRun.from_dict(sequence_run(), "record"))
    with pytest.raises(CheckpointError, match="missing the key 'oca'.*delete it to redo it"):
        read_job_result(path, SwitchingRun)
    path.write_text(json.dumps({**sequence_run(), "acc": None}))
    with pytest.raises(CheckpointError, match=r"\['acc'\] is None; it must be a finite number"):
        read_job_result(path, SequenceRun)
