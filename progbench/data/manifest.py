"""Manifests (one row per image) and tasks (manifest + outcome + positive value).

Validation collects every bad row before failing, so one run of a command shows the user every
problem in their table, each as file, row, column and value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from progbench.config import TaskConfig, load_task_yaml, task_from_options
from progbench.errors import ConfigError, ManifestError
from progbench.provenance import fingerprint

REQUIRED_COLUMNS = ("image_id", "path", "patient_id", "center")
BOX_COLUMNS = ("box_x0", "box_y0", "box_x1", "box_y1")
ID_COLUMNS = ("image_id", "path", "patient_id", "center")
MAX_LISTED = 20  # rows listed per problem; the count says how many more there were


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: the table, the file it came from and the folder paths are relative to."""

    frame: pd.DataFrame
    source: Path
    # How messages name rows; None: the manifest's own lines. `prepare` passes the clinical
    # table's rows, so that a problem found here names the row the user has to fix.
    row_names: tuple[str, ...] | None = None

    def row_name(self, i: int) -> str:
        return self.row_names[i] if self.row_names is not None else row_label(self.source, i)

    @property
    def root(self) -> Path:
        return self.source.parent

    @property
    def has_boxes(self) -> bool:
        return all(c in self.frame.columns for c in BOX_COLUMNS)

    def image_paths(self) -> list[Path]:
        return [resolve_path(self.root, p) for p in self.frame["path"]]

    def boxes(self) -> list[tuple[float, float, float, float] | None]:
        if not self.has_boxes:
            return [None] * len(self.frame)
        vals = self.frame[list(BOX_COLUMNS)].to_numpy(dtype=float)
        return [None if np.isnan(r).any() else (r[0], r[1], r[2], r[3]) for r in vals.tolist()]

    def grouping_fingerprint(self) -> str:
        """What splits depend on: image ids, patients and centres (not paths or pixels)."""
        rows = self.frame[["image_id", "patient_id", "center"]].astype(str).to_numpy().tolist()
        return fingerprint({"rows": rows})


@dataclass(frozen=True)
class Task:
    """A task bound to its validated manifest, with binary labels (1 = positive value)."""

    config: TaskConfig
    manifest: Manifest
    labels: np.ndarray  # int64 (N,), aligned with manifest.frame

    @property
    def name(self) -> str:
        return self.config.name


def resolve_path(root: Path, p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else root / path


def row_label(source: Path, index: int) -> str:
    """Human row number: CSV line numbers count the header as line 1."""
    if source.suffix.lower() == ".csv":
        return f"{source.name} line {index + 2}"
    return f"{source.name} row {index}"


def _bullets(items: list[str]) -> str:
    shown = items[:MAX_LISTED]
    more = len(items) - len(shown)
    text = "\n".join(f"  - {s}" for s in shown)
    return text + (f"\n  ... and {more} more" if more > 0 else "")


def normalise_value(v: object) -> str:
    """Compare outcome values as text, with 1, 1.0 and '1' all meaning '1'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    s = str(v).strip()
    try:
        f = float(s)
    except ValueError:
        return s.lower() if s.lower() in ("true", "false") else s
    return str(int(f)) if f.is_integer() else s


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(
            f"manifest not found: {path}", "Give the path to a .csv or .parquet file."
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Everything as text: ids like 007 keep their zeros, and outcomes compare as text.
            return pd.read_csv(path, dtype=str, keep_default_na=True)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except Exception as err:  # pandas/pyarrow raise many types for a malformed file
        raise ManifestError(f"cannot read manifest {path}: {err}") from err
    raise ManifestError(
        f"manifest {path} has suffix {suffix!r}", "A manifest must be a .csv or .parquet file."
    )


def load_manifest(
    path: str | Path, check_files: bool = True, row_names: Sequence[str] | None = None
) -> Manifest:
    """Read and validate a manifest. Raises ManifestError listing every problem found.

    `row_names` (one per row) replace the manifest's line numbers in messages.
    """
    path = Path(path).resolve()
    df = read_table(path)
    names = tuple(row_names) if row_names is not None else None
    if names is not None and len(names) != len(df):
        raise ValueError(f"row_names has {len(names)} entries for {len(df)} rows")

    def name(i: int) -> str:
        return names[i] if names is not None else row_label(path, i)

    _check_shape(df, path)
    for col in ID_COLUMNS:
        df[col] = df[col].map(_id_text)
    problems = _id_problems(df, name) + _box_problems(df, name)
    if check_files:
        problems += _file_problems(df, path.parent, name)
    if problems:
        raise ManifestError(
            f"{path} has {len(problems)} problem(s):\n{_bullets(problems)}",
            "Fix or remove these rows; paths are relative to the manifest's folder.",
            problems,
        )
    return Manifest(frame=df.reset_index(drop=True), source=path, row_names=names)


def _check_shape(df: pd.DataFrame, path: Path) -> None:
    """The required columns are there and the table has rows."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{path.name}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}",
            "A manifest needs image_id, path, patient_id and center, plus one column per outcome.",
        )
    if len(df) == 0:
        raise ManifestError(
            f"{path} is empty: it has a header but no rows", "Add one row per image."
        )


