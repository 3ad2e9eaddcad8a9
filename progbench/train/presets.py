"""From a training preset, a task and overrides to the trainer's FinetuneOptions.

The order: FinetuneOptions' defaults, then the preset's fields, then its batch size for the task
(`batch_size_by_task`), then the overrides (the flags given on the command line, a sweep's
`train:` mapping). The merged values are validated again, so a combination no file holds (e.g.
a `min_lr` above an overridden head lr) is refused too. The preset's name is recorded with the
runs; its values are part of their identity through the resolved options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from progbench.config import parse_model
from progbench.config.training import TrainingOptions, get_training_preset, list_training_presets
from progbench.train.options import FinetuneOptions

DEFAULT_PRESET = "default"
__all__ = ["DEFAULT_PRESET", "list_training_presets", "preset_values", "resolve_training"]


def preset_values(preset: str, task: str | None = None) -> dict[str, Any]:
    """The option values a preset sets for `task` (its batch size for the task included)."""
    spec = get_training_preset(preset)
    values = spec.given()
    if task is not None and task in spec.batch_size_by_task:
        values["batch_size"] = spec.batch_size_by_task[task]
    return values


def resolve_training(
    preset: str = DEFAULT_PRESET,
    task: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str = "the training overrides",
) -> FinetuneOptions:
    """The trainer's options for `task` under `preset`, with `overrides` (FinetuneOptions field
    names; `source` names where they came from in errors) applied last."""
    given = parse_model(TrainingOptions, dict(overrides or {}), source).given()
    values = preset_values(preset, task) | given
    merged = dataclasses.asdict(FinetuneOptions()) | values
    merged.pop("preset")
    final = parse_model(TrainingOptions, merged, f"training preset {preset!r} with {source}")
    return FinetuneOptions(**final.given(), preset=preset)
