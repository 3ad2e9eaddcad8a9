"""The run format shared by every trainer and the evaluator: spec, predictions, layout, the
files of a run, reading trees back, and a run's lifecycle (claim, check, prepare, finish).

See `progbench.runs.layout` for the directory layout and `progbench.runs.lifecycle` for how
finished runs are recognised, refused or replaced.

The names of the modules that read and write run files load them on first use: those import
pandas, which `progbench sweep plan` (layout and spec only) does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from progbench.runs.layout import (
    DONE_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    REQUIRED_FILES,
    SPEC_FILE,
    STATE_DIR,
    TRAIN_LOG_FILE,
    cell_dir,
    is_done,
    is_run_dir,
    run_dir_for,
    run_path,
)
from progbench.runs.spec import FEWSHOT_REGIMES, Regime, RunCost, RunSpec, identity_diff

_LAZY = {
    "append_train_log": "files",
    "mark_done": "files",
    "read_spec": "files",
    "read_train_log": "files",
    "write_metrics": "files",
    "write_predictions": "files",
    "write_spec": "files",
    "Claims": "lifecycle",
    "claim_run": "lifecycle",
    "claims": "lifecycle",
    "finish_run": "lifecycle",
    "is_finished_match": "lifecycle",
    "prepare_run_dir": "lifecycle",
    "PREDICTION_COLUMNS": "predictions",
    "SPLITS": "predictions",
    "read_predictions_file": "predictions",
    "validate_predictions": "predictions",
    "Run": "scan",
    "RunScan": "scan",
    "iter_runs": "scan",
    "read_run": "scan",
}

if TYPE_CHECKING:
    from progbench.runs.files import (
        append_train_log,
        mark_done,
        read_spec,
        read_train_log,
        write_metrics,
        write_predictions,
        write_spec,
    )
    from progbench.runs.lifecycle import (
        Claims,
        claim_run,
        claims,
        finish_run,
        is_finished_match,
        prepare_run_dir,
    )
    from progbench.runs.predictions import (
        PREDICTION_COLUMNS,
        SPLITS,
        read_predictions_file,
        validate_predictions,
    )
    from progbench.runs.scan import Run, RunScan, iter_runs, read_run


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"progbench.runs.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'progbench.runs' has no attribute {name!r}")


__all__ = [
    "DONE_FILE",
    "FEWSHOT_REGIMES",
    "METRICS_FILE",
    "PREDICTIONS_FILE",
    "PREDICTION_COLUMNS",
    "REQUIRED_FILES",
    "SPEC_FILE",
    "SPLITS",
    "STATE_DIR",
    "TRAIN_LOG_FILE",
    "Claims",
    "Regime",
    "Run",
    "RunCost",
    "RunScan",
    "RunSpec",
    "append_train_log",
    "cell_dir",
    "claim_run",
    "claims",
    "finish_run",
    "identity_diff",
    "is_done",
    "is_finished_match",
    "is_run_dir",
    "iter_runs",
    "mark_done",
    "prepare_run_dir",
    "read_predictions_file",
    "read_run",
    "read_spec",
    "read_train_log",
    "run_dir_for",
    "run_path",
    "validate_predictions",
    "write_metrics",
    "write_predictions",
    "write_spec",
]
