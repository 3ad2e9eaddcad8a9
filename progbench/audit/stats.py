"""The audit's statistics, all from the project's evaluator and scikit-learn: MCC at a fixed
threshold with a patient-bootstrap 95% CI (progbench.evaluate), out-of-fold probabilities of a
scikit-learn classifier under patient-grouped, stratified cross-validation, and the permutation
p-value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from progbench.errors import SplitError
from progbench.evaluate.aggregate import PredictionSet, bootstrap_metrics, percentile_ci
from progbench.evaluate.metrics import binary_metrics

THRESHOLD = 0.5  # the heads are class-weighted: 0.5 is the balanced operating point


@dataclass(frozen=True)
class Scored:
    """MCC of predictions at THRESHOLD, with its patient-bootstrap percentile CI."""

    mcc: float
    ci: tuple[float | None, float | None]
    n: int

    @property
    def excludes_zero(self) -> bool:
        """The CI lies above 0: better than chance at the 5% level."""
        return self.ci[0] is not None and self.ci[0] > 0

    def to_json(self) -> dict[str, Any]:
        return {"mcc": self.mcc, "ci": list(self.ci), "n": self.n}


def score(patient_ids: np.ndarray, y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> Scored:
    """MCC of `p` against `y` and its 95% CI over `n_boot` patient-bootstrap replicates."""
    y = np.asarray(y).astype(np.int64)
    p = np.asarray(p, dtype=np.float64)
    pset = PredictionSet(np.asarray(patient_ids), y, p, np.full(len(y), THRESHOLD))
    samples = bootstrap_metrics([pset], n_boot=n_boot, seed=seed, metrics=("mcc",))[:, 0, 0]
    return Scored(mcc(y, p), percentile_ci(samples), len(y))


def mcc(y: np.ndarray, p: np.ndarray) -> float:
    """MCC of P(positive) `p` at THRESHOLD (scikit-learn's, through the evaluator)."""
    return float(binary_metrics(y, p, THRESHOLD, metrics=("mcc",))["mcc"] or 0.0)


def grouped_oof(
    estimator: Any, x: Any, y: np.ndarray, groups: np.ndarray, folds: int, seed: int
) -> np.ndarray:
    """Out-of-fold P(positive) of `estimator` under StratifiedGroupKFold: no patient is ever
    in the training and the test part of one fold."""
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    n_groups = len(np.unique(groups))
    k = min(folds, n_groups)
    if k < 2 or len(np.unique(y)) < 2:
        raise SplitError(
            f"cross-validation needs two classes and two patients ({n_groups} patients)",
            "Audit a task with both outcome classes and more patients.",
        )
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    try:
        with threadpool_limits(1):  # small problems: threaded BLAS only adds contention
            p = cross_val_predict(estimator, x, y, groups=groups, cv=cv, method="predict_proba")
    except ValueError as err:  # e.g. a training part left with one class
        raise SplitError(
            f"patient-grouped cross-validation failed: {err}",
            "Audit a task with more patients of each class.",
        ) from err
    return p[:, 1]


def permutation_p(observed: float, null: np.ndarray) -> float:
    """(1 + #{null >= observed}) / (1 + n): never 0, exact under the null (Phipson & Smyth
    2010)."""
    null = np.asarray(null, dtype=float)
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + len(null)))
