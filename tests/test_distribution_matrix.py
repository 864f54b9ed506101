"""The accuracy matrix over distributions: its points, probes, metrics and no trace left."""

import copy
import math

import numpy as np
import pytest
import torch

from lifelong.agent.switching import SwitchingLearner
from lifelong.distribution_matrix import (
    MatrixProbe,
    evaluation_steps,
    matrix_metrics,
    probe_batch,
)
from lifelong.methods.cmaml import CMAMLLearner, CMAMLOptions
from lifelong.methods.finetune import FinetuneLearner
from lifelong.methods.maml import MAMLLearner
from lifelong.methods.protonet import ProtoNetLearner
from lifelong.prequential import prequential_accuracies
from lifelong.pretraining import conv4
from streams.switching import (
    Distribution,
    DistributionKind,
    StepTruth,
    build_switching_stream,
)


def test_points_are_before_the_stream_every_few_steps_and_after_the_last():
    assert evaluation_steps(10, 3) == [-1, 2, 5, 8, 9]
    assert evaluation_steps(10, 5) == [-1, 4, 9]
    with pytest.raises(ValueError, match="every is 0"):
        evaluation_steps(10, 0)


def _truth(schedule):
    schedule = np.array(schedule)
    switch = np.r_[True, schedule[1:] != schedule[:-1]]
    kinds = tuple(DistributionKind.PRETRAIN for _ in schedule)
    return StepTruth(schedule, kinds, switch, np.zeros(len(schedule), bool), np.zeros((10, 5)))


def test_metrics_match_a_matrix_worked_by_hand():
    # Steps 0-2 on distribution 0, 3-5 on 1, 6-7 on 0 again, 8-9 on 2; 3 is never visited.
    truth = _truth([0, 0, 0, 1, 1, 1, 0, 0, 2, 2])
    nan = math.nan
    matrix = [
        [0.2, 0.2, 0.2, nan],  # before the stream
        [0.9, 0.3, 0.2, nan],  # after step 2
        [0.6, 0.8, 0.4, None],  # after step 5
        [0.7, 0.5, 0.9, nan],  # after step 9
    ]
    found = matrix_metrics(matrix, [-1, 2, 5, 9], truth)
    # acc: the last row over the visited distributions 0, 1, 2.
    assert found["acc"] == pytest.approx((0.7 + 0.5 + 0.9) / 3)
    # forgetting: 0 peaked at 0.9 (after step 2), 1 at 0.8 (after 5); 2 has no earlier row.
    assert found["forgetting"] == pytest.approx(((0.9 - 0.7) + (0.8 - 0.5)) / 2)
    # bwt: 0's last segment ends at step 7, first point after it is the last (0.7 - 0.7);
    # 1's ends at 5 (0.5 - 0.8); 2's runs to the end and does not count.
    assert found["bwt"] == pytest.approx((0.0 + (0.5 - 0.8)) / 2)
    # fwt: before their first visits, 1 after step 2 (0.3 - 0.2), 2 after step 5 (0.4 - 0.2).
    assert found["fwt"] == pytest.approx(((0.3 - 0.2) + (0.4 - 0.2)) / 2)


def test_a_malformed_matrix_is_refused():
    truth = _truth([0, 0, 1])
    with pytest.raises(ValueError, match="one row per point"):
        matrix_metrics([[0.5, 0.5]], [-1], truth)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        matrix_metrics([[0.5, 1.5], [0.5, 0.5]], [-1, 2], truth)


def _stream(steps=60, labels="shuffled", seed=0):
    generator = torch.Generator().manual_seed(0)
    pool = []
    for d in range(3):
        patterns = (torch.rand(6, 1, 28, 28, generator=generator) > 0.7).float()

        def drawings(pattern, n):
            return (pattern + 0.2 * torch.randn(n, 1, 28, 28, generator=generator)).clamp(0, 1)

        train = tuple(drawings(p, 10) for p in patterns)
        test = tuple(drawings(p, 4) for p in patterns)
        pool.append(Distribution(f"patterns{d}", DistributionKind.PRETRAIN, train, test))
    return build_switching_stream(
        "patterns", pool, n_steps=steps, seed=seed, ways=5, p_stay=0.8, labels=labels
    )


def test_a_probe_batch_holds_test_drawings_labelled_as_in_the_latest_visit():
    stream = _stream()
    truth = stream.truth
    for d in range(3):
        visits = np.flatnonzero(truth.distribution == d)
        for step in (int(visits[0]) - 1, int(visits[-1]), stream.n_steps - 1):
            x, y = probe_batch(stream, d, step, per_class=3)
            earlier = visits[visits <= step]
            labelling = truth.classes[earlier[-1] if len(earlier) else visits[0]]
            tests = stream.distributions[d].test
            expected = torch.cat([tests[int(c)][:3] for c in labelling])
            assert torch.equal(x, expected)
            assert y.tolist() == [label for label in range(5) for _ in range(3)]


def _learners():
    torch.manual_seed(0)
    encoder = conv4(1, 8)
    maml_encoder = conv4(1, 8, batch_statistics=True)
    return {
        "finetune": FinetuneLearner(copy.deepcopy(encoder), 8, 5, 0.1, 1),
        "protonet": ProtoNetLearner(copy.deepcopy(encoder), 5),
        "lifelong": SwitchingLearner(copy.deepcopy(encoder), 5, memory_size=30, seed=3),
        "maml": MAMLLearner(copy.deepcopy(maml_encoder), 5, 8, "all", 3, 0.1),
        "cmaml": CMAMLLearner(copy.deepcopy(maml_encoder), 5, 8, CMAMLOptions(meta_every=3)),
    }


@pytest.mark.parametrize("name", ["finetune", "protonet", "lifelong", "maml", "cmaml"])
def test_probing_for_the_matrix_leaves_no_trace_in_the_learner(name):
    stream = _stream(labels="fixed")
    plain, probed = _learners()[name], _learners()[name]
    expected = prequential_accuracies(stream, plain)
    probe = MatrixProbe(stream, probed, every=7)
    found = prequential_accuracies(stream, probed, after_step=probe)
    np.testing.assert_array_equal(found, expected)
    for attribute in ("decisions", "retrieval_trace"):
        assert getattr(probed, attribute, None) == getattr(plain, attribute, None)
    record = probe.record()
    assert record["distribution_matrix_steps"] == evaluation_steps(stream.n_steps, 7)
    assert len(record["distribution_matrix"]) == len(record["distribution_matrix_steps"])
    assert all(len(row) == 3 for row in record["distribution_matrix"])
    assert set(record) >= {"matrix_acc", "matrix_bwt", "matrix_fwt", "matrix_forgetting"}
    assert probe.seconds > 0
