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
from progbench.runs import RunSpec, is_done, read_spec


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


# Spec fields that must match for a finished run to stand for the one asked for: the run path
# (task/backbone/strategy/regime/fold[/k/repeat]) does not hold the weights or the split seed.
IDENTITY_FIELDS = ("weights_fingerprint", "scheme", "seed")


def is_finished_match(run_dir: Path, spec: RunSpec, force: bool) -> bool:
    """True when `run_dir` holds a finished run of `spec` (skip it). A finished run made with
    other weights or splits is an error rather than a silent skip, unless `force`."""
    if force or not is_done(run_dir):
        return False
    try:
        old = read_spec(run_dir)
    except RunError:
        return True  # unreadable spec: reading the run will say so; never recompute silently
    diff = [
        f"{f}: {getattr(old, f)!r} there, {getattr(spec, f)!r} now"
        for f in IDENTITY_FIELDS
        if getattr(old, f) != getattr(spec, f)
    ]
    if diff:
        raise RunError(
            f"{run_dir} is a finished run of another setup ({'; '.join(diff)})",
            "Use another --runs folder for this setup, or pass --force to replace it (the old "
            "run is moved to .replaced/).",
        )
    return True
