"""The feature path's run writer: RunToWrite, everything one run directory holds, and
`write_runs`, which writes, scores and finishes them (LP, scikit-learn). Kept free of torch so
writer processes start fast.

`progbench.train.features` solves the heads and hands each fold's runs to `write_runs`, in a
writer thread or, for big grids, in worker processes that import only this module's needs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from progbench.atomic import atomic_write_bytes
from progbench.evaluate.finish import finish_scored_run
from progbench.runs import RunCost, RunSpec, prepare_run_dir, run_dir_for, write_spec


@dataclass(frozen=True)
class RunToWrite:
    """Everything one run directory holds, small enough to send to a writer process."""

    spec: RunSpec
    predictions: pd.DataFrame
    files: dict[str, bytes]  # the head's files (probe.safetensors, estimator.joblib...)
    cost: RunCost


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_runs(items: list[RunToWrite], runs_root: Path, force: bool) -> list[Path]:
    """Write, score and mark DONE each run (in a writer thread or process)."""
    written = []
    for item in items:
        run_dir = prepare_run_dir(run_dir_for(runs_root, item.spec), runs_root, force)
        write_spec(run_dir, item.spec)
        for name, data in item.files.items():
            atomic_write_bytes(run_dir / name, data)
        finish_scored_run(run_dir, item.predictions, cost=item.cost)
        written.append(run_dir)
    return written