def _id_text(v: object) -> str:
    """An id column's value as stripped text; missing values become ''."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()


def _id_problems(df: pd.DataFrame, name: Callable[[int], str]) -> list[str]:
    """Empty ids, duplicate image ids, and patients seen in more than one centre."""
    problems: list[str] = []
    for col in ID_COLUMNS:
        for i in np.flatnonzero(df[col].to_numpy() == "").tolist():
            problems.append(f"{name(i)}, column {col!r}: empty value")

    dup = df["image_id"].duplicated(keep=False) & (df["image_id"] != "")
    for image_id, rows in df[dup].groupby("image_id").groups.items():
        where = ", ".join(name(i) for i in rows)
        problems.append(f"column 'image_id': value {image_id!r} appears more than once ({where})")

    centres = df[df["patient_id"] != ""].groupby("patient_id")["center"].unique()
    for patient, cs in centres[centres.map(len) > 1].items():
        rows = df.index[df["patient_id"] == patient]
        where = ", ".join(name(i) for i in rows)
        problems.append(
            f"column 'center': patient {patient!r} appears in centres {sorted(cs)} ({where})"
        )
    return problems


def _box_problems(df: pd.DataFrame, name: Callable[[int], str]) -> list[str]:
    """Box columns all or none, each a number; converts them to numbers in `df`."""
    present_boxes = [c for c in BOX_COLUMNS if c in df.columns]
    if present_boxes and len(present_boxes) != len(BOX_COLUMNS):
        return [
            f"box columns are incomplete: found {present_boxes}, need all of {list(BOX_COLUMNS)}"
        ]
    problems: list[str] = []
    if present_boxes:
        for col in BOX_COLUMNS:
            vals = pd.to_numeric(df[col], errors="coerce")
            bad = vals.isna() & df[col].notna()
            for i in np.flatnonzero(bad.to_numpy()).tolist():
                problems.append(f"{name(i)}, column {col!r}: {df[col].iloc[i]!r} is not a number")
            df[col] = vals
    return problems


def _file_problems(df: pd.DataFrame, root: Path, name: Callable[[int], str]) -> list[str]:
    """Every non-empty path names a readable file (relative paths start at `root`)."""
    problems: list[str] = []
    for i, p in enumerate(df["path"]):
        if p == "":
            continue
        full = resolve_path(root, p)
        if not full.is_file():
            problems.append(f"{name(i)}, column 'path': file not found: {full}")
        elif not os.access(full, os.R_OK):
            problems.append(f"{name(i)}, column 'path': file not readable: {full}")
    return problems


def binary_labels(manifest: Manifest, task: TaskConfig) -> np.ndarray:
    """Map the task's outcome column to 0/1, naming every row with a missing or unknown value."""
    df, path = manifest.frame, manifest.source
    if task.outcome not in df.columns:
        outcomes = [c for c in df.columns if c not in (*REQUIRED_COLUMNS, *BOX_COLUMNS)]
        raise ManifestError(
            f"{path.name}: outcome column {task.outcome!r} not found",
            f"Columns that could be outcomes: {', '.join(map(str, outcomes)) or '(none)'}.",
        )
    values = df[task.outcome].map(normalise_value)
    positive = normalise_value(task.positive)
    negatives = {normalise_value(v) for v in task.negative} if task.negative else None
    problems = [
        f"{manifest.row_name(i)}, column {task.outcome!r}: missing value (NaN/empty)"
        for i in np.flatnonzero((values == "").to_numpy()).tolist()
    ]
    seen = sorted(set(values) - {""})
    if positive not in seen:
        raise ManifestError(
            f"{path.name}, column {task.outcome!r}: positive value {positive!r} never occurs; values are {seen}",
            "Set `positive` to one of those values.",
        )
    if negatives is None:
        others = [v for v in seen if v != positive]
        if len(others) > 1:
            counts = values[values != ""].value_counts().to_dict()
            raise ManifestError(
                f"{path.name}, column {task.outcome!r} has more than two values: {counts}",
                "A task is binary: list the values counted as negative with `negative:` in the task "
                "YAML (or --negative), or recode the column.",
            )
        negatives = set(others)
    allowed = negatives | {positive}
    for i in np.flatnonzero(~values.isin(allowed | {""}).to_numpy()).tolist():
        problems.append(
            f"{manifest.row_name(i)}, column {task.outcome!r}: unknown value {values.iloc[i]!r} "
            f"(expected one of {sorted(allowed)})"
        )
    if problems:
        raise ManifestError(
            f"{path} has {len(problems)} bad outcome value(s):\n{_bullets(problems)}",
            "Fill in or drop these rows, or list extra negative values with `negative:`.",
            problems,
        )
    labels = (values == positive).to_numpy().astype(np.int64)
    if labels.min() == labels.max():
        raise ManifestError(f"{path.name}, column {task.outcome!r}: every row has the same class")
    if not task.per_image_labels:
        _check_patient_labels(manifest, task.outcome, labels)
    return labels


