"""Checking a splits file against the task it is used for, before any run is made from it.

A splits file may be hand-edited or belong to another cohort. On read, every image id must be
in the manifest; within a fold no image and no patient may sit in two parts (train, val, test),
and each part must hold both classes (metrics, early stopping and thresholds need them); every
few-shot draw must lie inside its fold's training part. Every violation is named.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from progbench.data.manifest import Task
from progbench.data.splits import Fold, Splits
from progbench.errors import SplitError

MAX_LISTED = 20
PARTS = ("train", "val", "test")


def _shown(ids: Iterable[str], limit: int = 5) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(repr(i) for i in ids[:limit]) + more


def _fold_problems(
    fold: Fold, known: set[str], patient_of: dict[str, str], label_of: dict[str, int]
) -> list[str]:
    where = f"fold {fold.fold}"
    problems = []
    parts = {name: set(getattr(fold, name)) for name in PARTS}
    for name, ids in parts.items():
        unknown = ids - known
        if unknown:
            problems.append(f"{where}, {name}: unknown image id(s) {_shown(unknown)}")
        labels = [label_of[i] for i in ids if i in label_of]
        if labels and len(set(labels)) < 2:
            pos = sum(labels)
            problems.append(
                f"{where}, {name}: a single class ({len(labels) - pos} negative, {pos} positive "
                "images)"
            )
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = parts[a] & parts[b]
            if both:
                problems.append(f"{where}: image(s) {_shown(both)} are in both {a} and {b}")
            pa = {patient_of[x] for x in parts[a] - both if x in patient_of}
            pb = {patient_of[x] for x in parts[b] - both if x in patient_of}
            if pa & pb:
                problems.append(
                    f"{where}: patient(s) {_shown(pa & pb)} have images in both {a} and {b}"
                )
    for d in fold.fewshot:
        outside = set(d.train) - parts["train"]
        if outside:
            problems.append(
                f"{where}, few-shot k={d.shots} repeat {d.repeat}: image(s) {_shown(outside)} "
                "are not in the fold's training part"
            )
    return problems


def check_splits(splits: Splits, task: Task, source: str | Path) -> None:
    """Raise SplitError listing every problem of `splits` for `task` (none: return)."""
    df = task.manifest.frame
    known = set(df["image_id"])
    patient_of = dict(zip(df["image_id"], df["patient_id"], strict=True))
    label_of = dict(zip(df["image_id"], task.labels.tolist(), strict=True))
    problems = [
        p for fold in splits.folds for p in _fold_problems(fold, known, patient_of, label_of)
    ]
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:MAX_LISTED])
        more = (
            f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        )
        raise SplitError(
            f"{source} is not a valid splits file for task {task.name!r} "
            f"({len(problems)} problem(s)):\n{shown}{more}",
            "Splits are patient-level and made from this manifest: write them again with "
            "`progbench splits`, or fix the file.",
        )
