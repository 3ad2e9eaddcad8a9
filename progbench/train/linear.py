"""Linear probing and few-shot grids from the feature cache (`progbench train --strategy lp`).

Per fold: standardise with the training part's features, then solve every problem of the fold
(full-data LP, and every (k, repeat) few-shot draw) with the batched probe solver, and write one
run directory per problem through the shared run format and evaluator. Finished runs are skipped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from progbench.cache.featurestore import FeatureStore
from progbench.data.manifest import Task
from progbench.data.splits import Fold
from progbench.models.params import linear_head_parameters
from progbench.runs import Claims, RunCost, claim_run, claims, run_dir_for
from progbench.train.lpruns import RunToWrite, load_probe, save_probe, write_runs
from progbench.train.plan import Problem
from progbench.train.probe import ProbeConfig, ProbeFit, fit_probes, standardiser
from progbench.workers import worker_pool

__all__ = ["LPContext", "load_probe", "run_linear_probes", "save_probe"]

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class LPContext:
    """What identifies the features the probes are trained on."""

    backbone: str
    weights: str
    weights_fingerprint: str
    feature_store: str  # key
    encoder_params: int | None = None

    def identity(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "weights": self.weights,
            "weights_fingerprint": self.weights_fingerprint,
            "strategy": "lp",
        }


@dataclass
class LPSummary:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def lp_settings(ctx: LPContext, cfg: ProbeConfig) -> dict[str, Any]:
    """What, besides the data, decides an LP run's predictions."""
    return {"features": ctx.feature_store, "probe": cfg.describe()}


