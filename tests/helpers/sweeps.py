"""Small sweep files over a tiny cohort, for sweep tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.helpers.cohorts import write_cohort

# Fast streamed settings for the tiny twins: 2 epochs at 32 px, a fixed head lr.
FAST_TRAIN: dict[str, Any] = {
    "epochs": 2,
    "eval_every": 1,
    "batch_size": 8,
    "lr_head": 0.01,
    "lr_backbone": 0.001,
    "augment": False,
    "image_size": 32,
    "device": "cpu",
}


def write_sweep(root: Path, **overrides: Any) -> Path:
    """`root/study.yaml` over a 30-patient cohort in `root/cohort` (written once)."""
    if not (root / "cohort" / "manifest.csv").is_file():
        write_cohort(root / "cohort", patients=30, size=40)
    spec: dict[str, Any] = {
        "name": "mini",
        "runs": "runs",
        "cache": "cache",
        "tasks": ["cohort/tasks/severity.yaml"],
        "backbones": ["tiny-resnet", "tiny-dinov2"],
        "strategies": ["lp", "bitfit", "lora-r4"],
        "weights": "random",
        "scheme": "kfold",
        "folds": 2,
        "fewshot": {"shots": [2], "repeats": 2, "strategies": ["lp"]},
        "train": {"image_size": 32, "device": "cpu"},
        "strategy_train": {"peft": dict(FAST_TRAIN)},
        "report": {"n_boot": 20},
    }
    spec |= overrides
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
