"""The shared evaluator: metrics, threshold policies, aggregation and the results table.

Both training paths (LP on cached features, PEFT/FFT on images) write a predictions table and
score it with `evaluate_predictions`; `progbench evaluate` recomputes and aggregates from disk.
"""

from progbench.evaluate.metrics import (
    METRIC_NAMES,
    RESULT_KEYS,
    binary_metrics,
    evaluate_predictions,
)
from progbench.evaluate.thresholds import (
    DEFAULT_POLICY,
    ThresholdChoice,
    ThresholdPolicy,
    choose_threshold,
    parse_threshold_policy,
)

__all__ = [
    "DEFAULT_POLICY",
    "METRIC_NAMES",
    "RESULT_KEYS",
    "ThresholdChoice",
    "ThresholdPolicy",
    "binary_metrics",
    "choose_threshold",
    "evaluate_predictions",
    "parse_threshold_policy",
]