def _check_patient_labels(manifest: Manifest, outcome: str, labels: np.ndarray) -> None:
    """Every image of a patient must carry the patient's one outcome label."""
    df, path = manifest.frame, manifest.source
    per_patient = pd.Series(labels).groupby(df["patient_id"].to_numpy()).nunique()
    mixed = sorted(per_patient.index[per_patient > 1])
    if not mixed:
        return
    problems = []
    for patient in mixed:
        rows = np.flatnonzero(df["patient_id"].to_numpy() == patient).tolist()
        where = ", ".join(f"{manifest.row_name(i)} ({df[outcome].iloc[i]!r})" for i in rows)
        problems.append(
            f"column {outcome!r}: patient {patient!r} has images with different labels: {where}"
        )
    raise ManifestError(
        f"{path}, column {outcome!r}: {len(mixed)} patient(s) have images with different "
        f"outcome labels:\n{_bullets(problems)}",
        "A prognosis outcome belongs to the patient: fix these rows, or, if the outcome really is "
        "per image, set `per_image_labels: true` in the task YAML.",
        problems,
    )


def load_source_manifest(source: str | Path) -> Manifest:
    """The manifest of a task YAML, or the manifest file itself (commands that need no outcome)."""
    source = Path(source)
    if source.suffix.lower() in (".yaml", ".yml"):
        return load_manifest(load_task_yaml(source).manifest)
    return load_manifest(source)


def _check_task_manifest(spec: Path, config: TaskConfig) -> None:
    """A task YAML whose `manifest:` names no file is refused naming the YAML and its key."""
    if config.manifest.is_file():
        return
    what = "is a folder, not a file" if config.manifest.is_dir() else "does not exist"
    raise ConfigError(
        f"{spec}: its `manifest` key names {config.manifest}, which {what}",
        f"Fix `manifest:` in {spec} (a path relative to the YAML's folder, "
        f"{spec.resolve().parent}), or make the manifest first (`progbench prepare` or "
        "`progbench synth`).",
    )


def load_task(
    spec: str | Path | None = None,
    *,
    manifest: str | Path | None = None,
    outcome: str | None = None,
    positive: str | None = None,
    negative: list[str] | None = None,
    check_files: bool = True,
) -> Task:
    """A task from a YAML file (`spec`) or from `manifest` + `outcome` + `positive`."""
    if spec is not None and manifest is not None:
        raise ConfigError("give either a task YAML or --manifest/--outcome/--positive, not both")
    if spec is not None:
        spec = Path(spec)
        if spec.suffix.lower() in (".csv", ".parquet", ".pq"):
            raise ConfigError(
                f"{spec} is a manifest, not a task",
                f"Add --outcome COLUMN --positive VALUE, or pass a task YAML such as "
                f"{spec.parent / 'tasks' / '<outcome>.yaml'}.",
            )
        config = load_task_yaml(spec)
        _check_task_manifest(spec, config)
    elif manifest is not None and outcome is not None and positive is not None:
        config = task_from_options(manifest, outcome, positive, negative)
    else:
        raise ConfigError(
            "no task given",
            "Pass a task YAML, or --manifest M --outcome COLUMN --positive VALUE.",
        )
    m = load_manifest(config.manifest, check_files=check_files)
    return Task(config=config, manifest=m, labels=binary_labels(m, config))
