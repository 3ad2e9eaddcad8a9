"""The `sklearn` strategy kind: a scikit-learn classifier named in YAML, fitted on the frozen
features through the LP path (its solver: progbench.train.estimators)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from progbench.errors import ConfigError
from progbench.models.strategies.base import Resolution, Strategy
from progbench.models.strategies.registry import register_kind

if TYPE_CHECKING:
    from progbench.models.loaders import LoadedBackbone
    from progbench.models.strategies.classifier import ClassifierModel


@register_kind("sklearn")
class SklearnEstimator(Strategy):
    """A scikit-learn classifier on the frozen features (see the module docstring)."""

    path = "features"
    counts_parameters = False

    def _resolve_parameters(self, base: dict[str, Any], names: list[str]) -> Resolution:
        return Resolution(**base, applicable=True, trainable_parameters=[], checked=True)

    def build(
        self, loaded: LoadedBackbone, num_classes: int = 2, seed: int | None = None
    ) -> ClassifierModel:
        raise ConfigError(
            f"{self.name} fits a scikit-learn estimator on cached features; it builds no "
            "torch classifier",
            "Train it with `progbench train --strategy " + self.name + "`.",
        )
