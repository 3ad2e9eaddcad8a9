"""Reading and writing the files of one run directory. A finished run (DONE) is never written;
`check_finished_files` is the one check of its files against the digests DONE recorded."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from progbench.atomic import atomic_write_json, atomic_write_with
from progbench.config import format_validation_error
from progbench.errors import RunError
from progbench.provenance import file_digest, git_sha, library_versions, now_iso
from progbench.runs.layout import (
    DONE_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    REQUIRED_FILES,
    SPEC_FILE,
    TRAIN_LOG_FILE,
    is_done,
)
from progbench.runs.predictions import validate_predictions
from progbench.runs.spec import RunCost, RunSpec


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
    data = read_json(path)
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
    return write_clean_predictions(run_dir, validate_predictions(df, f"predictions for {run_dir}"))


def write_clean_predictions(run_dir: Path, clean: pd.DataFrame) -> Path:
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


def check_finished_files(run_dir: str | os.PathLike[str], verify: bool = True) -> dict[str, Any]:
    """DONE's record of a finished run, after checking its files against it: each of spec,
    predictions and metrics is there and (with `verify`) still has the sha256 DONE recorded. The
    one check of a finished run's files, for `train` before it skips or replaces a run and for
    `evaluate` and `report` before they read one. A mismatch is damage (a file edited, truncated
    or replaced after the run finished), never another setup: the error names the file and says
    how to restore the run, not `--force`."""
    run_dir = Path(run_dir)
    done = read_json(run_dir / DONE_FILE)
    digests = done.get("digests", {}) if isinstance(done, dict) else {}
    record = dict(done) if isinstance(done, dict) else {}
    record["digests"] = dict(digests) if isinstance(digests, dict) else {}
    restore = (
        "Restore it as it was (e.g. from a backup), or delete the run folder so that the next "
        f"training command recomputes the run: rm -r {run_dir}"
    )
    for name in REQUIRED_FILES:
        path = run_dir / name
        if not path.is_file():
            raise RunError(f"run {run_dir} is damaged: DONE exists but {name} is missing", restore)
        recorded = record["digests"].get(name)
        if verify and recorded is not None and file_digest(path) != recorded:
            raise RunError(
                f"run {run_dir} is damaged: {name} changed after the run was marked DONE (its "
                "sha256 differs from the one DONE recorded)",
                restore,
            )
    return record


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunError(f"missing file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"{path} is not valid JSON: {err}") from err
