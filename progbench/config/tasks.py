"""Task YAML files: a manifest, an outcome column and its positive value."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import field_validator

from progbench.config.base import StrictModel, label_text, parse_model, read_yaml
from progbench.config.keys import DESCRIPTIVE, IDENTITY, Identity, Recorded


class TaskConfig(StrictModel):
    """A prediction task: which manifest, which outcome column, which value is positive.

    Its identity fields are a run's `settings.task` (train.plan.task_definition); its name places
    the run in the tree, and the manifest enters as the fingerprint of the fold's images and
    labels, not as a path."""

    name: Annotated[str, Identity(part="name")]
    manifest: Annotated[Path, Recorded("its images and labels are in the data fingerprint")]
    outcome: Annotated[str, IDENTITY]
    positive: Annotated[str, IDENTITY]
    # needed only when the column has more than two values
    negative: Annotated[list[str] | None, IDENTITY] = None
    # A prognosis outcome belongs to a patient: images of one patient with different labels are
    # an error unless the outcome is declared per image.
    per_image_labels: Annotated[bool, IDENTITY] = False
    description: Annotated[str, DESCRIPTIVE] = ""

    @field_validator("positive", mode="before")
    @classmethod
    def _positive_as_text(cls, v: Any) -> str:
        # YAML reads `positive: 1` as int and `positive: yes` as bool; compare as text.
        return label_text(v)

    @field_validator("negative", mode="before")
    @classmethod
    def _negative_as_text(cls, v: Any) -> list[str] | None:
        if v is None:
            return None
        return [label_text(x) for x in (v if isinstance(v, list) else [v])]


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
    per_image_labels: bool = False,
) -> TaskConfig:
    manifest = Path(manifest).resolve()
    return TaskConfig(
        name=name or f"{manifest.parent.name}-{outcome}",
        manifest=manifest,
        outcome=outcome,
        positive=positive,
        negative=negative,
        per_image_labels=per_image_labels,
    )
