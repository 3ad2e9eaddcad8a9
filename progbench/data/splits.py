"""Patient-level splits: LOCO, stratified group k-fold and hold-out, each with an inner validation part.

Every split groups by patient, so no patient's images ever sit in two parts of one fold. The
validation part is drawn from the training part only, grouped by patient and stratified by
patient label: it holds `val_fraction` of the training part's patients (to the nearest patient,
shared between the classes), and at least one patient of each class.

SPLITS_VERSION is the rule that made a splits file. 1 (files without `version`): validation was
the first fold of a StratifiedGroupKFold with round(1 / val_fraction) splits, so 0.3 gave a third
and a class could be missing. 2: the rule above. Saved splits are named by version and the
version is part of every run's identity, so runs made under rule 1 are refused by name, never
mixed with runs of rule 2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
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
# The rule that makes splits (module docstring); files without `version` are version 1.
SPLITS_VERSION = 2


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
    version: int = 1  # SPLITS_VERSION of the rule that made the file; absent in version 1
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
        if self.version > 1:  # version 1 runs recorded none: they still match their own file
            out["version"] = self.version
        out["val_fraction"] = self.val_fraction
        if self.scheme == "kfold":
            out["folds"] = self.n_folds if self.n_folds is not None else len(self.folds)
        if self.scheme == "holdout":
            out["test_fraction"] = self.test_fraction
        return out

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def patient_labels(
    idx: np.ndarray, y: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The patients of `idx` (sorted) and each one's label: positive when any of its images is
    (labels are per patient unless the task sets `per_image_labels`)."""
    pats, inv = np.unique(groups[idx], return_inverse=True)
    label = np.zeros(len(pats), dtype=np.int64)
    np.maximum.at(label, inv, y[idx])
    return pats, label


