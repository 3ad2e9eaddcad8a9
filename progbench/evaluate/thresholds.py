"""Threshold policies: how the decision threshold on p_pos is chosen.

- `fixed:<t>` (default `fixed:0.5`): t, with 0 <= t <= 1.
- `val-mcc`: the validation score that maximises MCC.
- `val-youden`: the validation score that maximises Youden's J = sensitivity + specificity - 1.

`choose_threshold` receives the validation labels and scores only: by construction no policy can
read test labels. Candidates are the distinct validation scores (a row is positive when
p_pos >= threshold); among equally good candidates the one closest to 0.5 wins (then the higher).
A val-* policy on a validation part with a single class falls back to 0.5 and says so in its rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.metrics import confusion_matrix_at_thresholds

from progbench.errors import ConfigError, RunError

PolicyKind = Literal["fixed", "val-mcc", "val-youden"]
POLICY_NAMES = ("fixed:<t>", "val-mcc", "val-youden")
DEFAULT_POLICY = "fixed:0.5"
_FALLBACK = 0.5


@dataclass(frozen=True)
class ThresholdPolicy:
    kind: PolicyKind
    value: float | None = None  # fixed only

    @property
    def name(self) -> str:
        return f"fixed:{self.value:g}" if self.kind == "fixed" else self.kind


@dataclass(frozen=True)
class ThresholdChoice:
    value: float
    rule: str  # what was applied, e.g. "val-mcc" or "val-mcc (fallback 0.5: ...)"


def parse_threshold_policy(text: str | ThresholdPolicy) -> ThresholdPolicy:
    if isinstance(text, ThresholdPolicy):
        return text
    raw = text.strip().lower()
    if raw in ("val-mcc", "val-youden"):
        return ThresholdPolicy(kind=raw)  # type: ignore[arg-type]
    if raw == "fixed":
        return ThresholdPolicy(kind="fixed", value=_FALLBACK)
    if raw.startswith("fixed:"):
        try:
            value = float(raw.split(":", 1)[1])
        except ValueError:
            value = float("nan")
        if 0.0 <= value <= 1.0:
            return ThresholdPolicy(kind="fixed", value=value)
    raise ConfigError(
        f"unknown threshold policy {text!r}",
        "Use fixed:<t> with 0 <= t <= 1 (e.g. fixed:0.5), val-mcc or val-youden.",
    )


def threshold_criterion(
    kind: PolicyKind, y_val: np.ndarray, p_val: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Criterion value at every candidate threshold (distinct val scores, decreasing).

    The counts come from scikit-learn's `confusion_matrix_at_thresholds`; evaluating MCC or J
    from them is one vectorised pass instead of one sklearn call per candidate (tests check
    both agree with sklearn's metrics). Reported metrics are always sklearn's own.
    """
    tns, fps, fns, tps, thresholds = confusion_matrix_at_thresholds(
        np.asarray(y_val).astype(np.int64), np.asarray(p_val, dtype=np.float64), pos_label=1
    )
    if kind == "val-youden":
        crit = tps / (tps + fns) + tns / (tns + fps) - 1.0
    elif kind == "val-mcc":
        denom = np.sqrt((tps + fps) * (tps + fns) * (tns + fps) * (tns + fns))
        with np.errstate(invalid="ignore", divide="ignore"):
            crit = np.where(denom > 0, (tps * tns - fps * fns) / denom, 0.0)
    else:
        raise ValueError(f"no criterion for policy {kind!r}")
    return crit, thresholds


def choose_threshold(
    policy: ThresholdPolicy, y_val: np.ndarray, p_val: np.ndarray
) -> ThresholdChoice:
    """The threshold for a run, from its validation labels and scores only."""
    if policy.kind == "fixed":
        assert policy.value is not None
        return ThresholdChoice(value=policy.value, rule=policy.name)
    y_val = np.asarray(y_val)
    if len(y_val) == 0:
        raise RunError(
            f"threshold policy {policy.name} needs validation predictions, but there are no "
            "rows with split == 'val'",
            "Use --threshold fixed:0.5, or write the validation predictions (split 'val') too.",
        )
    classes = np.unique(y_val)
    if len(classes) < 2:
        return ThresholdChoice(
            value=_FALLBACK,
            rule=f"{policy.name} (fallback fixed:0.5: validation has only class {int(classes[0])})",
        )
    crit, thresholds = threshold_criterion(policy.kind, y_val, p_val)
    best = np.flatnonzero(crit >= crit.max() - 1e-12)
    # Closest to 0.5, then the higher threshold: lexsort uses the last key as primary.
    order = np.lexsort((-thresholds[best], np.abs(thresholds[best] - 0.5)))
    return ThresholdChoice(value=float(thresholds[best[order[0]]]), rule=policy.name)
