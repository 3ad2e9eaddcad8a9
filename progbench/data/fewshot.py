"""Few-shot draws: k images per class, from k distinct patients, out of a fold's training part.

Validation and test parts are never touched. Each (fold, k, repeat) draw has its own seed derived
from the split seed, so draws are reproducible and adding a k or a repeat leaves the others as
they were. Draws for different k are independent (not nested), as in the reference study.
"""

from __future__ import annotations

import numpy as np

from progbench.data.manifest import Task
from progbench.data.splits import FewShotDraw, Fold, Splits
from progbench.errors import SplitError

DEFAULT_SHOTS = (2, 4, 8, 16, 32)


def _draw_one(
    rng: np.random.Generator,
    ids: np.ndarray,
    patients: np.ndarray,
    y: np.ndarray,
    k: int,
    where: str,
) -> list[str]:
    """k images per class from k distinct patients each; a patient is used for one class at most."""
    chosen: list[str] = []
    used: set[str] = set()
    for cls in (1, 0):  # the rarer class is usually the positive one: draw it first
        mask = (y == cls) & ~np.isin(patients, list(used))
        eligible = np.unique(patients[mask])
        if len(eligible) < k:
            name = "positive" if cls == 1 else "negative"
            raise SplitError(
                f"{where}: cannot draw {k} {name} images from distinct patients; "
                f"only {len(eligible)} {name} patients are available",
                "Use smaller --shots, or drop --per-center.",
            )
        picked = rng.choice(eligible, size=k, replace=False)
        for p in picked:
            candidates = np.sort(ids[mask & (patients == p)])
            chosen.append(str(rng.choice(candidates)))
            used.add(p)
    return sorted(chosen)


def draw_fewshot(
    task: Task,
    fold: Fold,
    shots: list[int],
    repeats: int,
    seed: int,
    per_center: bool = False,
) -> list[FewShotDraw]:
    """All (k, repeat) draws for one fold. `per_center` draws k per class in every training centre."""
    if repeats < 1:
        raise SplitError(f"--repeats must be at least 1, got {repeats}")
    if any(k < 1 for k in shots):
        raise SplitError(f"--shots must be positive integers, got {shots}")
    df = task.manifest.frame
    pos = {iid: i for i, iid in enumerate(df["image_id"])}
    train_idx = np.array([pos[i] for i in fold.train])
    ids = df["image_id"].to_numpy()[train_idx]
    patients = df["patient_id"].to_numpy()[train_idx]
    centres = df["center"].to_numpy()[train_idx]
    y = task.labels[train_idx]

    draws: list[FewShotDraw] = []
    for k in shots:
        for r in range(repeats):
            rng = np.random.default_rng([seed, fold.fold, k, r])
            if per_center:
                picked: list[str] = []
                for c in sorted(np.unique(centres)):
                    m = centres == c
                    where = f"fold {fold.fold}, centre {c!r}"
                    picked += _draw_one(rng, ids[m], patients[m], y[m], k, where)
                draws.append(FewShotDraw(shots=k, repeat=r, train=sorted(picked)))
            else:
                where = f"fold {fold.fold}"
                draws.append(
                    FewShotDraw(shots=k, repeat=r, train=_draw_one(rng, ids, patients, y, k, where))
                )
    return draws


def add_fewshot(
    splits: Splits, task: Task, shots: list[int], repeats: int, per_center: bool = False
) -> Splits:
    """Return `splits` with few-shot training subsets added to every fold."""
    folds = [
        f.model_copy(
            update={"fewshot": draw_fewshot(task, f, shots, repeats, splits.seed, per_center)}
        )
        for f in splits.folds
    ]
    config = {"shots": list(shots), "repeats": repeats, "per_center": per_center}
    return splits.model_copy(update={"folds": folds, "fewshot_config": config})


def parse_shots(text: str) -> list[int]:
    """'2,4,8' -> [2, 4, 8], with a clear error for anything else."""
    try:
        shots = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError as err:
        raise SplitError(
            f"--shots must be a comma-separated list of integers, got {text!r}"
        ) from err
    if not shots or shots[0] < 1:
        raise SplitError(f"--shots must list positive integers, got {text!r}")
    return shots
