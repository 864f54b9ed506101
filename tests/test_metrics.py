"""Metric functions against hand-computed accuracy matrices and properties of the maths.

Indices in comments follow ../shared/DESIGN.md: rows i = 0..T (0 = before training), tasks j = 1..T.
"""

# R and T are the papers' names for the accuracy matrix and the number of tasks.
# ruff: noqa: N803, N806

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lifelong.metrics import (
    as_accuracy_matrix,
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    per_task_forgetting,
    summarize_matrix,
)


def check(R, acc, bwt, fwt, forg):
    got = summarize_matrix(R)
    assert got == pytest.approx({"acc": acc, "bwt": bwt, "fwt": fwt, "forgetting": forg}, abs=1e-12)
    assert average_accuracy(R) == pytest.approx(acc, abs=1e-12)
    assert backward_transfer(R) == pytest.approx(bwt, abs=1e-12)
    assert forward_transfer(R) == pytest.approx(fwt, abs=1e-12)
    assert forgetting(R) == pytest.approx(forg, abs=1e-12)
    assert all(type(v) is float for v in got.values())


# --- hand-computed matrices -----------------------------------------------------------------


def test_single_task_uses_the_zero_conventions():
    R = [[0.1], [0.8]]
    # ACC = R[1][1] = 0.8; no earlier task: BWT = FWT = forgetting = 0 by convention.
    check(R, acc=0.8, bwt=0.0, fwt=0.0, forg=0.0)
    assert per_task_forgetting(R).shape == (0,)


def test_two_tasks_pin_the_index_translation():
    R = [
        [0.2, 0.3],
        [0.9, 0.6],
        [0.4, 0.95],
    ]
    # ACC = (0.4 + 0.95) / 2 = 0.675
    # BWT = R[2][1] - R[1][1] = 0.4 - 0.9 = -0.5
    # FWT = R[1][2] - R[0][2] = 0.6 - 0.3 = 0.3
    # forgetting = max(R[1][1]) - R[2][1] = 0.9 - 0.4 = 0.5
    check(R, acc=0.675, bwt=-0.5, fwt=0.3, forg=0.5)


def test_perfect_learner_forgets_nothing():
    R = [
        [0.1, 0.2, 0.3],
        [1.0, 0.2, 0.3],
        [1.0, 1.0, 0.3],
        [1.0, 1.0, 1.0],
    ]
    # ACC = 1; BWT = ((1 - 1) + (1 - 1)) / 2 = 0
    # FWT = ((R[1][2] - R[0][2]) + (R[2][3] - R[0][3])) / 2 = ((0.2 - 0.2) + (0.3 - 0.3)) / 2 = 0
    # forgetting = ((max(1, 1) - 1) + (1 - 1)) / 2 = 0
    check(R, acc=1.0, bwt=0.0, fwt=0.0, forg=0.0)
    np.testing.assert_array_equal(per_task_forgetting(R), [0.0, 0.0])


def test_catastrophic_forgetter():
    R = [
        [0.5, 0.5, 0.5],
        [1.0, 0.0, 0.5],
        [0.0, 1.0, 0.5],
        [0.0, 0.0, 1.0],
    ]
    # ACC = (0 + 0 + 1) / 3 = 1/3
    # BWT = ((0 - 1) + (0 - 1)) / 2 = -1
    # FWT = ((R[1][2] - R[0][2]) + (R[2][3] - R[0][3])) / 2 = ((0 - 0.5) + (0.5 - 0.5)) / 2
    #     = -0.25
    # forgetting: task 1: max(R[1][1], R[2][1]) - R[3][1] = 1 - 0 = 1; task 2: 1 - 0 = 1 -> 1
    check(R, acc=1 / 3, bwt=-1.0, fwt=-0.25, forg=1.0)


