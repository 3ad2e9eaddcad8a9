"""Run directories: layout, spec, writers and the reader shared by every trainer and the evaluator.

A run lives in `runs/<task>/<backbone>/<strategy>/<regime>/fold-<i>[/shots-<k>/rep-<r>]/` and holds

- `spec.json`           the RunSpec (everything needed to rerun) plus provenance;
- `predictions.parquet` one row per image: image_id, patient_id, split (val|test), y_true, p_pos;
- `metrics.json`        the evaluator's output, the threshold rule and the run's cost;
- `train_log.jsonl`     one JSON record per line (epochs, learning rates, losses...);
- adapter weights       written by the trainer in peft's `save_pretrained` layout;
- `DONE`                written last and atomically, with sha256 digests of the three files above.

A directory without `DONE` is an incomplete run: the reader refuses it and tree scans list it
apart. Once `DONE` exists the writers refuse to touch the run, so finished work is never
silently overwritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator, model_validator

from progbench.atomic import atomic_write_json, atomic_write_with
from progbench.config import StrictModel, format_validation_error
from progbench.data.splits import Scheme
from progbench.errors import RunError
from progbench.provenance import file_digest, fingerprint, git_sha, library_versions, now_iso

SPEC_FILE = "spec.json"
PREDICTIONS_FILE = "predictions.parquet"
METRICS_FILE = "metrics.json"
TRAIN_LOG_FILE = "train_log.jsonl"
DONE_FILE = "DONE"
# Files that must exist before a run may be marked done; their digests go into DONE.
REQUIRED_FILES = (SPEC_FILE, PREDICTIONS_FILE, METRICS_FILE)
# Any of these makes a directory a run directory (finished or not).
RUN_MARKERS = (*REQUIRED_FILES, TRAIN_LOG_FILE, DONE_FILE)

PREDICTION_COLUMNS = ("image_id", "patient_id", "split", "y_true", "p_pos")
SPLITS = ("val", "test")
Regime = Literal["full", "fewshot", "fewshot-center"]
FEWSHOT_REGIMES = ("fewshot", "fewshot-center")

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-")


# ------------------------------------------------------------------------------------ spec, cost


class RunSpec(StrictModel):
    """What a run is: enough to place it in the tree, group it, and rerun it."""

    task: str
    backbone: str
    weights: str  # hub id, local path, or "random"
    weights_fingerprint: str | None = None
    strategy: str
    regime: Regime
    fold: int = Field(ge=0)
    shots: int | None = Field(default=None, ge=1)
    repeat: int | None = Field(default=None, ge=0)
    seed: int = 42
    scheme: Scheme
    extra: dict[str, Any] = Field(default_factory=dict)  # hyper-parameters, test centre, ...

    @field_validator("task", "backbone", "strategy")
    @classmethod
    def _path_safe(cls, v: str) -> str:
        # These become directory names; a slash or `..` would escape the run tree.
        if not v or v.startswith(".") or not set(v) <= _NAME_CHARS:
            raise ValueError(
                "must be non-empty, not start with '.', and use only letters, digits and . _ + -"
            )
        return v

    @field_validator("extra")
    @classmethod
    def _json_extra(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"must be JSON-serialisable ({err})") from err
        return v

    @model_validator(mode="after")
    def _regime_fields(self) -> RunSpec:
        fewshot = self.regime in FEWSHOT_REGIMES
        if fewshot and (self.shots is None or self.repeat is None):
            raise ValueError(f"regime {self.regime!r} needs shots and repeat")
        if not fewshot and (self.shots is not None or self.repeat is not None):
            raise ValueError("regime 'full' takes no shots or repeat (leave them None)")
        return self

    def key(self) -> str:
        """Content fingerprint of the spec (a resume key)."""
        return fingerprint(self.model_dump(mode="json"))


class RunCost(StrictModel):
    """What a run cost, written into metrics.json by the trainer. Every field is optional."""

    wall_time_s: float | None = None
    device_time_s: float | None = None
    peak_host_mb: float | None = None
    peak_device_mb: float | None = None
    images_per_s: float | None = None
    trainable: int | None = None
    total: int | None = None
    trainable_percent: float | None = None


def run_dir_for(root: str | os.PathLike[str], spec: RunSpec) -> Path:
    """`root/<task>/<backbone>/<strategy>/<regime>/fold-<i>[/shots-<k>/rep-<r>]`."""
    path = (
        Path(root) / spec.task / spec.backbone / spec.strategy / spec.regime / f"fold-{spec.fold}"
    )
    if spec.regime in FEWSHOT_REGIMES:
        path = path / f"shots-{spec.shots}" / f"rep-{spec.repeat}"
    return path


# ------------------------------------------------------------------------------------ predictions


def _bad_rows_message(
    source: str, column: str, rows: np.ndarray, values: pd.Series, want: str
) -> str:
    shown = ", ".join(f"row {int(i) + 1} ({values.iloc[int(i)]!r})" for i in rows[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return (
        f"{source}: column {column!r} has bad values at {shown}{more} "
        f"(data rows numbered from 1, header excluded); expected {want}"
    )


def validate_predictions(df: pd.DataFrame, source: str = "predictions") -> pd.DataFrame:
    """Check a predictions table and return a normalised copy.

    Rows are numbered from 1 in the order given (for a CSV, row i is on line i + 1).
    Extra columns are kept. Raises RunError naming the missing columns or the bad rows.
    """
    hint = (
        "A predictions table has columns image_id, patient_id, split (val|test), "
        "y_true (0 or 1) and p_pos (probability of the positive class, in [0, 1])."
    )
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise RunError(
            f"{source} lacks column(s) {', '.join(missing)} (found: {', '.join(map(str, df.columns))})",
            hint,
        )
    if len(df) == 0:
        raise RunError(f"{source} has no rows", hint)
    out = df.reset_index(drop=True).copy()

    for col in ("image_id", "patient_id"):
        text = out[col].astype("string").str.strip()
        bad = np.flatnonzero(text.isna().to_numpy() | (text.fillna("") == "").to_numpy())
        if len(bad):
            raise RunError(_bad_rows_message(source, col, bad, out[col], "a non-empty id"), hint)
        out[col] = text.astype(object)

    split = out["split"].astype("string").str.strip()
    bad = np.flatnonzero(~split.isin(SPLITS).fillna(False).to_numpy())
    if len(bad):
        raise RunError(
            _bad_rows_message(source, "split", bad, out["split"], "'val' or 'test'"), hint
        )
    out["split"] = split.astype(object)

    y = pd.to_numeric(out["y_true"], errors="coerce")
    bad = np.flatnonzero(~y.isin([0, 1]).to_numpy())
    if len(bad):
        raise RunError(_bad_rows_message(source, "y_true", bad, out["y_true"], "0 or 1"), hint)
    out["y_true"] = y.astype(np.int8)

    p = pd.to_numeric(out["p_pos"], errors="coerce").astype(float)
    ok = np.isfinite(p.to_numpy()) & (p.to_numpy() >= 0.0) & (p.to_numpy() <= 1.0)
    bad = np.flatnonzero(~ok)
    if len(bad):
        raise RunError(
            _bad_rows_message(source, "p_pos", bad, out["p_pos"], "a finite number in [0, 1]"),
            hint + " Apply a sigmoid or softmax to logits first.",
        )
    out["p_pos"] = p.astype(np.float64)

    dup = out["image_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        ids = sorted(set(out.loc[dup, "image_id"]))[:5]
        raise RunError(f"{source}: image_id values appear more than once: {ids}", hint)
    per_patient = out.groupby("patient_id")["split"].nunique()
    leaked = sorted(per_patient.index[per_patient > 1])[:5]
    if leaked:
        raise RunError(
            f"{source}: patient(s) {leaked} appear in both val and test",
            "Splits are patient-level: a patient's images belong to one part of a fold only.",
        )
    return out


def read_predictions_file(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a bare predictions file (.parquet or .csv)."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"predictions file not found: {path}", "Check the path.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix == ".csv":
            # Read as text so ids like "007" keep their zeros and bad numbers can be reported.
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            raise RunError(
                f"cannot read {path}: unknown extension {path.suffix!r}",
                "Give a .parquet or .csv file, a run directory, or a tree of runs.",
            )
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise RunError(f"cannot read {path}: {err}") from err
    return validate_predictions(df, str(path))


# ------------------------------------------------------------------------------------ writers


def is_done(run_dir: str | os.PathLike[str]) -> bool:
    return (Path(run_dir) / DONE_FILE).is_file()


def _refuse_if_done(run_dir: Path, what: str) -> None:
    if is_done(run_dir):
        raise RunError(
            f"cannot write {what}: run {run_dir} is finished (it has a DONE marker)",
            f"Finished runs are never overwritten. To redo it, remove the directory: rm -r {run_dir}",
        )


def write_spec(run_dir: str | os.PathLike[str], spec: RunSpec) -> Path:
    """Write spec.json: the spec plus provenance (git SHA, library versions, time)."""
    run_dir = Path(run_dir)
    _refuse_if_done(run_dir, SPEC_FILE)
    provenance = {
        "git_sha": git_sha(),
        "library_versions": library_versions(),
        "created": now_iso(),
    }
    atomic_write_json(
        run_dir / SPEC_FILE, {"spec": spec.model_dump(mode="json"), "provenance": provenance}
    )
    return run_dir / SPEC_FILE


def read_spec(run_dir: str | os.PathLike[str]) -> RunSpec:
    path = Path(run_dir) / SPEC_FILE
    data = _read_json(path)
    if not isinstance(data, dict) or "spec" not in data:
        raise RunError(f"{path} has no 'spec' entry", "It should be written by runs.write_spec.")
    try:
        return RunSpec.model_validate(data["spec"])
    except ValidationError as err:
        raise RunError(format_validation_error(err, str(path))) from err


def write_predictions(run_dir: str | os.PathLike[str], df: pd.DataFrame) -> Path:
    """Validate and write predictions.parquet atomically."""
    run_dir = Path(run_dir)
    _refuse_if_done(run_dir, PREDICTIONS_FILE)
    return _write_clean_predictions(run_dir, validate_predictions(df, f"predictions for {run_dir}"))


def _write_clean_predictions(run_dir: Path, clean: pd.DataFrame) -> Path:
    _refuse_if_done(run_dir, PREDICTIONS_FILE)
    path = run_dir / PREDICTIONS_FILE
    atomic_write_with(path, lambda tmp: clean.to_parquet(tmp, index=False))
    return path


def append_train_log(run_dir: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON line to train_log.jsonl.

    An append is not atomic; a crash can leave a torn last line, which `read_train_log`
    skips. Rewriting the whole log atomically on every step would cost O(steps^2).
    """
    run_dir = Path(run_dir)
    _refuse_if_done(run_dir, TRAIN_LOG_FILE)
    run_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps(dict(record), sort_keys=True, default=str) + "\n"
    with open(run_dir / TRAIN_LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_train_log(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(run_dir) / TRAIN_LOG_FILE
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:  # torn last line from an interrupted append
                break
            raise RunError(f"{path} line {i + 1} is not valid JSON: {err}") from err
    return out


def write_metrics(
    run_dir: str | os.PathLike[str],
    metrics: Mapping[str, Mapping[str, Any]],
    cost: RunCost | None = None,
) -> Path:
    """Write metrics.json: `evaluate_predictions` output per split, the run's cost, provenance."""
    run_dir = Path(run_dir)
    _refuse_if_done(run_dir, METRICS_FILE)
    payload = {
        "metrics": {split: dict(values) for split, values in metrics.items()},
        "cost": cost.model_dump(mode="json") if cost is not None else None,
        "git_sha": git_sha(),
        "measured_at": now_iso(),
    }
    # Metrics are None where undefined; a NaN here would be a bug upstream.
    try:
        json.dumps(payload, allow_nan=False, default=str)
    except ValueError as err:
        raise RunError(
            f"metrics for {run_dir} contain NaN or infinity",
            "Undefined metrics must be None (JSON null); use progbench.evaluate.evaluate_predictions.",
        ) from err
    atomic_write_json(run_dir / METRICS_FILE, payload)
    return run_dir / METRICS_FILE


def mark_done(run_dir: str | os.PathLike[str]) -> Path:
    """Write DONE last and atomically, with digests of spec, predictions and metrics."""
    run_dir = Path(run_dir)
    _refuse_if_done(run_dir, DONE_FILE)
    missing = [name for name in REQUIRED_FILES if not (run_dir / name).is_file()]
    if missing:
        raise RunError(
            f"cannot mark {run_dir} done: missing {', '.join(missing)}",
            "Write spec, predictions and metrics before mark_done.",
        )
    digests = {name: file_digest(run_dir / name) for name in REQUIRED_FILES}
    atomic_write_json(
        run_dir / DONE_FILE, {"finished_at": now_iso(), "git_sha": git_sha(), "digests": digests}
    )
    return run_dir / DONE_FILE


def finish_run(
    run_dir: str | os.PathLike[str],
    predictions: pd.DataFrame,
    threshold: str = "fixed:0.5",
    cost: RunCost | None = None,
) -> dict[str, dict[str, Any]]:
    """End a run the same way on every training path: write the predictions, score them with
    the shared evaluator, write metrics.json, then DONE. spec.json must already exist."""
    # Imported here: the evaluator itself reads runs, so a module-level import would be circular.
    from progbench.evaluate.metrics import evaluate_predictions

    run_dir = Path(run_dir)
    if not (run_dir / SPEC_FILE).is_file():
        raise RunError(f"cannot finish {run_dir}: no {SPEC_FILE}", "Call write_spec first.")
    clean = validate_predictions(predictions, f"predictions for {run_dir}")
    _write_clean_predictions(run_dir, clean)
    metrics = evaluate_predictions(clean, threshold, validated=True)
    write_metrics(run_dir, metrics, cost)
    mark_done(run_dir)
    return metrics


# ------------------------------------------------------------------------------------ reader


@dataclass(frozen=True)
class Run:
    """A finished run as read back from disk."""

    path: Path
    spec: RunSpec
    predictions: pd.DataFrame
    metrics: dict[str, Any]  # metrics.json's "metrics" entry: {split: {metric: value}}
    cost: RunCost | None
    git_sha: str | None
    finished_at: str | None
    digests: dict[str, str] = field(default_factory=dict)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunError(f"missing file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"{path} is not valid JSON: {err}") from err


def _incomplete_error(run_dir: Path) -> RunError:
    present = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    return RunError(
        f"run {run_dir} is incomplete: it has no DONE marker "
        f"(present: {', '.join(present) or 'nothing'})",
        "Finish it by running the same training command again (finished runs are skipped and "
        f"unfinished ones redone), or remove it: rm -r {run_dir}",
    )


def read_run(run_dir: str | os.PathLike[str], verify: bool = True) -> Run:
    """Read a finished run. Refuses a run without DONE, or whose files changed after DONE."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory not found: {run_dir}", "Check the path.")
    if not is_done(run_dir):
        raise _incomplete_error(run_dir)
    done = _read_json(run_dir / DONE_FILE)
    digests = dict(done.get("digests", {})) if isinstance(done, dict) else {}
    for name in REQUIRED_FILES:
        path = run_dir / name
        if not path.is_file():
            raise RunError(
                f"run {run_dir} is inconsistent: DONE exists but {name} is missing",
                f"Remove the run and train it again: rm -r {run_dir}",
            )
        if verify and name in digests and file_digest(path) != digests[name]:
            raise RunError(
                f"run {run_dir} is inconsistent: {name} changed after the run was marked DONE",
                f"Remove the run and train it again: rm -r {run_dir}",
            )
    spec = read_spec(run_dir)
    try:
        raw = pd.read_parquet(run_dir / PREDICTIONS_FILE)
    except (OSError, ValueError) as err:
        raise RunError(f"cannot read {run_dir / PREDICTIONS_FILE}: {err}") from err
    predictions = validate_predictions(raw, str(run_dir / PREDICTIONS_FILE))
    metrics_file = _read_json(run_dir / METRICS_FILE)
    cost_data = metrics_file.get("cost") if isinstance(metrics_file, dict) else None
    try:
        cost = RunCost.model_validate(cost_data) if cost_data else None
    except ValidationError as err:
        raise RunError(format_validation_error(err, str(run_dir / METRICS_FILE))) from err
    return Run(
        path=run_dir,
        spec=spec,
        predictions=predictions,
        metrics=dict(metrics_file.get("metrics") or {}),
        cost=cost,
        git_sha=metrics_file.get("git_sha") or done.get("git_sha"),
        finished_at=done.get("finished_at"),
        digests=digests,
    )


@dataclass(frozen=True)
class RunScan:
    """Run directories found under a root: finished ones and incomplete ones (no DONE)."""

    done: list[Path]
    incomplete: list[Path]


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    path = Path(path)
    return path.is_dir() and any((path / name).exists() for name in RUN_MARKERS)


def iter_runs(root: str | os.PathLike[str]) -> RunScan:
    """Find run directories under `root` (sorted). Hidden and temporary directories are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"not a directory: {root}", "Give a run directory or a tree of runs.")
    done: list[Path] = []
    incomplete: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        # Atomic writers build under ".<name>.*.tmp"; never descend into them.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        path = Path(dirpath)
        if is_run_dir(path):
            (done if is_done(path) else incomplete).append(path)
    return RunScan(done=done, incomplete=incomplete)
