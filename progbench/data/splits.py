"""Patient-level splits: LOCO, stratified group k-fold and hold-out, each with an inner validation part.

Every split groups by patient, so no patient's images ever sit in two parts of one fold. The
validation part is drawn from the training part only, grouped by patient and stratified.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from progbench.atomic import atomic_write_json
from progbench.errors import SplitError

# scikit-learn (seconds to import) and pandas (manifests) load when splits are made: the run
# spec and `progbench sweep plan` read this module's names only.
if TYPE_CHECKING:
    from progbench.data.manifest import Task

Scheme = Literal["loco", "kfold", "holdout"]
SCHEMES: tuple[str, ...] = ("loco", "kfold", "holdout")
# What a user may ask for: a scheme, or `auto` (resolve_scheme).
SCHEME_CHOICES: tuple[str, ...] = ("auto", *SCHEMES)


class FewShotDraw(BaseModel):
    model_config = ConfigDict(frozen=True)
    shots: int
    repeat: int
    train: list[str]


class Fold(BaseModel):
    model_config = ConfigDict(frozen=True)
    fold: int
    test_center: str | None = None  # LOCO only
    train: list[str]
    val: list[str]
    test: list[str]
    fewshot: list[FewShotDraw] = []

    def draw(self, shots: int, repeat: int) -> FewShotDraw:
        for d in self.fewshot:
            if d.shots == shots and d.repeat == repeat:
                return d
        raise SplitError(
            f"fold {self.fold} has no few-shot draw for shots={shots}, repeat={repeat}",
            "Write the splits again with --shots and --repeats that include it.",
        )


class Splits(BaseModel):
    model_config = ConfigDict(frozen=True)
    scheme: Scheme
    seed: int
    val_fraction: float
    task: str
    # Image ids, patients and centres the splits were made from (Manifest.grouping_fingerprint).
    manifest_fingerprint: str
    n_folds: int | None = None  # kfold only
    test_fraction: float | None = None  # holdout only
    fewshot_config: dict[str, Any] | None = None
    folds: list[Fold]

    def parameters(self) -> dict[str, Any]:
        """The split's defining parameters (part of every run's identity)."""
        out: dict[str, Any] = {"scheme": self.scheme, "seed": self.seed}
        out["val_fraction"] = self.val_fraction
        if self.scheme == "kfold":
            out["folds"] = self.n_folds if self.n_folds is not None else len(self.folds)
        if self.scheme == "holdout":
            out["test_fraction"] = self.test_fraction
        return out

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _inner_split(
    idx: np.ndarray, y: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split `idx` into (train, held) with about `fraction` of patients held, grouped and stratified."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, round(1 / fraction))
    n_patients = len(np.unique(groups[idx]))
    if n_patients < n_splits:
        raise SplitError(
            f"only {n_patients} patients available to split off a {fraction:.0%} part",
            "Use fewer folds, a larger cohort or a larger --val-fraction.",
        )
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    keep, held = next(sgkf.split(idx, y[idx], groups[idx]))
    return idx[keep], idx[held]


def _check_two_classes(part: str, fold: int, idx: np.ndarray, y: np.ndarray, hint: str) -> None:
    counts = np.bincount(y[idx], minlength=2)
    if (counts == 0).any():
        raise SplitError(
            f"fold {fold}: the {part} part holds a single class "
            f"({counts[0]} negative, {counts[1]} positive images)",
            hint,
        )


def make_splits(
    task: Task,
    scheme: Scheme,
    folds: int = 5,
    val_fraction: float = 0.2,
    seed: int = 42,
    test_fraction: float = 0.2,
) -> Splits:
    """Outer test folds by `scheme`, each with an inner patient-level validation part."""
    if scheme not in SCHEMES:
        raise SplitError(f"unknown scheme {scheme!r}", f"Use one of {', '.join(SCHEMES)}.")
    if not 0 < val_fraction < 0.5:
        raise SplitError(f"--val-fraction must be in (0, 0.5), got {val_fraction}")
    df = task.manifest.frame
    y = task.labels
    groups = df["patient_id"].to_numpy()
    ids = df["image_id"].to_numpy()
    all_idx = np.arange(len(df))

    outer: list[tuple[np.ndarray, np.ndarray, str | None]] = []
    if scheme == "loco":
        centres = sorted(df["center"].unique())
        if len(centres) < 2:
            raise SplitError(
                f"LOCO needs at least two centres; {task.manifest.source.name} has {centres}",
                "Use --scheme kfold for a single-centre cohort.",
            )
        for c in centres:
            test_mask = df["center"].to_numpy() == c
            outer.append((all_idx[~test_mask], all_idx[test_mask], c))
    elif scheme == "kfold":
        n_patients = len(np.unique(groups))
        if folds < 2 or folds > n_patients:
            raise SplitError(f"--folds must be between 2 and {n_patients} patients, got {folds}")
        from sklearn.model_selection import StratifiedGroupKFold

        sgkf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        outer = [(tr, te, None) for tr, te in sgkf.split(all_idx, y, groups)]
    else:
        train, test = _inner_split(all_idx, y, groups, test_fraction, seed)
        outer = [(train, test, None)]

    single_class_hint = {
        "loco": "This centre has one class only for this outcome; use --scheme kfold.",
        "kfold": "Use fewer --folds so each fold holds both classes.",
        "holdout": "Use a larger cohort or a different --seed.",
    }[scheme]
    out: list[Fold] = []
    for i, (train_idx, test_idx, centre) in enumerate(outer):
        _check_two_classes("test", i, test_idx, y, single_class_hint)
        # Seed per fold so adding a fold does not reshuffle the others' validation parts.
        tr, va = _inner_split(train_idx, y, groups, val_fraction, seed + 1000 + i)
        _check_two_classes("validation", i, va, y, "Use a larger --val-fraction.")
        _check_two_classes("training", i, tr, y, single_class_hint)
        out.append(
            Fold(
                fold=i,
                test_center=centre,
                train=sorted(ids[tr].tolist()),
                val=sorted(ids[va].tolist()),
                test=sorted(ids[test_idx].tolist()),
            )
        )
    return Splits(
        scheme=scheme,
        seed=seed,
        val_fraction=val_fraction,
        task=task.name,
        manifest_fingerprint=task.manifest.grouping_fingerprint(),
        n_folds=folds if scheme == "kfold" else None,
        test_fraction=test_fraction if scheme == "holdout" else None,
        folds=out,
    )


def resolve_scheme(task: Task, scheme: str) -> tuple[Scheme, str]:
    """The scheme to use and why. `auto`: LOCO when the cohort has at least two centres and
    every centre holds both classes of the outcome (each can be a test fold), else k-fold."""
    if scheme not in SCHEME_CHOICES:
        raise SplitError(f"unknown scheme {scheme!r}", f"Use one of {', '.join(SCHEME_CHOICES)}.")
    if scheme != "auto":
        return scheme, f"{scheme} (asked for)"  # type: ignore[return-value]
    centres = task.manifest.frame["center"].to_numpy()
    names = sorted(set(centres))
    if len(names) < 2:
        return "kfold", "auto: kfold (one centre)"
    one_class = [c for c in names if len(set(task.labels[centres == c])) < 2]
    if one_class:
        return "kfold", f"auto: kfold (centre(s) {one_class} hold one class only)"
    return "loco", f"auto: loco ({len(names)} centres)"


def write_splits(splits: Splits, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_json(path, splits.to_json())
    return path


def read_splits(path: str | Path) -> Splits:
    path = Path(path)
    try:
        return Splits.model_validate(json.loads(path.read_text()))
    except FileNotFoundError as err:
        raise SplitError(
            f"splits file not found: {path}", "Write one with `progbench splits`."
        ) from err
    except (ValueError, TypeError) as err:
        raise SplitError(f"{path} is not a valid splits file: {err}") from err