def test_max_based_forgetting_differs_from_minus_bwt():
    R = [
        [0.1, 0.1, 0.1],
        [0.6, 0.2, 0.1],
        [0.9, 0.7, 0.3],
        [0.5, 0.4, 0.8],
    ]
    # ACC = (0.5 + 0.4 + 0.8) / 3 = 1.7 / 3
    # BWT = ((0.5 - 0.6) + (0.4 - 0.7)) / 2 = -0.2
    # FWT = ((0.2 - 0.1) + (0.3 - 0.1)) / 2 = 0.15
    # task 1 improved to 0.9 after task 2, then fell to 0.5:
    # forgetting = ((max(0.6, 0.9) - 0.5) + (max(0.7) - 0.4)) / 2 = (0.4 + 0.3) / 2 = 0.35
    check(R, acc=1.7 / 3, bwt=-0.2, fwt=0.15, forg=0.35)
    np.testing.assert_allclose(per_task_forgetting(R), [0.4, 0.3])
    assert forgetting(R) > -backward_transfer(R)


def test_forgetting_max_ignores_the_row_before_training():
    R = [
        [1.0, 0.0],
        [0.3, 0.0],
        [0.1, 0.5],
    ]
    # Task 1 scored 1.0 by chance before training; the max runs over rows 1..T-1 only:
    # forgetting = R[1][1] - R[2][1] = 0.3 - 0.1 = 0.2 (not 1.0 - 0.1)
    assert forgetting(R) == pytest.approx(0.2)


def test_forgetting_max_ignores_the_final_row_and_can_be_negative():
    R = [
        [0.0, 0.0],
        [0.3, 0.0],
        [0.8, 0.9],
    ]
    # Positive backward transfer: forgetting = 0.3 - 0.8 = -0.5 (not clipped); BWT = 0.5
    assert forgetting(R) == pytest.approx(-0.5)
    assert backward_transfer(R) == pytest.approx(0.5)


def test_nested_lists_and_arrays_agree():
    R = [[0.1, 0.2], [0.7, 0.3], [0.5, 0.9]]
    assert summarize_matrix(R) == summarize_matrix(np.array(R))
    assert summarize_matrix(np.array(R, dtype=np.float32)) == pytest.approx(summarize_matrix(R))


def test_as_accuracy_matrix_returns_a_float_copy():
    source = np.array([[0, 1], [1, 0], [1, 1]])
    out = as_accuracy_matrix(source)
    assert out.dtype == np.float64
    out[0, 0] = 0.5
    assert source[0, 0] == 0


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((3, 3)), r"shape \(3, 3\).*\(4, 3\)"),
        (np.zeros((2, 3)), r"shape \(2, 3\)"),
        (np.zeros((1, 0)), r"shape \(1, 0\).*T >= 1"),
        (np.zeros(3), r"1 dimension"),
        (np.zeros((2, 2, 1)), r"3 dimension"),
        ([[0.1, 0.2], [0.3]], r"rectangular"),
        ([["a"], ["b"]], r"rectangular"),
        ([[0.1], [float("nan")]], r"R\[1\]\[0\] = nan"),
        ([[0.1], [math.inf]], r"R\[1\]\[0\] = inf"),
        ([[0.1], [1.5]], r"R\[1\]\[0\] = 1\.5.*\[0, 1\].*percentages"),
        ([[-0.1], [0.5]], r"R\[0\]\[0\] = -0\.1"),
    ],
)
def test_invalid_matrices_are_rejected_with_the_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        as_accuracy_matrix(bad)
    with pytest.raises(ValueError, match=message):
        summarize_matrix(bad)


# --- properties -----------------------------------------------------------------------------

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def accuracy_matrices(draw, max_tasks=8):
    n_tasks = draw(st.integers(1, max_tasks))
    return draw(arrays(np.float64, (n_tasks + 1, n_tasks), elements=unit))


