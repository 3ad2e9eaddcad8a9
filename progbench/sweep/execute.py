"""The units of work of a sweep, run through the same library functions as `train`.

A unit is an image store, a feature store or a cell. Running one never raises: a failure is
returned as a result with its first error line and the path of a log holding the traceback, so
one cell failing never stops the others. While a unit runs, its lock
(`<runs>/.sweep/<name>/locks/`) is held, so `sweep status` can tell it is running; a finished
cell writes its state (`cells/<cell>.json`) atomically.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from progbench.atomic import atomic_write_json, atomic_write_text
from progbench.errors import ProgbenchError
from progbench.locking import NamedLock
from progbench.provenance import now_iso
from progbench.sweep.cells import FULL, Cell
from progbench.sweep.spec import Sweep, load_sweep

UNIT_KINDS = ("images", "features", "cell")


@dataclass(frozen=True)
class Unit:
    """One piece of work: `kind` images (a task's image store at the options of `strategy`),
    features (task, backbone, at the options of the LP `strategy`) or cell."""

    kind: str
    task: str
    strategy: str
    backbone: str | None = None
    cell: Cell | None = None
    size: int | None = None  # images: the store's side

    @property
    def key(self) -> str:
        if self.cell is not None:
            return self.cell.id
        if self.kind == "images":
            return f"images:{self.task}@{self.size}px"
        return f"features:{self.task}/{self.backbone}"

    @property
    def slug(self) -> str:
        return self.key.replace("/", "__").replace(":", "--")


@dataclass(frozen=True)
class UnitResult:
    key: str
    kind: str
    state: str  # done | failed
    seconds: float
    written: int = 0
    skipped: int = 0
    error: str | None = None
    log: str | None = None


def state_paths(sweep: Sweep, unit: Unit) -> tuple[Path, Path, Path]:
    """(state file, lock file, log file) of a unit."""
    base = sweep.state_dir
    return (
        base / "cells" / f"{unit.slug}.json",
        base / "locks" / f"{unit.slug}.lock",
        base / "logs" / f"{unit.slug}.log",
    )


def _first_line(err: BaseException) -> str:
    if isinstance(err, ProgbenchError):
        return err.message.splitlines()[0]
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".strip()


def _split_request(sweep: Sweep, cell: Cell) -> Any:
    from progbench.train.plan import SplitRequest

    c, fs = sweep.config, sweep.config.fewshot
    has_fewshot = fs is not None and cell.strategy in sweep.fewshot_strategies()
    limit = c.limits.get(sweep.family(cell.strategy))
    return SplitRequest(
        scheme=cell.scheme,
        folds=c.folds,
        val_fraction=c.val_fraction,
        seed=c.seed,
        # Every cell of a task and scheme reads one splits file, with the sweep's draws.
        shots=tuple(fs.shots) if fs is not None and has_fewshot else (),
        repeats=fs.repeats if fs is not None else 5,
        per_center=bool(fs and fs.per_center),
        regimes=("full",) if cell.regime == FULL else ("fewshot",),
        max_folds=limit.folds if limit is not None else None,
    )


def _run_cell(sweep: Sweep, cell: Cell) -> tuple[int, int]:
    from progbench.train.pipeline import TrainRequest, run_train

    task = next(t for t in sweep.tasks if t.name == cell.task)
    if task.task is None:
        hint = f"prepare it with: {task.entry.prepare}" if task.entry.prepare else "prepare it"
        raise ProgbenchError(f"task {task.name} is not prepared ({task.path} does not exist)", hint)
    request = TrainRequest(
        task=task.task,
        backbone=cell.backbone,
        strategy=cell.strategy,
        splits=_split_request(sweep, cell),
        runs_root=sweep.runs_root,
        weights=sweep.weights_for(cell.backbone),
        probe=sweep.config.probe,
        options=sweep.options_for(cell.strategy, cell.task),
    )
    summary = run_train(request, score=False)
    return len(summary.written), len(summary.skipped)


def _run_store(sweep: Sweep, unit: Unit) -> None:
    from progbench.cache.imagestore import ImageStoreParams, build_image_store

    task = next(t for t in sweep.tasks if t.name == unit.task).task
    assert task is not None
    opts = sweep.options_for(unit.strategy, unit.task)
    params = ImageStoreParams(size=opts.image_size)
    if unit.kind == "images":
        build_image_store(task.manifest, params, sweep.cache_dir, opts.workers)
        return
    from progbench.extract.features import extract_features

    assert unit.backbone is not None
    extract_features(
        task.manifest,
        unit.backbone,
        sweep.weights_for(unit.backbone),
        batch_size=opts.batch_size,
        device=opts.device,
        dtype=opts.dtype,
        cache_dir=sweep.cache_dir,
        image_params=params,
    )


@contextmanager
def _weights_dir(path: Path | None) -> Iterator[None]:
    """The sweep's `weights_dir` as $PROGBENCH_WEIGHTS_DIR, the loaders' one source, for a unit."""
    from progbench.models.weights import WEIGHTS_DIR_ENV

    before = os.environ.get(WEIGHTS_DIR_ENV)
    if path is not None:
        os.environ[WEIGHTS_DIR_ENV] = str(path)
    try:
        yield
    finally:
        if path is not None:
            if before is None:
                os.environ.pop(WEIGHTS_DIR_ENV, None)
            else:
                os.environ[WEIGHTS_DIR_ENV] = before


def run_unit(sweep: Sweep, unit: Unit) -> UnitResult:
    """Run one unit under its lock; never raises (see the module docstring)."""
    state_file, lock_file, log_file = state_paths(sweep, unit)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with NamedLock(lock_file, f"sweep unit {unit.key}"), _weights_dir(sweep.weights_dir):
        try:
            written = skipped = 0
            if unit.cell is not None:
                written, skipped = _run_cell(sweep, unit.cell)
            else:
                _run_store(sweep, unit)
            result = UnitResult(
                unit.key, unit.kind, "done", time.perf_counter() - start, written, skipped
            )
        except Exception as err:  # one unit failing never stops the others
            atomic_write_text(log_file, f"{now_iso()} {unit.key}\n{traceback.format_exc()}")
            result = UnitResult(
                unit.key, unit.kind, "failed", time.perf_counter() - start,
                error=_first_line(err), log=str(log_file),
            )  # fmt: skip
        record = asdict(result) | {
            "finished": now_iso(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        atomic_write_json(state_file, record)
    return result


def run_unit_from_file(source: str, root: str, unit: Unit) -> UnitResult:
    """`run_unit` for a worker process or a SLURM job: the sweep is loaded from its file."""
    return run_unit(load_sweep(source, root), unit)
