"""The end of every training run: its predictions scored by the one shared evaluator, then the
run finished through the run format (predictions, metrics.json with the cost, then DONE)."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from progbench.evaluate.metrics import evaluate_predictions
from progbench.evaluate.thresholds import DEFAULT_POLICY
from progbench.runs import RunCost, finish_run, validate_predictions


def finish_scored_run(
    run_dir: str | os.PathLike[str],
    predictions: pd.DataFrame,
    threshold: str = DEFAULT_POLICY,
    cost: RunCost | None = None,
) -> dict[str, dict[str, Any]]:
    """Validate and score `predictions`, then finish the run; returns the metrics per split."""
    clean = validate_predictions(predictions, f"predictions for {run_dir}")
    metrics = evaluate_predictions(clean, threshold, validated=True)
    finish_run(run_dir, clean, metrics, cost)
    return metrics
