"""Pydantic models for every YAML file progbench reads: the single place input is validated.

One module per kind of file: tasks, models (backbones and strategy presets), sweeps, training
presets. Unknown keys are errors everywhere (StrictModel): a typo must not be silently ignored.
"""

from progbench.config.base import StrictModel, format_validation_error, parse_model, read_yaml
from progbench.config.models import (
    REGISTRY_NAME_PATTERN,
    AdapterKind,
    AdapterTargets,
    BackboneSpec,
    FeatureSpec,
    ProjectionSpec,
    StrategyKind,
    StrategySpec,
    TargetSpec,
)
from progbench.config.tasks import TaskConfig, load_task_yaml, task_from_options

__all__ = [
    "REGISTRY_NAME_PATTERN",
    "AdapterKind",
    "AdapterTargets",
    "BackboneSpec",
    "FeatureSpec",
    "ProjectionSpec",
    "StrategyKind",
    "StrategySpec",
    "StrictModel",
    "TargetSpec",
    "TaskConfig",
    "format_validation_error",
    "load_task_yaml",
    "parse_model",
    "read_yaml",
    "task_from_options",
]
