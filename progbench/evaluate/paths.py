"""`progbench evaluate PATH`: score whatever PATH holds, a predictions file, one run, or a tree.

A tree is evaluated, aggregated and written as the results table beside its runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

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
    # Rows of a `progbench predict` table that the run trained on (`part` = train): left out of
    # the score, since a model scored on its own training images says nothing.
    left_out_train: int = 0


def evaluate_path(cfg: EvaluateConfig, progress: ProgressFn | None = None) -> PathEvaluation:
    path = cfg.path
    if not cfg.tree_only:
        if path.is_file():
            preds, left_out = _without_training_rows(read_predictions_file(path), path)
            single = evaluate_predictions(preds, cfg.threshold)
            return PathEvaluation(path, single=single, left_out_train=left_out)
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


def _without_training_rows(preds: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, int]:
    """A predict table's rows whose `part` is train (the run fitted them) are dropped, counted."""
    if "part" not in preds.columns:
        return preds, 0
    trained = (preds["part"].astype(str).str.strip() == "train").to_numpy()
    if trained.all():
        raise RunError(
            f"every row of {path} is an image the run trained on (part = train): nothing to score",
            "Predict on images the run did not train on (its test or validation fold, or new ones).",
        )
    return preds[~trained].reset_index(drop=True), int(trained.sum())
