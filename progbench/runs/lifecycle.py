"""A run's life: taken (locked), checked against what is asked for, prepared, finished.

- **Claims.** Each run is computed under a lock (`fcntl.flock` through filelock, in
  `<runs>/.locks/`). The operating system releases a dead holder's lock, so a killed command never
  blocks the next one. Commands running at once on one tree each compute the runs nobody else
  holds, then wait for the others' runs and take over any whose holder died.
- **Finished runs.** `DONE` means finished: the run is skipped when its identity (RunSpec
  settings, weights fingerprint, seed, scheme) equals the one asked for, and refused, naming
  every differing setting with both values, when it does not (unless `--force`, which moves it
  to `<runs>/.replaced/<time>/`; a run that already has the identity asked for is kept, with or
  without `--force`, so a `--force` command killed and run again redoes only what is left). A
  run whose files no longer match the digests DONE recorded is damaged and refused by name,
  `--force` or not. A spent `state/` left by a kill just after DONE is removed.
- **Finishing.** Predictions, metrics and the cost are written, then DONE, last and atomically.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import Timeout

from progbench.errors import RunError
from progbench.locking import NamedLock
from progbench.runs.files import (
    check_finished_files,
    mark_done,
    read_spec,
    write_clean_predictions,
    write_metrics,
)
from progbench.runs.layout import SPEC_FILE, STATE_DIR, is_done, lock_path, replaced_dir
from progbench.runs.spec import RunCost, RunSpec, identity_diff


class Claims:
    """The run locks this process holds. `take` never waits; `wait` does."""

    def __init__(self, runs_root: Path) -> None:
        self.runs_root = Path(runs_root)
        self._held: dict[Path, NamedLock] = {}

    def _lock(self, run_dir: Path) -> NamedLock:
        path = lock_path(self.runs_root, run_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        return NamedLock(path, f"run {run_dir}", thread_local=False, is_singleton=False)

    def take(self, run_dir: Path) -> bool:
        """Lock `run_dir` if nobody holds it; True when this process now holds it."""
        if run_dir in self._held:
            return True
        lock = self._lock(run_dir)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        self._held[run_dir] = lock
        return True

    def wait(self, run_dir: Path) -> None:
        """Block until `run_dir`'s holder finishes (or dies), then hold it; a wait is announced
        with the lock file and its holder (progbench.locking)."""
        if run_dir not in self._held:
            lock = self._lock(run_dir)
            lock.acquire()
            self._held[run_dir] = lock

    def release(self, run_dir: Path) -> None:
        lock = self._held.pop(run_dir, None)
        if lock is not None:
            lock.release()

    def release_all(self) -> None:
        for run_dir in list(self._held):
            self.release(run_dir)


@contextmanager
def claims(runs_root: Path) -> Iterator[Claims]:
    held = Claims(runs_root)
    try:
        yield held
    finally:
        held.release_all()


def prepare_run_dir(
    run_dir: Path, runs_root: Path, force: bool, keep_partial: bool = False
) -> Path:
    """An empty (or, with `keep_partial`, resumable) directory to write a run into. The caller
    holds the run's claim."""
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


def is_finished_match(run_dir: Path, spec: RunSpec, force: bool) -> bool:
    """True when `run_dir` holds a finished run of `spec` (skip it), with or without `force`:
    `--force` replaces only runs of another identity, so a `--force` command killed half-way
    and run again keeps the runs it had already made. A finished run of another identity is an
    error naming each differing setting, unless `force` (then False: it is replaced). A finished
    run whose files no longer match the digests DONE recorded is damaged: an error naming the
    file, whatever `force` says (runs.files.check_finished_files, the check evaluate makes)."""
    if not is_done(run_dir):
        return False
    shutil.rmtree(run_dir / STATE_DIR, ignore_errors=True)  # spent: DONE was written
    check_finished_files(run_dir)
    try:
        old = read_spec(run_dir)
    except RunError:
        # A spec this version cannot read (its digest matches): reading the run will say so;
        # never recompute it silently, only when asked to replace it.
        return not force
    diff = identity_diff(old, spec)
    if not diff:
        return True
    if force:
        return False
    shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
    raise RunError(
        f"{run_dir} is a finished run of another setup; what differs: {shown}",
        "Use another --runs folder for this setup, or pass --force to replace it (the old "
        "run is moved to .replaced/)." + _features_hint(diff),
    )


def _features_hint(diff: list[str]) -> str:
    """Runs on features differ by the feature store's key; name the one change of its format."""
    if not any(d.startswith("features:") for d in diff):
        return ""
    return (
        " The feature-store key changes with the image store, the weights, the transform and the "
        "feature definition; stores made by progbench up to commit babab05 were also keyed by "
        "the backbone's `note`, so runs on them match only while that note is unchanged: if "
        "only the note was reworded since, --force retrains these runs on the same features "
        "(docs/DESIGN_NOTES.md, 14)."
    )


def finish_run(
    run_dir: str | os.PathLike[str],
    predictions: pd.DataFrame,
    metrics: Mapping[str, Mapping[str, Any]],
    cost: RunCost | None = None,
) -> None:
    """End a run the same way on every training path: the (validated) predictions, the
    evaluator's metrics and the cost, then DONE. spec.json must already exist."""
    run_dir = Path(run_dir)
    if not (run_dir / SPEC_FILE).is_file():
        raise RunError(f"cannot finish {run_dir}: no {SPEC_FILE}", "Call write_spec first.")
    write_clean_predictions(run_dir, predictions)
    write_metrics(run_dir, metrics, cost)
    mark_done(run_dir)


def claim_run(
    held: Claims, run_dir: Path, spec: RunSpec, force: bool, wait: bool = False
) -> bool | None:
    """Whether this process must compute `spec` at `run_dir`: True (claimed, not finished),
    False (finished: skip it) or None (another process holds it; only when not `wait`)."""
    if is_finished_match(run_dir, spec, force):
        return False
    if wait:
        held.wait(run_dir)
    elif not held.take(run_dir):
        return None
    if is_finished_match(run_dir, spec, force):  # finished while we were deciding
        held.release(run_dir)
        return False
    return True