def class_patients(idx: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[int, int]:
    """(negative, positive) patients among the images `idx`, by patient label."""
    _, label = patient_labels(idx, y, groups)
    counts = np.bincount(label, minlength=2)
    return int(counts[0]), int(counts[1])


def held_counts(n_by_class: tuple[int, ...], fraction: float, keep: int) -> list[int]:
    """Patients to hold out per class: at least 1 and at most `n - keep` of each class (a class
    with fewer than `keep + 1` patients gets 0), and as near `fraction` of all patients as those
    bounds allow, shared between the classes by largest remainder (stratified)."""
    quota = [fraction * n for n in n_by_class]
    low = [1 if n > keep else 0 for n in n_by_class]
    high = [n - keep if n > keep else 0 for n in n_by_class]
    out = [min(max(math.floor(q), lo), hi) for q, lo, hi in zip(quota, low, high, strict=True)]
    total = math.floor(fraction * sum(n_by_class) + 0.5)  # the nearest patient, halves up
    classes = range(len(out))
    while sum(out) < total and (up := [c for c in classes if out[c] < high[c]]):
        out[max(up, key=lambda c: (quota[c] - out[c], -c))] += 1
    while sum(out) > total and (down := [c for c in classes if out[c] > low[c]]):
        out[min(down, key=lambda c: (quota[c] - out[c], c))] -= 1
    return out


def _hold_out(
    idx: np.ndarray, y: np.ndarray, groups: np.ndarray, fraction: float, seed: int, keep: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split `idx` into (kept, held): `fraction` of its patients held, per class by patient label
    (held_counts), drawn with numpy's default_rng(seed). Every image of a patient goes together."""
    pats, label = patient_labels(idx, y, groups)
    counts = held_counts(tuple(int((label == c).sum()) for c in (0, 1)), fraction, keep)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in (0, 1):
        members = pats[label == c]
        held.append(rng.permutation(members)[: counts[c]])
    mask = np.isin(groups[idx], np.concatenate(held))
    return idx[~mask], idx[mask]


CLASS_NAMES = ("negative", "positive")
# `--scheme auto` warns when it picks LOCO and a fold's training part would hold fewer patients
# of a class than this (scheme_warnings).
LOCO_FEW_PATIENTS = 5


def _fold_name(fold: int, centre: str | None) -> str:
    return f"fold {fold}" + (f" (test centre {centre!r})" if centre is not None else "")


def _kfold_hint(n_by_class: tuple[int, int], folds: int) -> str:
    """One hint for every k-fold part that cannot hold both classes: the --folds that can work.
    Each test fold needs a patient of each class (folds <= the smaller class), and each training
    part two (one to train on, one to validate on), so the range has both ends."""
    small = min(range(2), key=lambda c: n_by_class[c])
    n, name = n_by_class[small], CLASS_NAMES[small]
    if n < 3:
        return (
            f"The cohort has {n} {name} patient(s); a patient-level split with a validation "
            f"part needs at least 3 per class (one to test, one to validate, one to train on). "
            f"Add {name} patients."
        )
    ok = [
        k
        for k in range(2, n + 1)
        if all(m - math.ceil(m / k) >= 2 for m in n_by_class)  # training part keeps 2 per class
    ]
    lo, hi = min(ok), max(ok)
    span = f"--folds {lo}" if lo == hi else f"--folds between {lo} and {hi}"
    why = (
        f"with {n_by_class[0]} negative and {n_by_class[1]} positive patients, each test fold "
        "needs one patient of each class and each training part two"
    )
    if lo <= folds <= hi:
        return f"The folds came out uneven ({why}); try another --seed, or {span}."
    return f"Use {span} ({why})."


def _hint(scheme: str, part: str, n_by_class: tuple[int, int], folds: int) -> str:
    if scheme == "kfold":
        return _kfold_hint(n_by_class, folds)
    if scheme == "loco":
        if part == "test":
            return "This centre has one class only for this outcome; use --scheme kfold."
        return "Use --scheme kfold: its training parts pool the patients of every centre."
    small = min(n_by_class)
    if small < 3:
        return (
            f"The cohort has {small} {CLASS_NAMES[n_by_class.index(small)]} patient(s); a "
            "hold-out split with a validation part needs at least 3 per class (one to test, one "
            "to validate, one to train on). Add patients."
        )
    return "Try another --seed."


def make_splits(
    task: Task,
    scheme: Scheme,
    folds: int = 5,
    val_fraction: float = 0.2,
    seed: int = 42,
    test_fraction: float = 0.2,
) -> Splits:
    """Outer test folds by `scheme`, each with an inner patient-level validation part holding
    `val_fraction` of the training part's patients of each class (at least one of each)."""
    _check_fractions(scheme, val_fraction, test_fraction)
    y = task.labels
    groups = task.manifest.frame["patient_id"].to_numpy()
    cohort = class_patients(np.arange(len(task.manifest.frame)), y, groups)
    outer = _outer_folds(task, scheme, folds, seed, test_fraction, cohort)
    ids = task.manifest.frame["image_id"].to_numpy()
    out = [
        _fold(i, part, ids, y, groups, (val_fraction, seed), _hint_for(scheme, cohort, folds))
        for i, part in enumerate(outer)
    ]
    return Splits(
        version=SPLITS_VERSION,
        scheme=scheme,
        seed=seed,
        val_fraction=val_fraction,
        task=task.name,
        manifest_fingerprint=task.manifest.grouping_fingerprint(),
        n_folds=folds if scheme == "kfold" else None,
        test_fraction=test_fraction if scheme == "holdout" else None,
        folds=out,
    )


OuterFold = tuple[np.ndarray, np.ndarray, str | None]  # train rows, test rows, held-out centre


def _check_fractions(scheme: str, val_fraction: float, test_fraction: float) -> None:
    if scheme not in SCHEMES:
        raise SplitError(f"unknown scheme {scheme!r}", f"Use one of {', '.join(SCHEMES)}.")
    if not 0 < val_fraction < 0.5:
        raise SplitError(
            f"--val-fraction must be in (0, 0.5), got {val_fraction}",
            "It is the share of each fold's training patients held out for validation, e.g. 0.2.",
        )
    if scheme == "holdout" and not 0 < test_fraction < 0.5:
        raise SplitError(f"the test fraction must be in (0, 0.5), got {test_fraction}")


def _hint_for(scheme: str, cohort: tuple[int, int], folds: int) -> Callable[[str], str]:
    """`_hint` for one scheme and cohort, given the part ("test" or "training")."""
    return lambda part: _hint(scheme, part, cohort, folds)


def _outer_folds(
    task: Task,
    scheme: Scheme,
    folds: int,
    seed: int,
    test_fraction: float,
    cohort: tuple[int, int],
) -> list[OuterFold]:
    """The outer (train, test) parts of `scheme`, each with its held-out centre (LOCO)."""
    df = task.manifest.frame
    y = task.labels
    groups = df["patient_id"].to_numpy()
    all_idx = np.arange(len(df))
    if scheme == "loco":
        centres = sorted(df["center"].unique())
        if len(centres) < 2:
            raise SplitError(
                f"LOCO needs at least two centres; {task.manifest.source.name} has {centres}",
                "Use --scheme kfold for a single-centre cohort.",
            )
        masks = [(df["center"].to_numpy() == c, c) for c in centres]
        return [(all_idx[~mask], all_idx[mask], c) for mask, c in masks]
    if scheme == "kfold":
        n_patients = len(np.unique(groups))
        if folds < 2 or folds > n_patients:
            raise SplitError(f"--folds must be between 2 and {n_patients} patients, got {folds}")
        from sklearn.model_selection import StratifiedGroupKFold

        sgkf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        return [(tr, te, None) for tr, te in sgkf.split(all_idx, y, groups)]
    if min(cohort) < 3:
        raise SplitError(
            f"the cohort holds {cohort[0]} negative and {cohort[1]} positive patients",
            _hint(scheme, "test", cohort, folds),
        )
    # Test patients drawn like validation ones; 2 per class stay for training + validation.
    train, test = _hold_out(all_idx, y, groups, test_fraction, seed, keep=2)
    return [(train, test, None)]


def _fold(
    i: int,
    part: OuterFold,
    ids: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    val: tuple[float, int],
    hint: Callable[[str], str],
) -> Fold:
    """Fold `i`: its outer parts checked, its training part split into training and validation
    (`val`: the fraction and the base seed)."""
    train_idx, test_idx, centre = part
    where = _fold_name(i, centre)
    test = np.bincount(y[test_idx], minlength=2)
    if min(test) == 0:  # by image: metrics are
        raise SplitError(
            f"{where}: the test part holds a single class ({test[0]} negative, {test[1]} "
            "positive images)",
            hint("test"),
        )
    training = class_patients(train_idx, y, groups)
    if min(training) < 2:
        small = CLASS_NAMES[int(training[1] < training[0])]
        raise SplitError(
            f"{where}: the training part holds {training[0]} negative and {training[1]} "
            f"positive patients; a class needs at least 2 (one to train on, one to "
            f"validate on), and {small} has fewer",
            hint("training"),
        )
    # Seed per fold so adding a fold does not reshuffle the others' validation parts.
    val_fraction, seed = val
    tr, va = _hold_out(train_idx, y, groups, val_fraction, seed + 1000 + i, keep=1)
    return Fold(
        fold=i,
        test_center=centre,
        train=sorted(ids[tr].tolist()),
        val=sorted(ids[va].tolist()),
        test=sorted(ids[test_idx].tolist()),
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


def scheme_warnings(task: Task, asked: str, scheme: str) -> list[str]:
    """When `auto` chose LOCO: one warning per fold whose training part (every other centre)
    holds fewer than LOCO_FEW_PATIENTS patients of a class, naming the fold and the counts."""
    if asked != "auto" or scheme != "loco":
        return []
    df = task.manifest.frame
    centres = df["center"].to_numpy()
    groups = df["patient_id"].to_numpy()
    out = []
    for i, c in enumerate(sorted(set(centres))):
        neg, pos = class_patients(np.flatnonzero(centres != c), task.labels, groups)
        if min(neg, pos) < LOCO_FEW_PATIENTS:
            out.append(
                f"scheme auto chose loco, but {_fold_name(i, c)} trains on {neg} "
                f"negative and {pos} positive patients (fewer than {LOCO_FEW_PATIENTS} of a "
                "class): its results will be noisy. Pass --scheme kfold to pool the centres, or "
                "--scheme loco to keep LOCO."
            )
    return out


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
