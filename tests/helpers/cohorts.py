"""Tiny hand-made cohorts (PNG files + manifest + task) that need no synthesiser."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

if TYPE_CHECKING:
    from progbench.data.manifest import Task
    from progbench.data.splits import Splits


def write_cohort(
    root: Path,
    patients: int = 60,
    centers: int = 3,
    prevalence: float = 0.4,
    seed: int = 0,
    size: int = 40,
    multi_image_every: int = 3,
    boxes: bool = False,
) -> Path:
    """A small cohort of random grey PNGs; every `multi_image_every`-th patient has 2-3 images."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(patients):
        center = f"C{p % centers}"
        y = int(rng.random() < prevalence)
        death = int(y and rng.random() < 0.5)  # an outcome belongs to the patient
        n_img = 1 + (p % multi_image_every == 0) * int(rng.integers(1, 3))
        for j in range(n_img):
            iid = f"P{p:03d}-{j}"
            arr = rng.integers(0, 255, size=(size, size), dtype=np.uint8)
            arr[: size // 2] //= 2 + y  # a faint label-dependent pattern
            Image.fromarray(arr).save(root / "images" / f"{iid}.png")
            row = {
                "image_id": iid,
                "path": f"images/{iid}.png",
                "patient_id": f"P{p:03d}",
                "center": center,
                "severity": y,
                "death": death,
            }
            if boxes:
                row |= {"box_x0": 2, "box_y0": 3, "box_x1": size - 2, "box_y1": size - 4}
            rows.append(row)
    # Make sure every centre has both classes, so LOCO is possible.
    df = pd.DataFrame(rows)
    for c in df["center"].unique():
        m = df["center"] == c
        if df.loc[m, "severity"].nunique() < 2:
            first = df.loc[df.index[m][0], "patient_id"]
            flip = df["patient_id"] == first  # every image of that patient
            df.loc[flip, "severity"] = 1 - df.loc[flip, "severity"]
    df.to_csv(root / "manifest.csv", index=False)
    (root / "tasks").mkdir(exist_ok=True)
    (root / "tasks" / "severity.yaml").write_text(
        "name: tiny-severity\nmanifest: ../manifest.csv\noutcome: severity\npositive: 1\n"
    )
    return root / "manifest.csv"


@dataclass(frozen=True)
class StreamCohort:
    """A 30-patient cohort for the streamed trainer's tests, with one kfold fold (enough for
    every check there, and half the time of two)."""

    task: Task
    splits: Splits
    cache: Path
    manifest: Path


def stream_cohort(root: Path) -> StreamCohort:
    from progbench.data.manifest import load_task
    from progbench.data.splits import make_splits

    manifest = write_cohort(root / "cohort", patients=30, size=40)
    task = load_task(root / "cohort" / "tasks" / "severity.yaml")
    splits = make_splits(task, "kfold", folds=2, seed=42)
    one = splits.model_copy(update={"folds": splits.folds[:1]})
    return StreamCohort(task, one, root / "cache", manifest)
