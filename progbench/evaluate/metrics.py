"""Binary metrics, all computed by scikit-learn, and `evaluate_predictions`: the one evaluator.

A metric that is undefined for the given input is `None` (JSON null), never NaN and never a
crash. The rules (docs/METHODOLOGY.md, section 6):

- MCC: scikit-learn's convention, 0.0 whenever a confusion-matrix margin is empty (a single
  predicted class, a single true class, constant scores under any threshold).
- PR-AUC (average precision of the positive class): None without positives in y_true.
- AUROC and balanced accuracy: None unless both classes are present in y_true.
- Sensitivity: None without positives; specificity: None without negatives.
- F1: None when there are neither true nor predicted positives (tp + fp + fn = 0).
- Brier score: always defined.

Constant scores need no special case: AUROC is 0.5 and PR-AUC equals the prevalence.
A row is predicted positive when p_pos >= threshold.

A split whose rows are all predicted one class at the chosen threshold is `degenerate` (a
constant classifier: MCC 0 by convention, sensitivity or specificity 0); `evaluate_predictions`
says so per split, and the results table and report mark it (`n_degenerate`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import sklearn
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    matthews_corrcoef,
    precision_recall_fscore_support,
    roc_auc_score,
)

from progbench.evaluate.registry import METRIC_NAMES
from progbench.evaluate.thresholds import choose_threshold, parse_threshold_policy
from progbench.runs import SPLITS, validate_predictions

# Keys of every per-split result, in the order of the JSON the CLI prints.
RESULT_KEYS: tuple[str, ...] = (*METRIC_NAMES, "threshold", "n", "prevalence")

MetricValue = float | int | str | None


def is_degenerate(p_pos: np.ndarray, threshold: float | np.ndarray) -> bool:
    """True when every row is predicted the same class at `threshold` (and there are rows)."""
    p = np.asarray(p_pos, dtype=np.float64)
    if len(p) == 0:
        return False
    y_pred = p >= np.broadcast_to(np.asarray(threshold, dtype=np.float64), p.shape)
    return bool(y_pred.all() or not y_pred.any())


def _value(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def binary_metrics(
    y_true: np.ndarray,
    p_pos: np.ndarray,
    threshold: float | np.ndarray = 0.5,
    metrics: tuple[str, ...] = METRIC_NAMES,
) -> dict[str, MetricValue]:
    """Metrics of one set of predictions; `threshold` is one value or one per row.

    Returns `metrics` (undefined ones as None) plus threshold (None when it varies across rows),
    n and prevalence (the PR-AUC of a random classifier).
    """
    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(p_pos, dtype=np.float64)
    t = np.broadcast_to(np.asarray(threshold, dtype=np.float64), p.shape)
    n = len(y)
    n_pos = int(y.sum())
    common = float(t[0]) if n and np.all(t == t[0]) else None
    out: dict[str, MetricValue] = {name: None for name in metrics}
    out |= {"threshold": common, "n": n, "prevalence": n_pos / n if n else None}
    if n == 0:
        return out
    y_pred = (p >= t).astype(np.int64)
    both = 0 < n_pos < n
    # Inputs were validated upstream; skip sklearn's per-call re-validation (bootstrap speed).
    with (
        sklearn.config_context(assume_finite=True, skip_parameter_validation=True),
        warnings.catch_warnings(),
    ):
        # matthews_corrcoef warns when y_true and y_pred hold one and the same label; its
        # result (0.0) is the documented convention, so the warning carries no news.
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        unknown = [name for name in metrics if name not in METRIC_NAMES]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRIC_NAMES)}")
        if {"sensitivity", "specificity", "f1"} & set(metrics):
            # One sklearn call gives per-class recall (specificity, sensitivity) and F1; NaN
            # marks a zero denominator, i.e. an undefined metric.
            _, recall, f1, _ = precision_recall_fscore_support(
                y, y_pred, labels=[0, 1], average=None, zero_division=np.nan
            )
            per_class = {"specificity": recall[0], "sensitivity": recall[1], "f1": f1[1]}
            out |= {k: _value(v) for k, v in per_class.items() if k in metrics}
        if "mcc" in metrics:
            out["mcc"] = float(matthews_corrcoef(y, y_pred))
        if "pr_auc" in metrics and n_pos > 0:
            out["pr_auc"] = float(average_precision_score(y, p, pos_label=1))
        if "auroc" in metrics and both:
            out["auroc"] = float(roc_auc_score(y, p))
        if "balanced_accuracy" in metrics and both:
            out["balanced_accuracy"] = float(balanced_accuracy_score(y, y_pred))
        if "brier" in metrics:
            out["brier"] = float(brier_score_loss(y, p, pos_label=1))
    return out


def evaluate_predictions(
    df: pd.DataFrame, threshold: str = "fixed:0.5", validated: bool = False
) -> dict[str, dict[str, MetricValue]]:
    """The one evaluator: metrics per split present ('val', 'test') under a threshold policy.

    `fixed:<t>` applies t everywhere; `val-mcc` and `val-youden` choose the threshold from the
    validation rows alone (see thresholds.py) and apply it to both splits. Each split's result
    holds RESULT_KEYS plus `threshold_rule`, the rule actually used, and `degenerate` (every row
    predicted one class at that threshold). `validated` says `df`
    already came out of `validate_predictions` (finish_run), so it is not checked twice.
    """
    policy = parse_threshold_policy(threshold)
    clean = df if validated else validate_predictions(df)
    val = clean[clean["split"] == "val"]
    choice = choose_threshold(policy, val["y_true"].to_numpy(), val["p_pos"].to_numpy())
    out: dict[str, dict[str, MetricValue]] = {}
    for split in SPLITS:
        part = clean[clean["split"] == split]
        if len(part) == 0:
            continue
        p_pos = part["p_pos"].to_numpy()
        result = binary_metrics(part["y_true"].to_numpy(), p_pos, choice.value)
        out[split] = {key: result[key] for key in RESULT_KEYS} | {
            "threshold_rule": choice.rule,
            "degenerate": is_degenerate(p_pos, choice.value),
        }
    return out
