"""Pydantic models for every YAML file progbench reads: the single place input is validated.

One module per kind of file: tasks, models (backbones and strategy presets), probes (LP probe
presets), sweeps, training presets; variants (feature variants) is shared by several. Unknown
keys are errors everywhere (StrictModel): a typo must not be silently ignored.
"""

from progbench.config.base import (
    StrictModel,
    format_validation_error,
    label_text,
    parse_model,
    read_yaml,
)
from progbench.config.models import (
    REGISTRY_NAME_PATTERN,
    AdapterKind,
    AdapterTargets,
    BackboneSpec,
    FeatureSpec,
    PeftMethod,
    ProjectionSpec,
    StrategyKind,
    StrategySpec,
    TargetSpec,
)
from progbench.config.tasks import TaskConfig, load_task_yaml, task_from_options
from progbench.config.variants import DEFAULT_VARIANT, TokenLayout, Variant, VariantGrid

__all__ = [
    "DEFAULT_VARIANT",
    "REGISTRY_NAME_PATTERN",
    "AdapterKind",
    "AdapterTargets",
    "BackboneSpec",
    "FeatureSpec",
    "PeftMethod",
    "ProjectionSpec",
    "StrategyKind",
    "StrategySpec",
    "StrictModel",
    "TargetSpec",
    "TaskConfig",
    "TokenLayout",
    "Variant",
    "VariantGrid",
    "format_validation_error",
    "label_text",
    "load_task_yaml",
    "parse_model",
    "read_yaml",
    "task_from_options",
]
