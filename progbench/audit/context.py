"""What every check reads: the task, its splits as row indices, the audit's settings, and the
linear probes of the audited and the random-init features, each computed once and shared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from progbench.audit.lp import FoldRows, probe_oof
from progbench.audit.stats import Scored, score
from progbench.data.manifest import Task
from progbench.train.probe import ProbeConfig

RANDOM = "random"


@dataclass(frozen=True)
class AuditConfig:
    """The audit's settings; thresholds are documented in docs/METHODOLOGY.md, "Audit"."""

    n_boot: int = 1000  # patient-bootstrap replicates of every CI
    seed: int = 42
    permutations: int = 50  # label_permutation repeats
    alpha: float = 0.05  # label_permutation: flag when p > alpha
    cv_folds: int = 5  # patient-grouped CV of the metadata and centre classifiers
    chance_mcc: float = 0.2  # random_init_control: flag when its CI's lower end exceeds this
    probe: str = "default"  # LP probe preset (its first feature variant is probed)


@dataclass(frozen=True)
class Probed:
    """A linear probe over every fold: pooled test rows, their P(positive) and the MCC."""

    weights: str
    store: str  # feature store key
    rows: np.ndarray
    p_pos: np.ndarray
    scored: Scored

    def to_json(self) -> dict[str, Any]:
        return {"weights": self.weights, "feature_store": self.store} | self.scored.to_json()


# weights -> (features aligned with the manifest's rows, feature store key)
FeatureSource = Callable[[str], tuple[np.ndarray, str]]


@dataclass
class AuditContext:
    task: Task
    backbone: str
    weights: str
    scheme: str
    folds: list[FoldRows]
    config: AuditConfig
    features: FeatureSource
    _features: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    _probes: dict[str, Probed] = field(default_factory=dict)

    @property
    def y(self) -> np.ndarray:
        return self.task.labels

    @property
    def patients(self) -> np.ndarray:
        return self.task.manifest.frame["patient_id"].astype(str).to_numpy()

    @property
    def probe_config(self) -> ProbeConfig:
        return ProbeConfig.preset(self.config.probe)

    @property
    def feature_stores(self) -> dict[str, str]:
        """weights -> key of every feature store the checks read."""
        return {w: key for w, (_, key) in self._features.items()}

    def feature_array(self, weights: str) -> tuple[np.ndarray, str]:
        """The features of `weights` (extracted once, through the feature-store machinery)."""
        if weights not in self._features:
            self._features[weights] = self.features(weights)
        return self._features[weights]

    def probe(self, weights: str) -> Probed:
        """The LP of `weights`' features over every fold, scored on the pooled test rows."""
        if weights not in self._probes:
            x, key = self.feature_array(weights)
            rows, p = probe_oof(x, self.y, self.folds, self.probe_config)
            cfg = self.config
            scored = score(self.patients[rows], self.y[rows], p, cfg.n_boot, cfg.seed)
            self._probes[weights] = Probed(weights, key, rows, p, scored)
        return self._probes[weights]
