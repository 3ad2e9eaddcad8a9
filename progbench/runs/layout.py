"""Where a run lives and which files it holds.

`<runs>/<task>/<scheme>/<backbone>/<strategy>/<regime>/fold-<i>[/shots-<k>/rep-<r>]/` holds

- `spec.json`           the RunSpec (identity, settings, records) plus provenance;
- `predictions.parquet` one row per image: image_id, patient_id, split (val|test), y_true, p_pos;
- `metrics.json`        the evaluator's output, the threshold rule and the run's cost;
- `train_log.jsonl`     one JSON record per line (epochs, learning rates, losses...);
- the trained weights   (adapter in peft's layout, biases, full weights or the probe);
- `DONE`                written last and atomically, with sha256 digests of the first three.

A directory without `DONE` is an incomplete run. Run locks live apart, in `<runs>/.locks/`, so
clearing an unfinished run never deletes a held lock and run folders hold only run files.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from progbench.runs.spec import FEWSHOT_REGIMES, RunSpec

SPEC_FILE = "spec.json"
PREDICTIONS_FILE = "predictions.parquet"
METRICS_FILE = "metrics.json"
TRAIN_LOG_FILE = "train_log.jsonl"
DONE_FILE = "DONE"
STATE_DIR = "state"  # a trainer's resumable state; removed once the run is DONE
REPLACED_DIR = ".replaced"
# Files that must exist before a run may be marked done; their digests go into DONE.
REQUIRED_FILES = (SPEC_FILE, PREDICTIONS_FILE, METRICS_FILE)
# Any of these makes a directory a run directory (finished or not).
RUN_MARKERS = (*REQUIRED_FILES, TRAIN_LOG_FILE, DONE_FILE)


def cell_dir(
    root: str | os.PathLike[str], task: str, scheme: str, backbone: str, strategy: str
) -> Path:
    """`root/<task>/<scheme>/<backbone>/<strategy>`: every run of one train call's cell."""
    return Path(root) / task / scheme / backbone / strategy


def run_path(cell: Path, regime: str, fold: int, shots: int | None, repeat: int | None) -> Path:
    """A run's folder inside its cell folder: `<regime>/fold-<i>[/shots-<k>/rep-<r>]`."""
    path = cell / regime / f"fold-{fold}"
    if regime in FEWSHOT_REGIMES:
        path = path / f"shots-{shots}" / f"rep-{repeat}"
    return path


def run_dir_for(root: str | os.PathLike[str], spec: RunSpec) -> Path:
    """`root/<task>/<scheme>/<backbone>/<strategy>/<regime>/fold-<i>[/shots-<k>/rep-<r>]`."""
    cell = cell_dir(root, spec.task, spec.scheme, spec.backbone, spec.strategy)
    return run_path(cell, spec.regime, spec.fold, spec.shots, spec.repeat)


LOCKS_DIR = ".locks"


def lock_path(runs_root: Path, run_dir: Path) -> Path:
    """`<runs>/.locks/<the run's relative path, / as __>.lock`: out of the run folders."""
    rel = run_dir.resolve().relative_to(runs_root.resolve())
    return runs_root / LOCKS_DIR / ("__".join(rel.parts) + ".lock")


def replaced_dir(run_dir: Path, runs_root: Path) -> Path:
    """Where `--force` keeps a finished run it replaces (hidden: evaluation skips it)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return runs_root / REPLACED_DIR / stamp / run_dir.relative_to(runs_root)


def is_done(run_dir: str | os.PathLike[str]) -> bool:
    return (Path(run_dir) / DONE_FILE).is_file()


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    path = Path(path)
    return path.is_dir() and any((path / name).exists() for name in RUN_MARKERS)
