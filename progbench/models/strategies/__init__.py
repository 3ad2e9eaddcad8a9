"""Adaptation strategies as objects, one class per kind (LP, FFT, LoRA, VeRA, IA3, BitFit, any peft
method named in its preset (`peft`), and scikit-learn estimators on the features), bound to YAML
presets through one registry. See
`base.Strategy` for what a strategy does; progbench.train.solvers fits the feature-path kinds.

`build_classifier(loaded, "lora-r8")` and `resolve(spec, "lora-r8", encoder)` are the short
forms most code needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from progbench.config import BackboneSpec, StrategySpec

# The built-in kinds register themselves on import (registry.register_kind).
from progbench.models.strategies import kinds, peft, sklearn  # noqa: F401
from progbench.models.strategies.base import Resolution, Strategy
from progbench.models.strategies.registry import get_strategy, register_kind, strategy_kinds
from progbench.models.strategies.tensors import HEAD_NAME

if TYPE_CHECKING:
    from torch import nn

    from progbench.models.loaders import LoadedBackbone
    from progbench.models.strategies.classifier import ClassifierModel


def __getattr__(name: str) -> Any:
    # ClassifierModel is an nn.Module: it loads torch, which reading strategies does not need.
    if name == "ClassifierModel":
        from progbench.models.strategies.classifier import ClassifierModel

        return ClassifierModel
    raise AttributeError(f"module 'progbench.models.strategies' has no attribute {name!r}")


def resolve(
    spec: BackboneSpec, strategy: str | StrategySpec | Strategy, encoder: nn.Module | None = None
) -> Resolution:
    """Whether `strategy` applies to `spec`; with an encoder, every target is checked on it."""
    return get_strategy(strategy).resolve(spec, encoder)


def build_classifier(
    loaded: LoadedBackbone,
    strategy: str | StrategySpec | Strategy,
    num_classes: int = 2,
    seed: int | None = None,
) -> ClassifierModel:
    """Wrap `loaded.encoder` for training with `strategy` (the encoder is changed in place)."""
    return get_strategy(strategy).build(loaded, num_classes, seed)


__all__ = [
    "HEAD_NAME",
    "ClassifierModel",
    "Resolution",
    "Strategy",
    "build_classifier",
    "get_strategy",
    "register_kind",
    "resolve",
    "strategy_kinds",
]
