"""Linear probing and few-shot grids from the feature cache (`progbench train --strategy lp`).

Per fold: standardise with the training part's features, then solve every problem of the fold
(full-data LP, and every (k, repeat) few-shot draw) with the batched probe solver, and write one
run directory per problem through the shared run format and evaluator. Finished runs are skipped.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from progbench.cache.featurestore import FeatureStore
from progbench.data.manifest import Task
from progbench.data.splits import Fold, Splits
from progbench.runs import RunCost, RunSpec, run_dir_for
from progbench.train.probe import ProbeConfig, ProbeFit, fit_probes, standardiser

__all__ = ["LPContext", "load_probe", "run_linear_probes", "save_probe"]
from progbench.train.lpruns import RunToWrite, load_probe, save_probe, write_runs
from progbench.train.rundirs import is_finished_match

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class LPContext:
    """What identifies the features the probes are trained on."""

    backbone: str
    weights: str
    weights_fingerprint: str
    feature_store: str  # key
    encoder_params: int | None = None


@dataclass
class LPSummary:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class Problem:
    spec: RunSpec
    train_ids: list[str]


def problems_for_fold(
    task: Task,
    splits: Splits,
    fold: Fold,
    ctx: LPContext,
    full: bool,
    fewshot: bool,
    cfg: ProbeConfig,
) -> list[Problem]:
    base = {
        "task": task.name,
        "backbone": ctx.backbone,
        "weights": ctx.weights,
        "weights_fingerprint": ctx.weights_fingerprint,
        "strategy": "lp",
        "fold": fold.fold,
        "seed": splits.seed,
        "scheme": splits.scheme,
    }
    extra = {
        "feature_store": ctx.feature_store,
        "test_center": fold.test_center,
        "outcome": task.config.outcome,
        "positive": str(task.config.positive),
        "probe": cfg.describe(),
    }
    out = []
    if full:
        out.append(Problem(RunSpec(**base, regime="full", extra=extra), fold.train))
    if fewshot:
        per_center = bool((splits.fewshot_config or {}).get("per_center"))
        regime = "fewshot-center" if per_center else "fewshot"
        for d in fold.fewshot:
            spec = RunSpec(**base, regime=regime, shots=d.shots, repeat=d.repeat, extra=extra)
            out.append(Problem(spec, d.train))
    return out


def run_linear_probes(
    task: Task,
    splits: Splits,
    features: FeatureStore | np.ndarray,
    ctx: LPContext,
    runs_root: Path,
    cfg: ProbeConfig | None = None,
    full: bool = True,
    fewshot: bool = True,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> LPSummary:
    """Write every LP run of `splits` under `runs_root`; returns what was written and skipped.

    `features` is a feature store or an array aligned with the manifest's rows (the streaming
    path of the parity test).
    """
    cfg = cfg or ProbeConfig()
    start = time.perf_counter()
    df = task.manifest.frame
    ids = df["image_id"].tolist()
    x = features.load(ids) if isinstance(features, FeatureStore) else np.asarray(features)
    x = x.astype(np.float32)
    pos = {iid: i for i, iid in enumerate(ids)}
    summary = LPSummary()
    all_problems = [
        (
            fold,
            problems_for_fold(task, splits, fold, ctx, full, fewshot and bool(fold.fewshot), cfg),
        )
        for fold in splits.folds
    ]
    total = sum(len(p) for _, p in all_problems)

    def done(paths: list[Path]) -> None:
        summary.written.extend(paths)
        if progress:
            progress(len(summary.written) + len(summary.skipped), total)

    jobs = []
    for fold, problems in all_problems:
        todo = []
        for p in problems:
            d = run_dir_for(runs_root, p.spec)
            if is_finished_match(d, p.spec, force):
                summary.skipped.append(d)
            else:
                todo.append(p)
        if todo:
            jobs.append((fold, todo))
    # This thread solves fold after fold while a writer writes and scores the solved folds'
    # runs. Writing (pandas, parquet, scikit-learn metrics) holds the GIL and costs more than
    # solving, so big grids write in two worker processes; small ones in one thread, which
    # starts at once.
    n_runs = sum(len(todo) for _, todo in jobs)
    with threadpool_limits(1), _writer(n_runs) as writer:  # one BLAS thread: 2x faster here
        pending: deque[Future[list[Path]]] = deque()
        for fold, todo in jobs:
            solved = _solve_fold(task, fold, todo, x, pos, cfg)
            items = _runs_to_write(task, solved, ctx)
            pending.append(writer.submit(write_runs, items, runs_root, force))
            while pending and pending[0].done():  # progress is reported from this thread only
                done(pending.popleft().result())
        while pending:
            done(pending.popleft().result())
    if progress and not summary.written:
        progress(len(summary.skipped), total)
    summary.seconds = time.perf_counter() - start
    return summary


# Runs at or above this count are written by worker processes (measured: the 130-run
# AIforCOVID-sized grid took 10 s with a writer thread, 7 s with two processes on 2 cores).
PROCESS_WRITERS_FROM = 60


def _writer(n_runs: int) -> Executor:
    if n_runs >= PROCESS_WRITERS_FROM:
        return ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver"))
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
    head = solved.xs.shape[1] + 1  # one logistic-regression weight per feature, plus the bias
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
