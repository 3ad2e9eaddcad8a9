"""One task name, one data set, per runs tree.

The first `train` (or `sweep run`) of a task in a runs tree writes `<runs>/<task>/task.json`: the
task's definition and, per image, its patient, centre and label. A later call whose task of the
same name holds other data (another manifest prepared under the same name, relabelled images,
another outcome) is refused before any store is built or any run written, with the differences in
words, so runs of two data sets never mix under one name. Paths may change (a moved folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progbench.atomic import atomic_write_json
from progbench.data.manifest import Task
from progbench.errors import ConfigError

RECORD_NAME = "task.json"
RECORD_FORMAT = 1
SHOWN_IDS = 5  # image ids named per difference


@dataclass(frozen=True)
class TaskData:
    """What a task's runs depend on: its definition and, per image, (patient, centre, label)."""

    name: str
    manifest: str
    definition: dict[str, Any]
    images: dict[str, tuple[str, str, int]]

    @classmethod
    def of(cls, task: Task) -> TaskData:
        f = task.manifest.frame
        images = {
            str(i): (str(p), str(c), int(y))
            for i, p, c, y in zip(
                f["image_id"], f["patient_id"], f["center"], task.labels, strict=True
            )
        }
        c = task.config
        definition = {"outcome": c.outcome, "positive": c.positive, "negative": c.negative}
        return cls(c.name, str(task.manifest.source), definition, images)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "task": self.name,
            "manifest": self.manifest,
            "definition": self.definition,
            "images": {k: list(v) for k, v in self.images.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskData:
        images = {k: (str(v[0]), str(v[1]), int(v[2])) for k, v in data["images"].items()}
        return cls(data["task"], data["manifest"], data["definition"], images)


def record_path(runs_root: Path, task_name: str) -> Path:
    return Path(runs_root) / task_name / RECORD_NAME


def claim_task(task: Task, runs_root: Path) -> None:
    """Record the task's data in the runs tree, or refuse it if the tree holds other data."""
    if not check_task(task, runs_root):
        atomic_write_json(record_path(runs_root, task.config.name), TaskData.of(task).to_json())


def check_task(task: Task, runs_root: Path) -> bool:
    """Whether the runs tree has a record of this task (with the same data); refused if other."""
    path = record_path(runs_root, task.config.name)
    current = TaskData.of(task)
    if not path.is_file():
        return False
    try:
        recorded = TaskData.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise ConfigError(
            f"{path} is not a task record ({err})",
            "Remove it; the next train or sweep run writes it again from the task.",
        ) from err
    differences = describe_differences(recorded, current)
    if not differences:
        return True
    name = task.config.name
    raise ConfigError(
        f"task {name!r} already has runs in {Path(runs_root) / name} made from other data:\n"
        f"  A (recorded, {path}): {recorded.manifest}\n"
        f"  B (now): {current.manifest}\n" + "\n".join(f"  - {d}" for d in differences),
        f"Give this data another task name (the task YAML's `name`), or another --runs folder; "
        f"or, to start this task over, remove {Path(runs_root) / name} (--force does not mix "
        "two data sets under one name).",
    )


def describe_differences(a: TaskData, b: TaskData) -> list[str]:
    """What differs between two tasks' data, in words (empty: the same data)."""
    out = [
        f"{key} differs: A {a.definition[key]!r}, B {b.definition[key]!r}"
        for key in ("outcome", "positive", "negative")
        if a.definition.get(key) != b.definition.get(key)
    ]
    if len(a.images) != len(b.images):
        out.append(f"manifest A has {len(a.images)} images, B has {len(b.images)}")
    only_a = sorted(set(a.images) - set(b.images))
    only_b = sorted(set(b.images) - set(a.images))
    for ids, where in ((only_a, "A"), (only_b, "B")):
        if ids:
            out.append(f"{len(ids)} image id(s) only in {where}{_some(ids)}")
    common = sorted(set(a.images) & set(b.images))
    for k, what in ((2, "labels"), (0, "patients"), (1, "centres")):
        diff = [i for i in common if a.images[i][k] != b.images[i][k]]
        if diff:
            out.append(f"{what} differ for {len(diff)} image(s){_some(diff)}")
    return out


def _some(ids: list[str]) -> str:
    shown = ", ".join(map(repr, ids[:SHOWN_IDS]))
    return f" (e.g. {shown}{', ...' if len(ids) > SHOWN_IDS else ''})"
