"""The feature path: linear probes, scikit-learn baselines (kNN, SVM, forests...) and few-shot
grids from the feature cache (`progbench train --strategy lp|knn|...`: every strategy whose path
is "features").

Per fold: standardise with the training part's features, then solve every problem of the fold
(full-data run, and every (k, repeat) few-shot draw) with the strategy's feature solver
(progbench.train.heads) once per feature variant asked for and offered, keep per
problem the head validation prefers (lowest class-weighted log loss; ties: the first variant),
and write one run directory per problem through the shared run format and evaluator. Finished
runs are skipped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from progbench.cache.featurestore import FeatureStore
from progbench.config import TokenLayout, Variant
from progbench.data.manifest import Task
from progbench.data.splits import Fold
from progbench.errors import ConfigError
from progbench.runs import Claims, RunCost, claim_run, claims, run_dir_for
from progbench.train.heads import FeatureHead, FeatureSolver
from progbench.train.plan import Problem
from progbench.train.probe import ProbeConfig, load_probe, standardiser
from progbench.train.runwriter import RunToWrite, sha256, write_runs
from progbench.train.writers import feature_writer

__all__ = ["FeatureContext", "feature_settings", "load_probe", "run_feature_probes"]

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class FeatureContext:
    """What identifies the features the probes (LP heads, scikit-learn estimators) are trained on."""

    backbone: str
    weights: str
    weights_fingerprint: str
    feature_store: str  # key
    encoder_params: int | None = None
    strategy: str = "lp"

    def identity(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "weights": self.weights,
            "weights_fingerprint": self.weights_fingerprint,
            "strategy": self.strategy,
        }


@dataclass
class FeatureSummary:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def feature_settings(ctx: FeatureContext, cfg: FeatureSolver) -> dict[str, Any]:
    """What, besides the data, decides a feature-path run's predictions."""
    return {"features": ctx.feature_store} | cfg.identity()


def run_feature_probes(
    task: Task,
    problems: list[Problem],
    features: FeatureStore | np.ndarray,
    ctx: FeatureContext,
    runs_root: Path,
    cfg: FeatureSolver | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    layout: TokenLayout | None = None,
) -> FeatureSummary:
    """Write every run of `problems` under `runs_root`; returns what was written and skipped.

    `features` is a feature store or an array aligned with the manifest's rows (the streaming
    path of the parity test; `layout` says what its columns hold, default one feature). Runs are
    claimed first (runs.lifecycle): runs another process holds are done after it, by that
    process or, if it died, by this one.
    """
    feature_solver: FeatureSolver = cfg or ProbeConfig()
    start = time.perf_counter()
    ids = task.manifest.frame["image_id"].tolist()
    x = features.load(ids) if isinstance(features, FeatureStore) else np.asarray(features)
    x = x.astype(np.float32)
    if isinstance(features, FeatureStore):
        layout = features.layout
    layout = layout or TokenLayout.single(x.shape[1])
    space = _FeatureSpace(x, layout, _variants(feature_solver, layout))
    pos = {iid: i for i, iid in enumerate(ids)}
    summary = FeatureSummary()
    total = len(problems)

    def count(paths: list[Path]) -> None:
        summary.written.extend(paths)
        if progress:
            progress(len(summary.written) + len(summary.skipped), total)

    # This thread solves fold after fold while a writer (progbench.train.writers) writes and
    # scores the solved folds' runs.
    with claims(runs_root) as held, threadpool_limits(1), feature_writer(total) as writer:
        solver = _FoldSolver(
            task, space, pos, feature_solver, ctx, runs_root, force, writer, held, count
        )
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
    space: _FeatureSpace
    pos: dict[str, int]
    cfg: FeatureSolver
    ctx: FeatureContext
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
        solved = _solve_fold(self.task, todo[0].fold, todo, self.space, self.pos, self.cfg)
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


@dataclass(frozen=True)
class _FeatureSpace:
    """The store's columns, what they hold, and the variants this call searches."""

    x: np.ndarray  # (N, layout.width)
    layout: TokenLayout
    variants: list[Variant]


def _variants(cfg: FeatureSolver, layout: TokenLayout) -> list[Variant]:
    asked = cfg.asked_variants()
    found = [v for v in asked if v in layout.offer]
    if not found:
        raise ConfigError(
            f"none of the feature variants asked for ({', '.join(v.name for v in asked)}) is "
            f"offered by these features ({', '.join(v.name for v in layout.offer)})",
            "Ask for one the backbone's YAML offers under `variants:`, e.g. cls1.",
        )
    return found


@dataclass(frozen=True)
class _Chosen:
    """The head a problem keeps, with what chose it."""

    head: FeatureHead
    variant: Variant
    search: list[dict[str, Any]]  # per variant: its best validation loss
    p_pos: np.ndarray  # on the fold's validation then test rows
    mean: np.ndarray
    std: np.ndarray


