"""The solver and the predictor of each feature-path strategy kind, in one table.

A feature-path strategy (progbench.models.strategies, `path = "features"`) is fitted by the feature
path (progbench.train.features) with its kind's solver, and applied to new images by
`progbench predict` with its kind's predictor: the linear probe with a probe preset
(progbench/configs/probes/), the scikit-learn kind with its YAML estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from progbench.errors import ConfigError
from progbench.models.strategies import Strategy
from progbench.models.strategies.kinds import LinearProbe
from progbench.models.strategies.sklearn import SklearnEstimator
from progbench.train.estimators import SklearnSolver, sklearn_predictor
from progbench.train.heads import FeatureSolver, Predictor
from progbench.train.probe import ProbeConfig, probe_predictor

_SOLVERS: dict[type[Strategy], Callable[[Strategy, str], FeatureSolver]] = {
    LinearProbe: lambda _s, probe: ProbeConfig.preset(probe),
    SklearnEstimator: lambda s, _probe: SklearnSolver(s.spec),
}
_PREDICTORS: dict[type[Strategy], Callable[[Path, dict[str, Any]], Predictor]] = {
    LinearProbe: lambda run_dir, _extra: probe_predictor(run_dir),
    SklearnEstimator: sklearn_predictor,
}


def _lookup(table: dict[type[Strategy], Any], strategy: Strategy) -> Any:
    for cls in type(strategy).__mro__:  # a user's subclass of a kind gets the kind's entry
        if cls in table:
            return table[cls]
    raise ConfigError(
        f"{strategy.name} is trained by streaming images, not on cached features",
        "Use `progbench train --strategy NAME`: it picks the training path.",
    )


def solver_for(strategy: Strategy, probe: str) -> FeatureSolver:
    """The solver that fits `strategy` (`probe`: the LP probe preset)."""
    return _lookup(_SOLVERS, strategy)(strategy, probe)


def predictor_for(strategy: Strategy, run_dir: Path, extra: dict[str, Any]) -> Predictor:
    """A finished feature-path run's head: raw variant features -> p_pos."""
    return _lookup(_PREDICTORS, strategy)(run_dir, extra)
