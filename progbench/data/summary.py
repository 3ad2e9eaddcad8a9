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
    """One row per fold (render.FOLD_COLUMNS): images/patients of each class in the training,
    validation and test parts, the validation share achieved (validation patients over the
    training part's patients, validation included), and the number of few-shot draws."""
    df = task.manifest.frame
    pos = {iid: i for i, iid in enumerate(df["image_id"])}
    patients = df["patient_id"].to_numpy()
    y = task.labels

    def by_class(ids: list[str]) -> list[str]:
        idx = np.array([pos[i] for i in ids], dtype=np.int64)
        return [
            f"{int((y[idx] == c).sum())}/{len(np.unique(patients[idx][y[idx] == c]))}"
            for c in (0, 1)
        ]

    def n_patients(ids: list[str]) -> int:
        return len({patients[pos[i]] for i in ids})

    rows = []
    for f in splits.folds:
        n_val, n_train = n_patients(f.val), n_patients(f.train)
        share = n_val / (n_val + n_train) if n_val + n_train else 0.0
        rows.append(
            (
                f.fold,
                f.test_center or "-",
                *by_class(f.train),
                *by_class(f.val),
                *by_class(f.test),
                f"{100 * share:.1f}%",
                len(f.fewshot),
            )
        )
    return rows
