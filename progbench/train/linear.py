"""Linear probing and few-shot grids from the feature cache (`progbench train --strategy lp`).

Per fold: standardise with the training part's features, then solve every problem of the fold
(full-data LP, and every (k, repeat) few-shot draw) with the batched probe solver, and write one
run directory per problem through the shared run format and evaluator. Finished runs are skipped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from progbench.atomic import atomic_write_with
from progbench.cache.featurestore import FeatureStore
from progbench.data.manifest import Task
from progbench.data.splits import Fold, Splits
from progbench.runs import RunCost, RunSpec, finish_run, run_dir_for, write_spec
from progbench.train.probe import ProbeConfig, ProbeFit, fit_probes, standardiser
from progbench.train.rundirs import is_finished_match, prepare_run_dir

ProgressFn = Callable[[int, int], None]
# Folds solved at once. Each uses one core; more threads than cores only adds contention.
SOLVER_THREADS = max(1, min(4, os.cpu_count() or 1))


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
        "probe": {"lrs": list(cfg.lrs), "weight_decays": list(cfg.weight_decays)},
        "max_steps": cfg.max_steps,
        "patience": cfg.patience,
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

    # Each fold is solved on one core (see probe.single_thread); folds are solved on parallel
    # threads (torch releases the GIL inside ops), and a writer thread writes and scores each
    # solved fold's runs in order while the next folds solve.
    failed = threading.Event()

    def solve(fold: Fold, todo: list[Problem]) -> SolvedFold | None:
        return None if failed.is_set() else _solve_fold(task, fold, todo, x, pos, cfg)

    def write(solved: Future[SolvedFold | None]) -> None:
        result = solved.result()
        if failed.is_set() or result is None:
            return
        try:
            done(_write_fold(task, result, runs_root, force, ctx))
        except BaseException:
            failed.set()
            raise

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
    with (
        ThreadPoolExecutor(SOLVER_THREADS, thread_name_prefix="lp-solver") as solver,
        ThreadPoolExecutor(1, thread_name_prefix="lp-writer") as writer,
    ):
        solved = [solver.submit(solve, fold, todo) for fold, todo in jobs]
        written = [writer.submit(write, s) for s in solved]
        try:
            for f in written:
                f.result()  # re-raise the first error, if any
        except BaseException:
            failed.set()
            raise
    if progress and not summary.written:
        progress(len(summary.skipped), total)
    summary.seconds = time.perf_counter() - start
    return summary


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


def _write_fold(
    task: Task, solved: SolvedFold, runs_root: Path, force: bool, ctx: LPContext
) -> list[Path]:
    todo, xs, mean, std = solved.todo, solved.xs, solved.mean, solved.std
    val_rows, test_rows, per_run_s = solved.val_rows, solved.test_rows, solved.per_run_s
    df = task.manifest.frame
    written = []
    for j, p in enumerate(todo):
        fit = solved.fits[j]
        run_dir = prepare_run_dir(run_dir_for(runs_root, p.spec), runs_root, force)
        extra = p.spec.extra | {
            "selected": {
                "lr": fit.lr,
                "weight_decay": fit.weight_decay,
                "best_step": fit.best_step,
            },
            "val_loss": fit.val_loss,
            "n_train": len(p.train_ids),
        }
        write_spec(run_dir, p.spec.model_copy(update={"extra": extra}))
        parts = []
        for split, rows in (("val", val_rows), ("test", test_rows)):
            parts.append(
                pd.DataFrame(
                    {
                        "image_id": df["image_id"].to_numpy()[rows],
                        "patient_id": df["patient_id"].to_numpy()[rows],
                        "split": split,
                        "y_true": task.labels[rows],
                        "p_pos": fit.predict(xs[rows]),
                    }
                )
            )
        head = xs.shape[1] + 1  # one logistic-regression weight per feature, plus the bias
        total = head + (ctx.encoder_params or 0)
        cost = RunCost(
            wall_time_s=round(per_run_s, 4),
            trainable=head,
            total=total,
            trainable_percent=round(100 * head / total, 4),
        )
        save_probe(run_dir, fit, mean, std)
        finish_run(run_dir, pd.concat(parts, ignore_index=True), cost=cost)
        written.append(run_dir)
    return written


PROBE_FILE = "probe.safetensors"


def save_probe(run_dir: Path, fit: ProbeFit, mean: np.ndarray, std: np.ndarray) -> None:
    """The head and its standardisation, so `progbench predict` can apply the run to new images."""
    tensors = {
        "weight": torch.from_numpy(np.asarray(fit.weight, dtype=np.float32)),
        "bias": torch.tensor([fit.bias], dtype=torch.float32),
        "mean": torch.from_numpy(np.asarray(mean, dtype=np.float32)),
        "std": torch.from_numpy(np.asarray(std, dtype=np.float32)),
    }
    atomic_write_with(run_dir / PROBE_FILE, lambda tmp: save_file(tensors, str(tmp)))


def load_probe(run_dir: Path) -> tuple[ProbeFit, np.ndarray, np.ndarray]:
    t = load_file(str(run_dir / PROBE_FILE))
    fit = ProbeFit(t["weight"].double().numpy(), float(t["bias"][0]), 0.0, 0.0, float("nan"), -1)
    return fit, t["mean"].numpy(), t["std"].numpy()


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
