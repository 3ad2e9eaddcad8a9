"""The metric registry: every reported metric's name, label, direction and scikit-learn function.

Evaluation, the report and the CLI read names, labels and directions from here only. The values
themselves are computed by `progbench.evaluate.metrics.binary_metrics` (the scalar path, which
calls the functions named here) and by the vectorised bootstrap, which tests pin to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from progbench.errors import ConfigError


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    higher_is_better: bool
    sklearn: str  # the scikit-learn function (or formula) behind the value
    primary: bool = False


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("mcc", "MCC", True, "sklearn.metrics.matthews_corrcoef", primary=True),
        Metric("pr_auc", "PR-AUC", True, "sklearn.metrics.average_precision_score", primary=True),
        Metric("auroc", "AUROC", True, "sklearn.metrics.roc_auc_score"),
        Metric(
            "balanced_accuracy",
            "balanced accuracy",
            True,
            "sklearn.metrics.balanced_accuracy_score",
        ),
        Metric(
            "sensitivity",
            "sensitivity",
            True,
            "recall of class 1 (precision_recall_fscore_support)",
        ),
        Metric(
            "specificity",
            "specificity",
            True,
            "recall of class 0 (precision_recall_fscore_support)",
        ),
        Metric("f1", "F1", True, "F1 of class 1 (precision_recall_fscore_support)"),
        Metric("brier", "Brier score", False, "sklearn.metrics.brier_score_loss"),
    )
}
# The reported metrics, primary first (MCC, then PR-AUC: the reference study's two).
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
PRIMARY_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS.values() if m.primary)


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}", f"Choose one of: {', '.join(METRICS)}.")
    return METRICS[name]
