"""Pydantic models for every YAML file progbench reads: the single place input is validated.

Sections: tasks (here), backbones and strategies (models registry), sweeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from progbench.errors import ConfigError


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a YAML file must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source} is invalid:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  - {loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"YAML file not found: {path}", "Check the path.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def parse_model(model: type[BaseModel], data: dict[str, Any], source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from err


# --------------------------------------------------------------------------------------- tasks


class TaskConfig(StrictModel):
    """A prediction task: which manifest, which outcome column, which value is positive."""

    name: str
    manifest: Path
    outcome: str
    positive: str
    negative: list[str] | None = None  # needed only when the column has more than two values
    description: str = ""

    @field_validator("positive", mode="before")
    @classmethod
    def _positive_as_text(cls, v: Any) -> str:
        # YAML reads `positive: 1` as int and `positive: yes` as bool; compare as text.
        return _as_text(v)

    @field_validator("negative", mode="before")
    @classmethod
    def _negative_as_text(cls, v: Any) -> list[str] | None:
        if v is None:
            return None
        return [_as_text(x) for x in (v if isinstance(v, list) else [v])]


def _as_text(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def load_task_yaml(path: str | Path) -> TaskConfig:
    """Read a task YAML. A relative `manifest` is resolved against the YAML's folder."""
    path = Path(path)
    data = read_yaml(path)
    task = parse_model(TaskConfig, data, str(path))
    manifest = task.manifest if task.manifest.is_absolute() else path.parent / task.manifest
    return task.model_copy(update={"manifest": manifest.resolve()})


def task_from_options(
    manifest: str | Path,
    outcome: str,
    positive: str,
    negative: list[str] | None = None,
    name: str | None = None,
) -> TaskConfig:
    manifest = Path(manifest).resolve()
    return TaskConfig(
        name=name or f"{manifest.parent.name}-{outcome}",
        manifest=manifest,
        outcome=outcome,
        positive=positive,
        negative=negative,
    )
