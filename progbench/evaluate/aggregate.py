"""Aggregation over the runs of one (task, backbone, weights, strategy, regime, shots) group.

All aggregates are over test predictions (docs/METHODOLOGY.md, section 6):

Full regime (one run per fold)
- `aggregate-mean` / `aggregate-std`: mean and sample std (ddof=1) over folds of the per-fold
  metric, as in the reference study; `n_runs` counts folds where the metric is defined.
- `pooled`: the metric of all folds' test predictions concatenated (out-of-fold), each row
  classified with its own run's threshold, with a 95% percentile CI from a bootstrap that
  resamples patients (B=1000, seed 42 by default).

Few-shot regimes (several repeats per fold)
- `fold-mean` / `fold-std` (fold=i): mean and std over the repeats of fold i.
- `aggregate-mean` / `aggregate-std`: mean and std over folds of the fold-means.
- `repeat-std`: mean over folds of fold-std, the spread due to the few-shot draw alone.
- `pooled` (repeat=r): out-of-fold pooling of repeat r, with its bootstrap CI.
- `pooled-mean`: mean over repeats of the pooled metric; its CI comes from the same bootstrap
  replicates (each replicate resamples patients once and averages over repeats).
- `pooled-std`: std over repeats of the pooled metric (the draw spread, no CI).

The bootstrap draws patients with replacement from the union of the pooled sets' patients and
keeps every image of a drawn patient, as many times as it was drawn. scikit-learn and scipy have
no cluster bootstrap, so the resampling lives here (bootstrap.py): each replicate is the set with
its patients' draw counts as weights, all replicates computed at once, and tests pin every
metric to scikit-learn's on the same resamples.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from progbench.errors import RunError
from progbench.evaluate.bootstrap import (
    RANKED,
    design_matrix,
    weighted_bootstrap,
)
from progbench.evaluate.metrics import (
    METRIC_NAMES,
    MetricValue,
    binary_metrics,
    evaluate_predictions,
)
from progbench.runs import FEWSHOT_REGIMES, Run, RunSpec

DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 42
CI_LEVEL = 0.95
# Metrics summarised over folds/repeats: the eight metrics and the threshold each run used.
SUMMARISED = (*METRIC_NAMES, "threshold")


@dataclass(frozen=True, order=True)
class GroupKey:
    task: str
    backbone: str
    weights: str
    strategy: str
    regime: str
    shots: int  # 0 for the full regime (kept an int so keys sort)
    scheme: str

    @classmethod
    def of(cls, spec: RunSpec) -> GroupKey:
        return cls(
            spec.task,
            spec.backbone,
            spec.weights,
            spec.strategy,
            spec.regime,
            spec.shots or 0,
            spec.scheme,
        )


@dataclass(frozen=True)
class EvaluatedRun:
    """A run's specification, its recomputed metrics, and its test predictions for pooling."""

    spec: RunSpec
    metrics: dict[str, dict[str, MetricValue]]
    test: pd.DataFrame  # columns patient_id, y_true, p_pos
    threshold: float
    threshold_rule: str
    run: Run | None = None


@dataclass(frozen=True)
class AggregateRow:
    level: str
    metric: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n_runs: int | None = None
    fold: int | None = None
    repeat: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PredictionSet:
    """Rows to score together; `threshold` is per row (pooled runs keep their own thresholds)."""

    patient_id: np.ndarray
    y_true: np.ndarray
    p_pos: np.ndarray
    threshold: np.ndarray


def evaluate_run(run: Run, threshold: str = "fixed:0.5") -> EvaluatedRun:
    metrics = evaluate_predictions(run.predictions, threshold)
    test = run.predictions.loc[
        run.predictions["split"] == "test", ["patient_id", "y_true", "p_pos"]
    ]
    first = next(iter(metrics.values()))
    return EvaluatedRun(
        spec=run.spec,
        metrics=metrics,
        test=test.reset_index(drop=True),
        threshold=float(first["threshold"]),  # type: ignore[arg-type]
        threshold_rule=str(first["threshold_rule"]),
        run=run,
    )


