"""Test-then-train evaluation: the protocol, and the online metrics on hand-made cases."""

import numpy as np
import pytest
import torch

from lifelong.prequential import (
    oca,
    oca_by_kind,
    oca_by_visit,
    prequential_accuracies,
    prequential_metrics,
    recovery_curve,
    retrieval_precision,
)
from streams.switching import Distribution, DistributionKind, StepTruth, build_switching_stream

PRE, OOD = DistributionKind.PRETRAIN, DistributionKind.OOD

# Three segments: distribution 0 (first visit), 1 (first visit), 0 again (a revisit).
TRUTH = StepTruth(
    distribution=np.array([0, 0, 0, 1, 1, 0, 0, 0]),
    kind=(PRE, PRE, PRE, OOD, OOD, PRE, PRE, PRE),
    switch=np.array([1, 0, 0, 1, 0, 1, 0, 0], dtype=bool),
    first_visit=np.array([1, 1, 1, 1, 1, 0, 0, 0], dtype=bool),
    classes=np.zeros((8, 2), dtype=np.int64),
)
ACC = [0.0, 0.5, 1.0, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_oca_and_its_splits_by_kind_and_visit():
    assert oca(ACC) == pytest.approx(4.9 / 8)
    assert oca_by_kind(ACC, TRUTH) == pytest.approx(
        {"pretrain": (0.0 + 0.5 + 1.0 + 0.8 + 1.0 + 1.0) / 6, "new": None, "ood": 0.3}
    )
    first, revisit = oca_by_visit(ACC, TRUTH)
    assert first == pytest.approx(2.1 / 5)
    assert revisit == pytest.approx(2.8 / 3)


def test_recovery_curve_averages_over_segments_at_each_lag():
    curve = recovery_curve(ACC, TRUTH, max_lag=4)
    assert curve["lag"] == [0, 1, 2, 3]
    assert curve["first_visit"][:3] == pytest.approx([0.1, 0.45, 1.0])
    assert curve["first_visit"][3] is None
    assert curve["first_visit_segments"] == [2, 2, 1, 0]
    assert curve["revisit"][:3] == pytest.approx([0.8, 1.0, 1.0])
    assert curve["revisit_segments"] == [1, 1, 1, 0]


def test_the_run_record_has_the_fixed_keys():
    record = prequential_metrics(ACC, TRUTH, max_lag=2)
    assert set(record) >= {"oca", "oca_by_type", "oca_first_visit", "oca_revisit"}
    assert set(record["oca_by_type"]) == {"pretrain", "new", "ood"}
    assert record["step_accuracy"] == ACC


@pytest.mark.parametrize(
    ("accuracies", "message"),
    [([], "one value per step"), ([0.5] * 3, "3 accuracies for 8 steps"), ([2.0] * 8, "[0, 1]")],
)
def test_bad_accuracies_are_refused(accuracies, message):
    with pytest.raises(ValueError, match=message):
        oca_by_visit(accuracies, TRUTH)


class Memoriser:
    """Knows the label of every image it has been trained on, and nothing else."""

    def __init__(self, ways: int):
        self.ways = ways
        self.seen: dict[bytes, int] = {}

    def predict(self, x):
        logits = torch.zeros(len(x), self.ways + 1)
        logits[:, self.ways] = 1.0  # "unknown": never a label
        for i, image in enumerate(x):
            label = self.seen.get(image.numpy().tobytes())
            if label is not None:
                logits[i, label] = 2.0
        return logits

    def observe(self, x, y, new_segment):
        for image, label in zip(x, y, strict=True):
            self.seen[image.numpy().tobytes()] = int(label)


def test_each_batch_is_predicted_before_it_is_learned():
    generator = torch.Generator().manual_seed(0)
    classes = tuple(torch.rand(6, 1, 2, 2, generator=generator) for _ in range(3))
    pool = [Distribution(f"d{i}", PRE, classes, classes) for i in range(2)]
    stream = build_switching_stream("memo", pool, n_steps=60, seed=0, ways=3, labels="fixed")
    accuracies = prequential_accuracies(stream, Memoriser(3))
    # What a memoriser can know of step t is what steps 0..t-1 showed it, no more.
    expected, seen = [], {}
    for step in stream.steps():
        keys = [image.numpy().tobytes() for image in step.x]
        expected.append(np.mean([seen.get(k) == int(y) for k, y in zip(keys, step.y, strict=True)]))
        seen.update({k: int(y) for k, y in zip(keys, step.y, strict=True)})
    np.testing.assert_allclose(accuracies, expected)
    assert accuracies[0] == 0.0 and 0 < accuracies.mean() < 1


def test_retrieval_precision_judges_each_retrieved_record_by_its_majority_distribution():
    # Record 7 learned steps 0-2 and 6 (distribution 0); record 8 steps 3-5, of which step 5
    # was really distribution 0 (a missed switch), so 8 belongs to distribution 1.
    observed = [7, 7, 7, 8, 8, 8, 7, 7]
    retrieved = [(5, 8), (6, 7)]  # step 5 retrieved record 8 (wrong), step 6 record 7 (right)
    found = retrieval_precision(observed, retrieved, TRUTH)
    assert found == {"events": 2, "precision_at_1": 0.5, "chance": 0.5, "records": 2}
    assert retrieval_precision(observed, [], TRUTH)["precision_at_1"] is None
    with pytest.raises(ValueError, match="observed has 3 entries for 8 steps"):
        retrieval_precision([7, 7, 7], [], TRUTH)
    with pytest.raises(ValueError, match=r"retrieval \(2, 9\) names no step or record"):
        retrieval_precision(observed, [(2, 9)], TRUTH)
