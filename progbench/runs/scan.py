"""Reading finished runs back and finding the runs of a tree."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from progbench.config import format_validation_error
from progbench.errors import RunError
from progbench.runs.files import check_finished_files, read_json, read_spec
from progbench.runs.layout import (
    METRICS_FILE,
    PREDICTIONS_FILE,
    is_done,
    is_run_dir,
)
from progbench.runs.predictions import validate_predictions
from progbench.runs.spec import RunCost, RunSpec


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
    done = check_finished_files(run_dir, verify)
    digests = done["digests"]
    spec = read_spec(run_dir)
    try:
        raw = pd.read_parquet(run_dir / PREDICTIONS_FILE)
    except (OSError, ValueError) as err:
        raise RunError(f"cannot read {run_dir / PREDICTIONS_FILE}: {err}") from err
    predictions = validate_predictions(raw, str(run_dir / PREDICTIONS_FILE))
    metrics_file = read_json(run_dir / METRICS_FILE)
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