def pool(runs: Sequence[EvaluatedRun]) -> PredictionSet:
    """Concatenate the test predictions of `runs`, each row keeping its run's threshold."""
    parts = [r.test for r in runs]
    thresholds = [np.full(len(r.test), r.threshold) for r in runs]
    df = pd.concat(parts, ignore_index=True)
    return PredictionSet(
        patient_id=df["patient_id"].to_numpy(),
        y_true=df["y_true"].to_numpy(),
        p_pos=df["p_pos"].to_numpy(),
        threshold=np.concatenate(thresholds) if thresholds else np.empty(0),
    )


# ----------------------------------------------------------------------------------- bootstrap


def bootstrap_metrics(
    sets: Sequence[PredictionSet],
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    metrics: tuple[str, ...] = METRIC_NAMES,
) -> np.ndarray:
    """Metric values over patient-level bootstrap replicates: shape (n_boot, len(sets), len(metrics)).

    One draw of patients per replicate is applied to every set (the few-shot repeats of a fold
    share their test patients). Undefined values are NaN. The replicates are weighted copies of
    the sets, computed all at once (bootstrap.py); tests pin them to scikit-learn per replicate.
    """
    all_ids = np.concatenate([s.patient_id for s in sets]).astype(str) if sets else np.empty(0)
    universe = np.unique(all_ids)
    ranked = bool(RANKED & set(metrics))
    designs = [
        design_matrix(
            np.searchsorted(universe, s.patient_id.astype(str)),
            s.y_true,
            s.p_pos,
            s.threshold,
            len(universe),
            ranked,
        )
        for s in sets
    ]
    return weighted_bootstrap(designs, len(universe), n_boot, seed, metrics)


def percentile_ci(
    samples: np.ndarray, level: float = CI_LEVEL
) -> tuple[float | None, float | None]:
    """Percentile interval over the replicates where the metric is defined (None if none is)."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[~np.isnan(samples)]
    if len(samples) == 0:
        return None, None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


# ----------------------------------------------------------------------------------- summaries


def _defined(values: Sequence[MetricValue]) -> list[float]:
    return [float(v) for v in values if v is not None]


def _number(value: MetricValue) -> float | None:
    """A metric's value as AggregateRow holds it; the metrics aggregated are never text."""
    if isinstance(value, str):
        raise TypeError(f"metric value {value!r} is not a number")
    return value


def mean_std(values: Sequence[MetricValue]) -> tuple[float | None, float | None, int]:
    """Mean and sample std (ddof=1) of the defined values, and how many there were."""
    xs = _defined(values)
    mean = float(np.mean(xs)) if xs else None
    std = float(np.std(xs, ddof=1)) if len(xs) >= 2 else None
    return mean, std, len(xs)


def _check_unique(runs: Sequence[EvaluatedRun]) -> None:
    seen: dict[tuple[int, int | None], EvaluatedRun] = {}
    for r in runs:
        key = (r.spec.fold, r.spec.repeat)
        if key in seen:
            where = [str(x.run.path) if x.run else "?" for x in (seen[key], r)]
            raise RunError(
                f"two runs for the same fold {key[0]}"
                + (f", repeat {key[1]}" if key[1] is not None else "")
                + f" of one group: {where[0]} and {where[1]}",
                "Evaluate one run tree at a time, or remove the duplicate.",
            )
        seen[key] = r


def _test_value(r: EvaluatedRun, metric: str) -> MetricValue:
    return r.metrics.get("test", {}).get(metric)


