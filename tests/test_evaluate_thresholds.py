"""Threshold policies: parsing, choice on validation only, agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef, metric_at_thresholds

from progbench.errors import ConfigError, RunError
from progbench.evaluate import choose_threshold, evaluate_predictions, parse_threshold_policy
from progbench.evaluate.thresholds import ThresholdPolicy, threshold_criterion

POLICIES = ("fixed:0.5", "fixed:0.3", "val-mcc", "val-youden")


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [("fixed:0.5", "fixed", 0.5), ("fixed", "fixed", 0.5), ("FIXED:0.25", "fixed", 0.25),
     ("fixed:1", "fixed", 1.0), ("val-mcc", "val-mcc", None), (" val-youden ", "val-youden", None)],
)  # fmt: skip
def test_parse(text: str, kind: str, value: float | None) -> None:
    assert parse_threshold_policy(text) == ThresholdPolicy(kind, value)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["fixed:-0.1", "fixed:1.5", "fixed:x", "fixed:nan", "mcc", ""])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="unknown threshold policy"):
        parse_threshold_policy(text)


def test_criterion_matches_sklearn_per_threshold() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    p = np.round(rng.random(80), 1)  # many ties
    mcc, t_mcc = threshold_criterion("val-mcc", y, p)
    want, t_want = metric_at_thresholds(y, p, matthews_corrcoef)
    np.testing.assert_array_equal(t_mcc, t_want)
    np.testing.assert_allclose(mcc, want, atol=1e-12)
    youden, _ = threshold_criterion("val-youden", y, p)
    want, _ = metric_at_thresholds(y, p, balanced_accuracy_score, metric_params={"adjusted": True})
    np.testing.assert_allclose(youden, want, atol=1e-12)


def test_choice_maximises_the_criterion_with_sklearn() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 60)
    p = np.clip(0.3 * y + 0.7 * rng.random(60), 0, 1)
    for policy, metric, params in (
        ("val-mcc", matthews_corrcoef, {}),
        ("val-youden", balanced_accuracy_score, {"adjusted": True}),
    ):
        choice = choose_threshold(parse_threshold_policy(policy), y, p)
        values, thresholds = metric_at_thresholds(y, p, metric, metric_params=params)
        assert choice.value in thresholds
        assert metric(y, (p >= choice.value).astype(int), **params) == pytest.approx(values.max())
        assert choice.rule == policy


def test_ties_go_to_the_threshold_closest_to_half() -> None:
    # Perfectly separated: every threshold in (0.2, 0.8] gives MCC 1; candidates are 0.8 and 0.6.
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.8])
    assert choose_threshold(parse_threshold_policy("val-mcc"), y, p).value == 0.6


def test_val_policy_without_val_rows_is_an_error() -> None:
    with pytest.raises(RunError, match="needs validation predictions"):
        choose_threshold(parse_threshold_policy("val-youden"), np.array([]), np.array([]))


def test_single_class_validation_falls_back_and_says_so() -> None:
    choice = choose_threshold(
        parse_threshold_policy("val-mcc"), np.zeros(5, int), np.linspace(0, 1, 5)
    )
    assert choice.value == 0.5
    assert "fallback fixed:0.5" in choice.rule and "only class 0" in choice.rule


rows = st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None)
@given(
    val=rows,
    test=rows,
    new_y=st.lists(st.integers(0, 1), min_size=25, max_size=25),
    new_p=st.lists(st.floats(0, 1), min_size=25, max_size=25),
    policy=st.sampled_from(POLICIES),
)
@pytest.mark.slow
def test_no_policy_reads_test_labels_or_scores(
    val: list[tuple[int, float]],
    test: list[tuple[int, float]],
    new_y: list[int],
    new_p: list[float],
    policy: str,
) -> None:
    """Replacing every test label and score changes neither the threshold nor the val metrics."""

    def frame(test_rows: list[tuple[int, float]]) -> pd.DataFrame:
        rows = [("val", *r) for r in val] + [("test", *r) for r in test_rows]
        return pd.DataFrame(
            {
                "image_id": [f"i{i}" for i in range(len(rows))],
                "patient_id": [f"{r[0]}{i}" for i, r in enumerate(rows)],
                "split": [r[0] for r in rows],
                "y_true": [r[1] for r in rows],
                "p_pos": [r[2] for r in rows],
            }
        )

    swapped = list(zip(new_y[: len(test)], new_p[: len(test)], strict=True))
    a = evaluate_predictions(frame(test), policy)
    b = evaluate_predictions(frame(swapped), policy)
    assert a["test"]["threshold"] == b["test"]["threshold"] == a["val"]["threshold"]
    assert a["test"]["threshold_rule"] == b["test"]["threshold_rule"]
    assert a["val"] == b["val"]
    # And the same threshold comes from the validation rows alone.
    y_val = np.array([r[0] for r in val])
    p_val = np.array([r[1] for r in val])
    assert (
        choose_threshold(parse_threshold_policy(policy), y_val, p_val).value
        == a["test"]["threshold"]
    )