def run_linear_probes(
    task: Task,
    problems: list[Problem],
    features: FeatureStore | np.ndarray,
    ctx: LPContext,
    runs_root: Path,
    cfg: ProbeConfig | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> LPSummary:
    """Write every LP run of `problems` under `runs_root`; returns what was written and skipped.

    `features` is a feature store or an array aligned with the manifest's rows (the streaming
    path of the parity test). Runs are claimed first (runs.lifecycle): runs another process holds
    are done after it, by that process or, if it died, by this one.
    """
    cfg = cfg or ProbeConfig()
    start = time.perf_counter()
    ids = task.manifest.frame["image_id"].tolist()
    x = features.load(ids) if isinstance(features, FeatureStore) else np.asarray(features)
    x = x.astype(np.float32)
    pos = {iid: i for i, iid in enumerate(ids)}
    summary = LPSummary()
    total = len(problems)

    def count(paths: list[Path]) -> None:
        summary.written.extend(paths)
        if progress:
            progress(len(summary.written) + len(summary.skipped), total)

    # This thread solves fold after fold while a writer writes and scores the solved folds'
    # runs. Writing (pandas, parquet, scikit-learn metrics) holds the GIL and costs more than
    # solving, so big grids write in two worker processes; small ones in one thread, which
    # starts at once.
    with claims(runs_root) as held, threadpool_limits(1), _writer(total) as writer:
        solver = _FoldSolver(task, x, pos, cfg, ctx, runs_root, force, writer, held, count)
        busy = solver.first_pass(problems, summary.skipped)
        solver.drain()
        for p in busy:  # held by another process: wait for it, then skip or take over
            if claim_run(held, run_dir_for(runs_root, p.spec), p.spec, force, wait=True):
                solver.submit([p])
            else:
                summary.skipped.append(run_dir_for(runs_root, p.spec))
        solver.drain()
    if progress and not summary.written:
        progress(len(summary.skipped), total)
    summary.seconds = time.perf_counter() - start
    return summary


@dataclass
class _FoldSolver:
    """Solves claimed problems fold by fold and hands them to the writer; releases each claim
    once its run is written."""

    task: Task
    x: np.ndarray
    pos: dict[str, int]
    cfg: ProbeConfig
    ctx: LPContext
    runs_root: Path
    force: bool
    writer: Executor
    held: Claims
    count: Callable[[list[Path]], None]
    pending: deque[tuple[Future[list[Path]], list[Path]]] = field(default_factory=deque)

    def first_pass(self, problems: list[Problem], skipped: list[Path]) -> list[Problem]:
        """Solve what this process can claim now; return the problems others hold."""
        busy: list[Problem] = []
        by_fold: dict[int, list[Problem]] = {}
        for p in problems:
            by_fold.setdefault(p.spec.fold, []).append(p)
        for fold_problems in by_fold.values():
            mine = []
            for p in fold_problems:
                d = run_dir_for(self.runs_root, p.spec)
                state = claim_run(self.held, d, p.spec, self.force)
                if state is None:
                    busy.append(p)
                elif state:
                    mine.append(p)
                else:
                    skipped.append(d)
            if mine:
                self.submit(mine)
        return busy

    def submit(self, todo: list[Problem]) -> None:
        solved = _solve_fold(self.task, todo[0].fold, todo, self.x, self.pos, self.cfg)
        items = _runs_to_write(self.task, solved, self.ctx)
        dirs = [run_dir_for(self.runs_root, p.spec) for p in todo]
        self.pending.append(
            (self.writer.submit(write_runs, items, self.runs_root, self.force), dirs)
        )
        while self.pending and self.pending[0][0].done():  # progress from this thread only
            self._collect()

    def _collect(self) -> None:
        future, dirs = self.pending.popleft()
        try:
            self.count(future.result())
        finally:
            for d in dirs:
                self.held.release(d)

    def drain(self) -> None:
        while self.pending:
            self._collect()


# Runs at or above this count are written by worker processes (measured: the 130-run
# AIforCOVID-sized grid took 10 s with a writer thread, 7 s with two processes on 2 cores).
PROCESS_WRITERS_FROM = 60


def _writer(n_runs: int) -> Executor:
    if n_runs >= PROCESS_WRITERS_FROM:
        return worker_pool(2)
    return ThreadPoolExecutor(1, thread_name_prefix="lp-writer")


@dataclass
class SolvedFold:
    todo: list[Problem]
    fits: list[ProbeFit]
    xs: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray
    per_run_s: float


def _solve_fold(
    task: Task,
    fold: Fold,
    todo: list[Problem],
    x: np.ndarray,
    pos: dict[str, int],
    cfg: ProbeConfig,
) -> SolvedFold:
    t0 = time.perf_counter()
    train_rows = np.array([pos[i] for i in fold.train])
    mean, std = standardiser(x[train_rows])  # training images only; labels unused
    xs = (x - mean) / std
    val_rows = np.array([pos[i] for i in fold.val])
    test_rows = np.array([pos[i] for i in fold.test])
    # Problems of very different sizes are solved apart, so small ones are not padded to large.
    fits: dict[int, ProbeFit] = {}
    for group in _by_size(todo):
        rows = [np.array([pos[i] for i in todo[j].train_ids]) for j in group]
        for j, fit in zip(group, fit_probes(xs, task.labels, rows, val_rows, cfg), strict=True):
            fits[j] = fit
    per_run_s = (time.perf_counter() - t0) / len(todo)
    ordered = [fits[j] for j in range(len(todo))]
    return SolvedFold(todo, ordered, xs, mean, std, val_rows, test_rows, per_run_s)


def _runs_to_write(task: Task, solved: SolvedFold, ctx: LPContext) -> list[RunToWrite]:
    df = task.manifest.frame
    rows = np.concatenate([solved.val_rows, solved.test_rows])
    base = {
        "image_id": df["image_id"].to_numpy()[rows],
        "patient_id": df["patient_id"].to_numpy()[rows],
        "split": np.array(["val"] * len(solved.val_rows) + ["test"] * len(solved.test_rows)),
        "y_true": task.labels[rows],
    }
    # Counted as the 2-way linear head every strategy trains (models.params), so LP's share is
    # the one `progbench models` shows.
    head = linear_head_parameters(solved.xs.shape[1])
    total = head + (ctx.encoder_params or 0)
    cost = RunCost(
        wall_time_s=round(solved.per_run_s, 4),
        trainable=head,
        total=total,
        trainable_percent=round(100 * head / total, 4),
    )
    out = []
    for p, fit in zip(solved.todo, solved.fits, strict=True):
        extra = p.spec.extra | {
            "selected": {
                "lr": fit.lr,
                "weight_decay": fit.weight_decay,
                "best_step": fit.best_step,
            },
            "val_loss": fit.val_loss,
            "n_train": len(p.train_ids),
        }
        out.append(
            RunToWrite(
                spec=p.spec.model_copy(update={"extra": extra}),
                predictions=pd.DataFrame(base | {"p_pos": fit.predict(solved.xs[rows])}),
                probe={
                    "weight": np.asarray(fit.weight, dtype=np.float32),
                    "bias": np.array([fit.bias], dtype=np.float32),
                    "mean": np.asarray(solved.mean, dtype=np.float32),
                    "std": np.asarray(solved.std, dtype=np.float32),
                },
                cost=cost,
            )
        )
    return out


def _by_size(problems: list[Problem]) -> list[list[int]]:
    """Group problem indices so each group's sizes are within a factor of 4 of its smallest."""
    order = sorted(range(len(problems)), key=lambda j: len(problems[j].train_ids))
    groups: list[list[int]] = []
    for j in order:
        n = len(problems[j].train_ids)
        if groups and n <= 4 * len(problems[groups[-1][0]].train_ids):
            groups[-1].append(j)
        else:
            groups.append([j])
    return groups
