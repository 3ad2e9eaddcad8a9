"""Metrics agree with scikit-learn; degenerate inputs give the documented values, never NaN."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from progbench.errors import ConfigError, RunError
from progbench.evaluate import METRIC_NAMES, RESULT_KEYS, binary_metrics, evaluate_predictions


def reference(y: np.ndarray, p: np.ndarray, t: float) -> dict[str, float | None]:
    """scikit-learn called directly, with the documented None rules for undefined metrics."""
    yp = (p >= t).astype(int)
    pos, neg = int(y.sum()), int((1 - y).sum())
    tp = int(((yp == 1) & (y == 1)).sum())
    fp = int(((yp == 1) & (y == 0)).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "mcc": skm.matthews_corrcoef(y, yp),
            "pr_auc": skm.average_precision_score(y, p) if pos else None,
            "auroc": skm.roc_auc_score(y, p) if pos and neg else None,
            "balanced_accuracy": skm.balanced_accuracy_score(y, yp) if pos and neg else None,
            "sensitivity": skm.recall_score(y, yp, zero_division=0) if pos else None,
            "specificity": skm.recall_score(y, yp, pos_label=0, zero_division=0) if neg else None,
            "f1": skm.f1_score(y, yp, zero_division=0) if pos or tp + fp else None,
            "brier": skm.brier_score_loss(y, p, pos_label=1),
        }


def check(y: np.ndarray, p: np.ndarray, t: float = 0.5) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our wrapper must not leak sklearn warnings
        got = binary_metrics(y, p, t)
    want = reference(y, p, t)
    for name in METRIC_NAMES:
        if want[name] is None:
            assert got[name] is None, (name, got[name])
        else:
            assert got[name] == pytest.approx(want[name], abs=1e-12), name
    for value in got.values():
        assert value is None or math.isfinite(value)
    assert got["n"] == len(y)
    assert got["prevalence"] == pytest.approx(y.mean())
    assert got["threshold"] == t
    return got


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.integers(0, 1),
            st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 1.0]) | st.floats(0, 1),
        ),
        min_size=1,
        max_size=40,
    ),
    t=st.sampled_from([0.0, 0.3, 0.5, 0.9, 1.0]),
)
@pytest.mark.slow
def test_matches_sklearn_on_random_inputs_with_ties(
    data: list[tuple[int, float]], t: float
) -> None:
    y = np.array([d[0] for d in data])
    p = np.array([d[1] for d in data])
    check(y, p, t)


@pytest.mark.slow
def test_matches_sklearn_on_every_tiny_case() -> None:
    # n = 1..3, every labelling, scores below, on and above the threshold (fewer for n = 3).
    for n, scores in ((1, [0.0, 0.5, 0.9]), (2, [0.0, 0.5, 0.9]), (3, [0.2, 0.5])):
        for y in itertools.product([0, 1], repeat=n):
            for p in itertools.product(scores, repeat=n):
                check(np.array(y), np.array(p))


def test_all_negative() -> None:
    got = check(np.zeros(6, int), np.linspace(0, 1, 6))
    assert got["mcc"] == 0.0
    assert got["pr_auc"] is got["auroc"] is got["sensitivity"] is got["balanced_accuracy"] is None
    assert got["specificity"] == 0.5
    assert got["f1"] == 0.0  # false positives exist: 2tp/(2tp+fp+fn) = 0
    got = check(np.zeros(4, int), np.full(4, 0.1))
    assert got["f1"] is None  # no true and no predicted positives
    assert got["specificity"] == 1.0


def test_all_positive() -> None:
    got = check(np.ones(5, int), np.linspace(0, 1, 5))
    assert got["mcc"] == 0.0
    assert got["pr_auc"] == 1.0  # every ranking is perfect when everything is positive
    assert got["auroc"] is got["specificity"] is got["balanced_accuracy"] is None
    assert got["sensitivity"] == pytest.approx(3 / 5)


def test_constant_scores_and_single_predicted_class() -> None:
    y = np.array([0, 1, 0, 0, 1, 0, 0, 1])
    for c in (0.2, 0.5, 0.8):
        got = check(y, np.full(len(y), c))
        assert got["mcc"] == 0.0
        assert got["auroc"] == 0.5
        assert got["pr_auc"] == pytest.approx(got["prevalence"])  # the baseline
        assert got["balanced_accuracy"] == 0.5


def test_per_row_thresholds() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.6, 0.4, 0.3, 0.28])  # the last is positive only under its own 0.25
    got = binary_metrics(y, p, np.array([0.5, 0.5, 0.25, 0.25]))
    assert got["threshold"] is None  # varies across rows
    assert got["sensitivity"] == 1.0
    assert got["specificity"] == 0.5


def test_unknown_metric() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        binary_metrics(np.array([0, 1]), np.array([0.1, 0.9]), metrics=("accuracy",))


def frame(
    y_val: list[int], p_val: list[float], y_test: list[int], p_test: list[float]
) -> pd.DataFrame:
    nv, nt = len(y_val), len(y_test)
    return pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(nv + nt)],
            "patient_id": [f"v{i}" for i in range(nv)] + [f"t{i}" for i in range(nt)],
            "split": ["val"] * nv + ["test"] * nt,
            "y_true": y_val + y_test,
            "p_pos": p_val + p_test,
        }
    )


def test_evaluate_predictions_shape_and_values() -> None:
    df = frame([0, 1, 1, 0], [0.2, 0.8, 0.6, 0.7], [1, 0, 1, 0, 0], [0.9, 0.1, 0.4, 0.6, 0.3])
    out = evaluate_predictions(df)
    assert set(out) == {"val", "test"}
    for split in out:
        assert list(out[split]) == [*RESULT_KEYS, "threshold_rule", "degenerate"]
        assert out[split]["threshold_rule"] == "fixed:0.5"
    test = df[df.split == "test"]
    expected = binary_metrics(test.y_true.to_numpy(), test.p_pos.to_numpy(), 0.5)
    assert {k: out["test"][k] for k in RESULT_KEYS} == expected


def test_evaluate_predictions_only_present_splits_and_errors() -> None:
    df = frame([], [], [1, 0], [0.9, 0.1])
    assert set(evaluate_predictions(df)) == {"test"}
    with pytest.raises(RunError, match="no rows with split == 'val'"):
        evaluate_predictions(df, "val-mcc")
    with pytest.raises(ConfigError, match="unknown threshold policy"):
        evaluate_predictions(df, "fixed:2")
    with pytest.raises(RunError, match="lacks column"):
        evaluate_predictions(df.drop(columns="y_true"))
