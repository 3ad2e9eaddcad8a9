"""The shared evaluator: metrics, threshold policies, aggregation and the results table.

Both training paths (LP on cached features, PEFT/FFT on images) write a predictions table and
score it with `evaluate_predictions`; `progbench evaluate` recomputes and aggregates from disk.

The names below load their module on first use: importing `progbench.evaluate.registry` (which
every command's `--metric` help reads) must not import scikit-learn, which takes seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "METRIC_NAMES": "metrics",
    "RESULT_KEYS": "metrics",
    "binary_metrics": "metrics",
    "evaluate_predictions": "metrics",
    "DEFAULT_POLICY": "thresholds",
    "ThresholdChoice": "thresholds",
    "ThresholdPolicy": "thresholds",
    "choose_threshold": "thresholds",
    "parse_threshold_policy": "thresholds",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"progbench.evaluate.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'progbench.evaluate' has no attribute {name!r}")


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
