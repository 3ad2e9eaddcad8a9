"""`progbench evaluate PATH`: score whatever PATH holds, a predictions file, one run, or a tree.

A tree is evaluated, aggregated and written as the results table beside its runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progbench.errors import RunError
from progbench.evaluate.aggregate import DEFAULT_N_BOOT, DEFAULT_SEED
from progbench.evaluate.metrics import evaluate_predictions
from progbench.evaluate.results import ProgressFn, TreeEvaluation, evaluate_tree, write_results
from progbench.evaluate.thresholds import DEFAULT_POLICY
from progbench.runs import is_run_dir, read_predictions_file, read_run


@dataclass(frozen=True)
class EvaluateConfig:
    path: Path
    threshold: str = DEFAULT_POLICY
    n_boot: int = DEFAULT_N_BOOT
    seed: int = DEFAULT_SEED
    jobs: int = 1
    write: bool = True  # publish the tree's results table beside its runs
    tree_only: bool = False  # `report`: PATH must be a tree of runs


@dataclass(frozen=True)
class PathEvaluation:
    """Metrics per split of one file or run, or the evaluation of a tree and its table files."""

    path: Path
    single: dict[str, dict[str, Any]] | None = None
    tree: TreeEvaluation | None = None
    written: tuple[Path, Path] | None = None  # results.parquet, results.csv


def evaluate_path(cfg: EvaluateConfig, progress: ProgressFn | None = None) -> PathEvaluation:
    path = cfg.path
    if not cfg.tree_only:
        if path.is_file():
            preds = read_predictions_file(path)
            return PathEvaluation(path, single=evaluate_predictions(preds, cfg.threshold))
        if is_run_dir(path):
            preds = read_run(path).predictions
            return PathEvaluation(path, single=evaluate_predictions(preds, cfg.threshold))
        if not path.is_dir():
            raise RunError(
                f"not found: {path}", "Give a run directory, a tree of runs or a predictions file."
            )
    tree = evaluate_tree(
        path, cfg.threshold, n_boot=cfg.n_boot, seed=cfg.seed, n_jobs=cfg.jobs, progress=progress
    )
    written = write_results(tree.results, path) if cfg.write else None
    return PathEvaluation(path, tree=tree, written=written)