def reference_metrics(R):
    """../shared/DESIGN.md's formulas written literally with 1-based indices."""
    T = R.shape[1]

    def r(i, j):  # row i = 0..T, task j = 1..T
        return R[i, j - 1]

    acc = sum(r(T, j) for j in range(1, T + 1)) / T
    if T == 1:
        return {"acc": acc, "bwt": 0.0, "fwt": 0.0, "forgetting": 0.0}
    bwt = sum(r(T, j) - r(j, j) for j in range(1, T)) / (T - 1)
    fwt = sum(r(j - 1, j) - r(0, j) for j in range(2, T + 1)) / (T - 1)
    forg = sum(max(r(i, j) for i in range(j, T)) - r(T, j) for j in range(1, T)) / (T - 1)
    return {"acc": acc, "bwt": bwt, "fwt": fwt, "forgetting": forg}


@settings(max_examples=200, deadline=None)
@given(accuracy_matrices())
def test_metrics_match_the_literal_1_based_formulas(R):
    assert summarize_matrix(R) == pytest.approx(reference_metrics(R), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(accuracy_matrices())
def test_forgetting_is_at_least_minus_bwt(R):
    # max over j <= i < T of R[i][j] >= R[j][j], task by task.
    T = R.shape[1]
    per_task = per_task_forgetting(R)
    drop_since_learned = np.array([R[j, j - 1] - R[T, j - 1] for j in range(1, T)])
    assert np.all(per_task >= drop_since_learned - 1e-12)
    assert forgetting(R) >= -backward_transfer(R) - 1e-12


@settings(max_examples=200, deadline=None)
@given(accuracy_matrices())
def test_metrics_are_bounded(R):
    m = summarize_matrix(R)
    assert 0.0 <= m["acc"] <= 1.0
    for name in ("bwt", "fwt", "forgetting"):
        assert -1.0 <= m[name] <= 1.0


@settings(max_examples=100, deadline=None)
@given(accuracy_matrices(), st.randoms(use_true_random=False))
def test_acc_is_invariant_to_the_order_of_tasks(R, rnd):
    order = list(range(R.shape[1]))
    rnd.shuffle(order)
    assert average_accuracy(R[:, order]) == pytest.approx(average_accuracy(R), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(accuracy_matrices(), arrays(np.float64, (9, 8), elements=unit))
def test_each_metric_reads_only_its_entries(R, noise):
    # BWT reads the diagonal R[j][j] and the last row; FWT reads row 0 and R[j-1][j];
    # forgetting never reads row 0; ACC reads only the last row.
    T = R.shape[1]
    other = noise[: T + 1, :T].copy()
    diag = (np.arange(1, T + 1), np.arange(T))
    sub_diag = (np.arange(T), np.arange(T))  # R[j-1][j]

    same_bwt = other.copy()
    same_bwt[diag] = R[diag]
    same_bwt[-1] = R[-1]
    assert backward_transfer(same_bwt) == pytest.approx(backward_transfer(R), abs=1e-12)

    same_fwt = other.copy()
    same_fwt[0] = R[0]
    same_fwt[sub_diag] = R[sub_diag]
    assert forward_transfer(same_fwt) == pytest.approx(forward_transfer(R), abs=1e-12)

    same_forgetting = R.copy()
    same_forgetting[0] = other[0]
    assert forgetting(same_forgetting) == pytest.approx(forgetting(R), abs=1e-12)

    same_acc = other.copy()
    same_acc[-1] = R[-1]
    assert average_accuracy(same_acc) == pytest.approx(average_accuracy(R), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(accuracy_matrices())
def test_a_learner_that_keeps_what_it_learned_has_no_forgetting(R):
    # Freeze each task's accuracy from the moment it is learned: R[i][j] = R[j][j] for i >= j.
    T = R.shape[1]
    kept = R.copy()
    for j in range(1, T + 1):
        kept[j:, j - 1] = R[j, j - 1]
    assert backward_transfer(kept) == pytest.approx(0.0, abs=1e-12)
    assert forgetting(kept) == pytest.approx(0.0, abs=1e-12)
