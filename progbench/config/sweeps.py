"""Sweep files: a whole study (tasks x backbones x strategies x regimes) as one YAML file.

Names are checked against the registries when the sweep is loaded (progbench.sweep.spec), and
every key here is validated before any work starts: an unknown key, a bad value or an unknown
name is refused with the file, the key and the fix.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from progbench.config.base import StrictModel

Family = Literal["lp", "peft", "fft"]
# Resource sets: the three strategy families, plus the store-building stages of a sweep.
ResourceName = Literal["images", "extract", "lp", "peft", "fft"]
SCHEME_NAMES = ("auto", "loco", "kfold", "holdout")


class CohortSize(StrictModel):
    """A cohort's size as its dataset table reports it: lets `plan` count runs and project cost
    for data that is not on this machine."""

    images: int = Field(gt=0)
    patients: int = Field(gt=0)
    centers: int = Field(default=1, gt=0)
    prevalence: float = Field(gt=0, lt=1)


class TaskEntry(StrictModel):
    """A task YAML (path relative to the sweep's root), optionally with its declared size and
    the command that prepares it."""

    path: str
    name: str | None = None  # the task's name when its file does not exist yet
    cohort: CohortSize | None = None
    prepare: str | None = None  # e.g. "progbench prepare aiforcovid RAW --out data/afc"


class FewShotSpec(StrictModel):
    shots: list[int] = Field(min_length=1)
    repeats: int = Field(default=5, ge=1)
    per_center: bool = False
    strategies: list[str] | None = None  # default: every strategy of the sweep

    @field_validator("shots")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("every k must be a positive integer")
        return sorted(set(v))


class ResourceSpec(StrictModel):
    """What one SLURM job of a strategy family asks for."""

    gpus: int = Field(default=0, ge=0)
    cpus: int = Field(default=1, ge=1)
    mem_gb: float = Field(default=8.0, gt=0)
    time_min: int = Field(default=60, ge=1)


def _default_resources() -> dict[ResourceName, ResourceSpec]:
    return {
        "images": ResourceSpec(gpus=0, cpus=8, mem_gb=16, time_min=120),
        "extract": ResourceSpec(gpus=1, cpus=8, mem_gb=32, time_min=120),
        "lp": ResourceSpec(gpus=0, cpus=2, mem_gb=8, time_min=30),
        "peft": ResourceSpec(gpus=1, cpus=8, mem_gb=32, time_min=240),
        "fft": ResourceSpec(gpus=1, cpus=8, mem_gb=48, time_min=480),
    }


class SlurmSpec(StrictModel):
    partition: str | None = None
    array_parallelism: int = Field(default=16, ge=1)
    max_requeues: int = Field(default=3, ge=0)
    # Seconds before the time limit at which a job checkpoints and requeues (SLURM may signal
    # up to 30 s early); default min(120, time_min * 60 - 40).
    signal_delay_s: int | None = Field(default=None, ge=1)
    extra: dict[str, str | int | float | bool] = Field(default_factory=dict)


class ReportSpec(StrictModel):
    metrics: list[str] = Field(default_factory=lambda: ["mcc", "pr_auc"])
    n_boot: int = Field(default=1000, ge=0)
    threshold: str = "fixed:0.5"


class LimitSpec(StrictModel):
    """Run only part of a family's cells (quick studies): the first `folds` folds."""

    folds: int | None = Field(default=None, ge=1)


class SweepConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    runs: str = "runs"  # run tree root, relative to the sweep's root
    cache: str | None = None  # store root; default $PROGBENCH_CACHE, else ~/.cache/progbench
    tasks: list[str | TaskEntry] = Field(min_length=1)
    backbones: list[str] = Field(min_length=1)  # names, or the groups all | cnn | fm
    strategies: list[str] = Field(min_length=1)  # names, or all
    weights: str | dict[str, str] = "pretrained"  # pretrained | random | path, or per backbone
    weights_dir: str | None = None  # local pretrained weights (progbench weights fetch)
    scheme: str | list[str] = "auto"
    folds: int = Field(default=5, ge=2)
    val_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    seed: int = 42
    fewshot: FewShotSpec | None = None
    probe: str = "default"  # LP probe preset
    train: dict[str, Any] = Field(default_factory=dict)  # overrides of train's defaults
    strategy_train: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per strategy
    limits: dict[Family, LimitSpec] = Field(default_factory=dict)
    exclude: list[str] = Field(default_factory=list)  # glob patterns over cell ids
    resources: dict[ResourceName, ResourceSpec] = Field(default_factory=_default_resources)
    slurm: SlurmSpec = Field(default_factory=SlurmSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    # `progbench audit` of every (task, backbone) at the sweep's finish, into
    # <runs>/<task>/audit/<backbone>/audit.json (the report shows them).
    audit: bool = False

    @field_validator("scheme")
    @classmethod
    def _schemes(cls, v: str | list[str]) -> str | list[str]:
        for s in [v] if isinstance(v, str) else v:
            if s not in SCHEME_NAMES:
                raise ValueError(f"unknown scheme {s!r}; use one of {', '.join(SCHEME_NAMES)}")
        return v

    @model_validator(mode="after")
    def _resources_complete(self) -> SweepConfig:
        merged = _default_resources() | dict(self.resources)
        object.__setattr__(self, "resources", merged)
        return self

    @property
    def schemes(self) -> list[str]:
        return [self.scheme] if isinstance(self.scheme, str) else list(self.scheme)