@dataclass
class SolvedFold:
    todo: list[Problem]
    chosen: list[_Chosen]
    val_rows: np.ndarray
    test_rows: np.ndarray
    per_run_s: float


def _solve_fold(
    task: Task,
    fold: Fold,
    todo: list[Problem],
    space: _FeatureSpace,
    pos: dict[str, int],
    cfg: FeatureSolver,
) -> SolvedFold:
    t0 = time.perf_counter()
    train_rows = np.array([pos[i] for i in fold.train])
    mean, std = standardiser(space.x[train_rows])  # training images only; labels unused
    xs = (space.x - mean) / std  # per column: a variant's columns are standardised alike
    val_rows = np.array([pos[i] for i in fold.val])
    test_rows = np.array([pos[i] for i in fold.test])
    held_out = np.concatenate([val_rows, test_rows])
    rows = [np.array([pos[i] for i in p.train_ids]) for p in todo]
    best: list[_Chosen | None] = [None] * len(todo)
    search: list[list[dict[str, Any]]] = [[] for _ in todo]
    for v in space.variants:
        xv = space.layout.select(xs, v)
        heads = _fit_by_size(cfg, xv, task.labels, rows, val_rows)
        cols = space.layout.columns(v) if xv is not xs else slice(None)
        for j, head in enumerate(heads):
            search[j].append({"variant": v.name, "val_loss": head.val_loss})
            kept = best[j]
            if kept is None or head.val_loss < kept.head.val_loss:  # ties: the first variant
                p_pos = head.predict(xv[held_out])
                best[j] = _Chosen(head, v, search[j], p_pos, mean[cols], std[cols])
    per_run_s = (time.perf_counter() - t0) / len(todo)
    chosen = [c for c in best if c is not None]
    return SolvedFold(todo, chosen, val_rows, test_rows, per_run_s)


def _fit_by_size(
    cfg: FeatureSolver,
    x: np.ndarray,
    y: np.ndarray,
    rows: list[np.ndarray],
    val_rows: np.ndarray,
) -> list[FeatureHead]:
    """Problems of very different sizes are solved apart, so small ones are not padded to large."""
    heads: dict[int, FeatureHead] = {}
    for group in _by_size([len(r) for r in rows]):
        fitted = cfg.fit(x, y, [rows[j] for j in group], val_rows)
        heads.update(zip(group, fitted, strict=True))
    return [heads[j] for j in range(len(rows))]


def _runs_to_write(task: Task, solved: SolvedFold, ctx: FeatureContext) -> list[RunToWrite]:
    df = task.manifest.frame
    rows = np.concatenate([solved.val_rows, solved.test_rows])
    base = {
        "image_id": df["image_id"].to_numpy()[rows],
        "patient_id": df["patient_id"].to_numpy()[rows],
        "split": np.array(["val"] * len(solved.val_rows) + ["test"] * len(solved.test_rows)),
        "y_true": task.labels[rows],
    }
    out = []
    for p, c in zip(solved.todo, solved.chosen, strict=True):
        files = c.head.files(c.mean.astype(np.float32), c.std.astype(np.float32))
        extra = p.spec.extra | {
            "selected": c.head.selected() | {"variant": c.variant.name},
            "variant": c.variant.name,
            "val_loss": c.head.val_loss,
            "n_train": len(p.train_ids),
            "files_sha256": {name: sha256(data) for name, data in files.items()},
        }
        if len(c.search) > 1:
            extra["variant_search"] = c.search
        out.append(
            RunToWrite(
                spec=p.spec.model_copy(update={"extra": extra}),
                predictions=pd.DataFrame(base | {"p_pos": c.p_pos}),
                files=files,
                cost=_cost(c.head.trainable, ctx, solved.per_run_s),
            )
        )
    return out


def _cost(trainable: int | None, ctx: FeatureContext, per_run_s: float) -> RunCost:
    if trainable is None:  # a head whose size is not a parameter count (kNN, forests)
        return RunCost(wall_time_s=round(per_run_s, 4))
    total = trainable + (ctx.encoder_params or 0)
    return RunCost(
        wall_time_s=round(per_run_s, 4),
        trainable=trainable,
        total=total,
        trainable_percent=round(100 * trainable / total, 4),
    )


def _by_size(sizes: list[int]) -> list[list[int]]:
    """Group problem indices so each group's sizes are within a factor of 4 of its smallest."""
    order = sorted(range(len(sizes)), key=lambda j: sizes[j])
    groups: list[list[int]] = []
    for j in order:
        if groups and sizes[j] <= 4 * sizes[groups[-1][0]]:
            groups[-1].append(j)
        else:
            groups.append([j])
    return groups
