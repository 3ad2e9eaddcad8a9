"""Preparing a run directory for writing, the same way for every trainer.

A finished run (DONE) is never overwritten: `--force` first moves it to
`<runs root>/.replaced/<timestamp>/<same relative path>` (hidden, so evaluation skips it).
An unfinished one holds no result worth keeping and is cleared, unless the trainer resumes it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from progbench.errors import RunError
from progbench.runs import is_done


def replaced_dir(run_dir: Path, runs_root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return runs_root / ".replaced" / stamp / run_dir.relative_to(runs_root)


def prepare_run_dir(
    run_dir: Path, runs_root: Path, force: bool, keep_partial: bool = False
) -> Path:
    """An empty (or, with `keep_partial`, resumable) directory to write a run into."""
    if is_done(run_dir):
        if not force:
            raise RunError(
                f"{run_dir} is finished", "Pass --force to recompute it (the old run is kept)."
            )
        target = replaced_dir(run_dir, runs_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        run_dir.rename(target)
    elif run_dir.exists() and not keep_partial:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir
