"""Writing LP run directories: kept free of torch so writer processes start fast.

`progbench.train.linear` solves the probes and hands each fold's runs to `write_runs`, in a
writer thread or, for big grids, in worker processes that import only this module's needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save

from progbench.atomic import atomic_write_bytes
from progbench.evaluate.finish import finish_scored_run
from progbench.runs import RunCost, RunSpec, prepare_run_dir, run_dir_for, write_spec

if TYPE_CHECKING:
    from progbench.train.probe import ProbeFit

PROBE_FILE = "probe.safetensors"


@dataclass(frozen=True)
class RunToWrite:
    """Everything one LP run directory holds, small enough to send to a writer process."""

    spec: RunSpec
    predictions: pd.DataFrame
    probe: dict[str, np.ndarray]
    cost: RunCost


def write_runs(items: list[RunToWrite], runs_root: Path, force: bool) -> list[Path]:
    """Write, score and mark DONE each run (in a writer thread or process)."""
    written = []
    for item in items:
        run_dir = prepare_run_dir(run_dir_for(runs_root, item.spec), runs_root, force)
        write_spec(run_dir, item.spec)
        save_probe(run_dir, item.probe)
        finish_scored_run(run_dir, item.predictions, cost=item.cost)
        written.append(run_dir)
    return written


def save_probe(run_dir: Path, probe: dict[str, np.ndarray]) -> None:
    """The head (weight, bias) and its standardisation (mean, std), so `progbench predict` can
    apply the run to new images."""
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in probe.items()}
    # Bytes, then an atomic write: a full disk is an OSError naming the file (safetensors'
    # own writer raises its own error type).
    atomic_write_bytes(run_dir / PROBE_FILE, save(arrays))


def load_probe(run_dir: Path) -> tuple[ProbeFit, np.ndarray, np.ndarray]:
    from progbench.train.probe import ProbeFit

    t = load_file(str(run_dir / PROBE_FILE))
    fit = ProbeFit(t["weight"].astype(np.float64), float(t["bias"][0]), None, 0.0, float("nan"), -1)
    return fit, t["mean"], t["std"]
