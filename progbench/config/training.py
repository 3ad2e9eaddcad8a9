"""Schema of progbench/configs/training/*.yaml: presets of the streamed PEFT/FFT trainer.

A preset sets any field of progbench.train.options.FinetuneOptions (unset fields keep the
dataclass defaults) plus per-task batch sizes. `TRAINING_PRESETS` (a config.registry.Registry:
`configs/training/` plus `$PROGBENCH_TRAINING_DIR`) finds and parses the files; progbench.train.presets.resolve_training turns a preset, a task and
overrides into FinetuneOptions. See docs/METHODOLOGY.md, "Training presets".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, ValidationInfo, field_validator

from progbench.config.base import StrictModel
from progbench.config.models import REGISTRY_NAME_PATTERN
from progbench.config.registry import CONFIGS_DIR, Registry

# Options whose null means something (the strategy's lr, the grid, the backbone's input side,
# the default cache, automatic workers); every other option needs a value when given.
NULLABLE = ("lr_backbone", "lr_head", "input_size", "cache_dir", "workers")


class TrainingOptions(StrictModel):
    """The FinetuneOptions fields, each optional: only the ones given are applied.

    `model_fields_set` tells a field given as null (e.g. `lr_head: null`, the grid) from one
    left out; tests/test_training_presets.py checks these fields match FinetuneOptions'.
    """

    epochs: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    accumulate: int | None = Field(default=None, ge=1)
    lr_backbone: float | None = Field(default=None, gt=0)
    lr_head: float | None = Field(default=None, gt=0)
    head_lr_grid: tuple[float, ...] | None = Field(default=None, min_length=1)
    weight_decay: float | None = Field(default=None, ge=0)
    warmup_epochs: int | None = Field(default=None, ge=0)
    schedule: Literal["plateau", "cosine"] | None = None
    plateau_patience: int | None = Field(default=None, ge=1)
    plateau_factor: float | None = Field(default=None, gt=0, lt=1)
    min_lr: float | None = Field(default=None, ge=0)
    patience: int | None = Field(default=None, ge=1)
    min_epochs: int | None = Field(default=None, ge=0)
    eval_every: int | None = Field(default=None, ge=1)
    augment: bool | None = None
    compile: bool | None = None
    device: Literal["auto", "cpu", "cuda"] | None = None
    dtype: Literal["auto", "fp32", "bf16"] | None = None
    image_size: int | None = Field(default=None, ge=1)
    input_size: int | None = Field(default=None, ge=1)
    cache_dir: Path | None = None
    workers: int | None = Field(default=None, ge=1)

    @field_validator("*")
    @classmethod
    def _a_value_when_given(cls, v: Any, info: ValidationInfo) -> Any:
        # Only given fields are validated: this refuses an explicit null, not a left-out field.
        if v is None and info.field_name not in NULLABLE:
            raise ValueError("cannot be null; give a value or leave the key out")
        return v

    @field_validator("head_lr_grid")
    @classmethod
    def _positive_distinct(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(lr <= 0 for lr in v) or len(set(v)) != len(v):
            raise ValueError("rates must be > 0 and distinct")
        return v

    @field_validator("min_lr")
    @classmethod
    def _below_every_start(cls, v: float, info: ValidationInfo) -> float:
        # lr_backbone, lr_head and head_lr_grid are declared before min_lr: validated already.
        if not v:
            return v
        d = info.data
        starts = [d["lr_head"]] if d.get("lr_head") else [*(d.get("head_lr_grid") or ())]
        starts += [d["lr_backbone"]] if d.get("lr_backbone") else []
        low = [f"{lr:g}" for lr in starts if lr <= v]
        if low:
            raise ValueError(f"must be below every starting lr; not below: {', '.join(low)}")
        return v

    def given(self) -> dict[str, Any]:
        """The fields this file or mapping sets, with their values (nulls included)."""
        names = set(TrainingOptions.model_fields) & self.model_fields_set
        return {name: getattr(self, name) for name in sorted(names)}


class TrainingPreset(TrainingOptions):
    """One training preset: a name, what it is for, option values and batch sizes per task."""

    name: str = Field(pattern=REGISTRY_NAME_PATTERN)
    description: str = ""
    # Batch size per task name (a task YAML's `name`, e.g. afc); other tasks get `batch_size`.
    batch_size_by_task: dict[str, PositiveInt] = Field(default_factory=dict)


TRAINING_DIR_ENV = "PROGBENCH_TRAINING_DIR"
TRAINING_PRESETS = Registry(
    CONFIGS_DIR / "training",
    TRAINING_DIR_ENV,
    TrainingPreset,
    label="training preset",
    hint="See docs/METHODOLOGY.md (Training presets) and progbench/configs/training/ for examples.",
)


def list_training_presets() -> list[str]:
    return TRAINING_PRESETS.names()


def get_training_preset(name: str) -> TrainingPreset:
    """One preset, validated (errors name its file), cached by the file's identity."""
    return TRAINING_PRESETS.load(name)
