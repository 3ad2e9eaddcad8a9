"""Plain-data summaries of a task and its splits, for the CLI and the demo to print."""

from __future__ import annotations

import numpy as np

from progbench.data.manifest import Task
from progbench.data.splits import Splits


def cohort_summary(task: Task) -> dict[str, object]:
    df = task.manifest.frame
    return {
        "task": task.name,
        "images": len(df),
        "patients": int(df["patient_id"].nunique()),
        "centres": int(df["center"].nunique()),
        "positive_rate": round(float(task.labels.mean()), 3),
        "images_per_patient_max": int(df.groupby("patient_id").size().max()),
    }


def split_summary(task: Task, splits: Splits) -> list[tuple[object, ...]]:
    """One row per fold: sizes as images/patients, test prevalence, number of few-shot draws."""
    df = task.manifest.frame
    pos = {iid: i for i, iid in enumerate(df["image_id"])}
    patients = df["patient_id"].to_numpy()

    def size(ids: list[str]) -> str:
        idx = [pos[i] for i in ids]
        return f"{len(idx)}/{len(np.unique(patients[idx]))}"

    rows = []
    for f in splits.folds:
        test_idx = [pos[i] for i in f.test]
        rows.append(
            (
                f.fold,
                f.test_center or "-",
                size(f.train),
                size(f.val),
                size(f.test),
                f"{100 * task.labels[test_idx].mean():.1f}",
                len(f.fewshot),
            )
        )
    return rows