def _pooled_rows(
    sets: list[PredictionSet], n_boot: int, seed: int, repeats: list[int | None], n_runs: list[int]
) -> tuple[list[AggregateRow], np.ndarray, list[dict[str, MetricValue]]]:
    points = [binary_metrics(s.y_true, s.p_pos, s.threshold) for s in sets]
    boot = bootstrap_metrics(sets, n_boot, seed) if n_boot > 0 else None
    rows: list[AggregateRow] = []
    for j, point in enumerate(points):
        for k, m in enumerate(METRIC_NAMES):
            value = _number(point[m])
            low, high = (None, None)
            if boot is not None and value is not None:
                low, high = percentile_ci(boot[:, j, k])
            rows.append(AggregateRow("pooled", m, value, low, high, n_runs[j], repeat=repeats[j]))
        for m in ("threshold", "n", "prevalence"):
            rows.append(
                AggregateRow("pooled", m, _number(point[m]), n_runs=n_runs[j], repeat=repeats[j])
            )
    return rows, boot if boot is not None else np.empty((0, len(sets), len(METRIC_NAMES))), points


def aggregate_group(
    runs: Sequence[EvaluatedRun], n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED
) -> list[AggregateRow]:
    """Aggregate rows for the runs of one group (see the module docstring for each level)."""
    if not runs:
        return []
    _check_unique(runs)
    runs = sorted(runs, key=lambda r: (r.spec.fold, r.spec.repeat or 0))
    rows: list[AggregateRow] = []
    if runs[0].spec.regime not in FEWSHOT_REGIMES:
        for m in SUMMARISED:
            mean, std, n = mean_std([_test_value(r, m) for r in runs])
            rows += [
                AggregateRow("aggregate-mean", m, mean, n_runs=n),
                AggregateRow("aggregate-std", m, std, n_runs=n),
            ]
        pooled, _, _ = _pooled_rows([pool(runs)], n_boot, seed, [None], [len(runs)])
        return rows + pooled

    folds = sorted({r.spec.fold for r in runs})
    repeats = sorted({r.spec.repeat for r in runs if r.spec.repeat is not None})
    fold_means: dict[str, list[MetricValue]] = {m: [] for m in SUMMARISED}
    fold_stds: dict[str, list[MetricValue]] = {m: [] for m in SUMMARISED}
    for fold in folds:
        in_fold = [r for r in runs if r.spec.fold == fold]
        for m in SUMMARISED:
            mean, std, n = mean_std([_test_value(r, m) for r in in_fold])
            fold_means[m].append(mean)
            fold_stds[m].append(std)
            rows += [
                AggregateRow("fold-mean", m, mean, n_runs=n, fold=fold),
                AggregateRow("fold-std", m, std, n_runs=n, fold=fold),
            ]
    for m in SUMMARISED:
        mean, std, n = mean_std(fold_means[m])
        spread, _, n_spread = mean_std(fold_stds[m])
        rows += [
            AggregateRow("aggregate-mean", m, mean, n_runs=n),
            AggregateRow("aggregate-std", m, std, n_runs=n),
            AggregateRow("repeat-std", m, spread, n_runs=n_spread),
        ]
    by_repeat = [[r for r in runs if r.spec.repeat == rep] for rep in repeats]
    sets = [pool(group) for group in by_repeat]
    pooled, boot, points = _pooled_rows(
        sets, n_boot, seed, list(repeats), [len(g) for g in by_repeat]
    )
    rows += pooled
    for k, m in enumerate(METRIC_NAMES):
        mean, std, n = mean_std([p[m] for p in points])
        low, high = (None, None)
        if mean is not None and len(boot):
            with warnings.catch_warnings():
                # Mean over repeats per replicate; one where every repeat is undefined is NaN
                # (numpy warns "Mean of empty slice" for it: that is the rule, not news).
                warnings.simplefilter("ignore", category=RuntimeWarning)
                per_replicate = np.nanmean(boot[:, :, k], axis=1)
            low, high = percentile_ci(per_replicate)
        rows += [
            AggregateRow("pooled-mean", m, mean, low, high, n_runs=n),
            AggregateRow("pooled-std", m, std, n_runs=n),
        ]
    return rows


def group_runs(runs: Sequence[EvaluatedRun]) -> dict[GroupKey, list[EvaluatedRun]]:
    groups: dict[GroupKey, list[EvaluatedRun]] = {}
    for r in runs:
        groups.setdefault(GroupKey.of(r.spec), []).append(r)
    return dict(sorted(groups.items()))
