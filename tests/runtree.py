"""Fake run trees for report tests: real run directories (spec, predictions, metrics, DONE) written
with progbench.runs, whose scores come from known distributions, so no model is needed.

Scores are sigmoid(effect * (2 y - 1) + noise): a larger effect separates the classes better,
so strategies and backbones have a known quality order. Every random draw is seeded from the
run's identity, so a tree is a pure function of its TreeSpec.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from progbench.evaluate.finish import finish_scored_run
from progbench.runs import RunCost, RunSpec, is_done, run_dir_for, write_spec

# % of parameters each strategy trains (order of magnitude of the reference study's values).
TRAINABLE_PERCENT = {"fft": 100.0, "lp": 0.01, "lora-r8": 1.2, "bitfit": 0.1, "ia3": 0.05}


@dataclass(frozen=True)
class TreeSpec:
    tasks: tuple[str, ...] = ("death", "severity")
    # resnet18 is a CNN and dinov2-s a foundation model in the registry; fake-net is unknown.
    backbones: tuple[str, ...] = ("resnet18", "dinov2-s", "fake-net")
    strategies: tuple[str, ...] = ("fft", "lp", "lora-r8")
    folds: int = 3
    shots: tuple[int, ...] = (2, 8)
    repeats: int = 2
    fewshot_tasks: tuple[str, ...] = ("severity",)
    fewshot_backbones: tuple[str, ...] = ("resnet18", "dinov2-s")
    fewshot_strategies: tuple[str, ...] = ("lp", "lora-r8")
    n_test: int = 30
    n_val: int = 12
    prevalence: float = 0.4
    # Class separation per strategy and per backbone (added); few-shot scales it by k / (k + 4).
    strategy_effect: dict[str, float] = field(
        default_factory=lambda: {"fft": 1.6, "lp": 0.9, "lora-r8": 1.2, "bitfit": 1.0}
    )
    backbone_effect: dict[str, float] = field(
        default_factory=lambda: {"resnet18": 0.3, "dinov2-s": 0.0, "fake-net": -0.2}
    )


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


def _labels(task: str, fold: int, split: str, n: int, prevalence: float) -> np.ndarray:
    # Shared by every run of a (task, fold): matched runs score the same patients.
    y = (_rng(task, fold, split, "y").random(n) < prevalence).astype(int)
    y[:2] = [0, 1]  # both classes always present
    return y


def predictions_for(spec: RunSpec, tree: TreeSpec) -> pd.DataFrame:
    effect = tree.strategy_effect.get(spec.strategy, 1.0) + tree.backbone_effect.get(
        spec.backbone, 0.0
    )
    if spec.shots is not None:
        effect *= spec.shots / (spec.shots + 4)
    rows = []
    for split, n in (("val", tree.n_val), ("test", tree.n_test)):
        y = _labels(spec.task, spec.fold, split, n, tree.prevalence)
        noise = _rng(
            spec.task, spec.backbone, spec.strategy, spec.fold, spec.shots, spec.repeat, split
        ).normal(0.0, 1.0, n)
        p = 1.0 / (1.0 + np.exp(-(effect * (2 * y - 1) + noise)))
        for i in range(n):
            pid = f"{split}-f{spec.fold}-{i:03d}"
            rows.append((f"{pid}-img", pid, split, int(y[i]), float(p[i])))
    return pd.DataFrame(rows, columns=["image_id", "patient_id", "split", "y_true", "p_pos"])


def cost_for(spec: RunSpec) -> RunCost:
    percent = TRAINABLE_PERCENT.get(spec.strategy, 1.0)
    size = {"resnet18": 11.2e6, "dinov2-s": 22.1e6}.get(spec.backbone, 5e6)
    wall = 10.0 + 0.5 * spec.fold + (50.0 if spec.strategy == "fft" else 5.0)
    return RunCost(
        wall_time_s=wall,
        device_time_s=wall * 0.8,
        peak_host_mb=1000.0 + size / 1e5,
        peak_device_mb=None,
        trainable=round(size * percent / 100),
        total=round(size),
        trainable_percent=percent,
    )


def iter_specs(tree: TreeSpec) -> list[RunSpec]:
    specs = []
    for task in tree.tasks:
        for backbone in tree.backbones:
            common = dict(task=task, backbone=backbone, weights="random", scheme="kfold")
            for strategy in tree.strategies:
                for fold in range(tree.folds):
                    specs.append(RunSpec(strategy=strategy, regime="full", fold=fold, **common))
            if task not in tree.fewshot_tasks or backbone not in tree.fewshot_backbones:
                continue
            for strategy in tree.fewshot_strategies:
                for k in tree.shots:
                    for rep in range(tree.repeats):
                        for fold in range(tree.folds):
                            specs.append(
                                RunSpec(
                                    strategy=strategy,
                                    regime="fewshot",
                                    fold=fold,
                                    shots=k,
                                    repeat=rep,
                                    seed=42 + rep,
                                    **common,
                                )
                            )
    return specs


def write_run_tree(root: Path, tree: TreeSpec | None = None) -> list[Path]:
    """Write every run of `tree` under `root` (finished: DONE included) and return the run dirs
    written. Runs already finished there are left alone, so a larger tree adds runs to a smaller
    one, as a sweep that goes on would."""
    tree = tree or TreeSpec()
    out = []
    for spec in iter_specs(tree):
        run_dir = run_dir_for(root, spec)
        if is_done(run_dir):
            continue
        write_spec(run_dir, spec)
        finish_scored_run(run_dir, predictions_for(spec, tree), cost=cost_for(spec))
        out.append(run_dir)
    return out


# A tree with full-data and few-shot runs, small enough to evaluate in seconds: 2 tasks x
# 3 backbones x 3 strategies x 3 folds full-data runs (6 Friedman blocks, 18 Wilcoxon pairs),
# and few-shot lp / lora-r8 runs of one backbone at k = 2 and 8 with 2 draws per fold.
REPORT_TREE = TreeSpec(fewshot_backbones=("resnet18",), n_test=24, n_val=8)
REPORT_N_BOOT = 0  # no pooled CIs: the report does not read them, and they cost most of the time

_EVALUATED: dict[str, tuple[Path, pd.DataFrame]] = {}


def evaluated_tree(tree: TreeSpec = REPORT_TREE) -> tuple[Path, pd.DataFrame]:
    """(root, results table) of `tree`, written and evaluated once per test session; callers get
    a copy of the table and must not write under the root."""
    key = repr(tree)
    if key not in _EVALUATED:
        from progbench.evaluate.results import evaluate_tree

        root = Path(tempfile.mkdtemp(prefix="progbench-runtree-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        write_run_tree(root / "runs", tree)
        results = evaluate_tree(root / "runs", n_boot=REPORT_N_BOOT).results
        _EVALUATED[key] = (root / "runs", results)
    root, results = _EVALUATED[key]
    return root, results.copy()


_REPORTS: dict[str, Path] = {}


def built_report(tree: TreeSpec = REPORT_TREE) -> Path:
    """The report folder of `tree` (metric mcc), built once per test session; read it only."""
    key = repr(tree)
    if key not in _REPORTS:
        from progbench.report import build_report

        root, results = evaluated_tree(tree)
        build_report(results, root.parent / "report")
        _REPORTS[key] = root.parent / "report"
    return _REPORTS[key]
