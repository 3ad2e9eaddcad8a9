"""Fake run trees for report tests: real run directories (spec, predictions, metrics, DONE) written
with progbench.runs, whose scores come from known distributions, so no model is needed.

Scores are sigmoid(effect * (2 y - 1) + noise): a larger effect separates the classes better,
so strategies, backbones and weights have a known quality order. Every random draw is seeded
from the run's identity, so a tree is a pure function of its TreeSpec.

A tree may hold several split schemes (kfold and LOCO runs of a task side by side, under
`<task>/<scheme>/...`; a LOCO run's fold is one held-out centre, named in `extra.test_center`) and
several weights of one backbone (the second weights' runs under `weights-<name>/`, a second sweep
in the same folder), as a real study's run folder does.
"""

from __future__ import annotations

import atexit
import itertools
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
    # Split schemes: "kfold" (`folds` folds) and "loco" (one fold per centre of `centers`).
    schemes: tuple[str, ...] = ("kfold",)
    centers: tuple[str, ...] = ("north", "south", "east")
    fewshot_regimes: tuple[str, ...] = ("fewshot",)
    # Weights per backbone (default: random only) and their class separation (added).
    weights: dict[str, tuple[str, ...]] = field(default_factory=dict)
    weights_effect: dict[str, float] = field(default_factory=lambda: {"imagenet": 0.4})

    def weights_of(self, backbone: str) -> tuple[str, ...]:
        return self.weights.get(backbone, ("random",))

    def folds_of(self, scheme: str) -> int:
        return len(self.centers) if scheme == "loco" else self.folds


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


def _variant(spec: RunSpec) -> tuple[str, ...]:
    """Seed parts beyond the default scheme and weights (so default trees keep their values)."""
    return tuple(x for x in (spec.scheme, spec.weights) if x not in ("kfold", "random"))


def _labels(
    task: str, fold: int, split: str, n: int, prevalence: float, scheme: str = "kfold"
) -> np.ndarray:
    # Shared by every run of a (task, scheme, fold): matched runs score the same patients.
    parts = (task, fold, split, "y") if scheme == "kfold" else (task, scheme, fold, split, "y")
    y = (_rng(*parts).random(n) < prevalence).astype(int)
    y[:2] = [0, 1]  # both classes always present
    return y


def predictions_for(spec: RunSpec, tree: TreeSpec) -> pd.DataFrame:
    effect = (
        tree.strategy_effect.get(spec.strategy, 1.0)
        + tree.backbone_effect.get(spec.backbone, 0.0)
        + (tree.weights_effect.get(spec.weights, 0.0) if spec.weights != "random" else 0.0)
    )
    if spec.shots is not None:
        effect *= spec.shots / (spec.shots + 4)
    centre = spec.extra.get("test_center")
    rows = []
    for split, n in (("val", tree.n_val), ("test", tree.n_test)):
        y = _labels(spec.task, spec.fold, split, n, tree.prevalence, spec.scheme)
        noise = _rng(
            spec.task,
            spec.backbone,
            spec.strategy,
            spec.fold,
            spec.shots,
            spec.repeat,
            split,
            *_variant(spec),
        ).normal(0.0, 1.0, n)
        p = 1.0 / (1.0 + np.exp(-(effect * (2 * y - 1) + noise)))
        for i in range(n):
            pid = f"{split}-{centre or f'f{spec.fold}'}-{i:03d}"
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


def _fewshot_specs(tree: TreeSpec, common: dict[str, object], fold: int) -> list[RunSpec]:
    return [
        RunSpec(
            strategy=strategy,
            regime=regime,
            fold=fold,
            shots=k,
            repeat=rep,
            seed=42 + rep,
            **common,
        )
        for regime in tree.fewshot_regimes
        for strategy in tree.fewshot_strategies
        for k in tree.shots
        for rep in range(tree.repeats)
    ]


def iter_specs(tree: TreeSpec) -> list[RunSpec]:
    specs = []
    for task, scheme, backbone in itertools.product(tree.tasks, tree.schemes, tree.backbones):
        fewshot = task in tree.fewshot_tasks and backbone in tree.fewshot_backbones
        for weights in tree.weights_of(backbone):
            common: dict[str, object] = dict(
                task=task, backbone=backbone, weights=weights, scheme=scheme
            )
            if weights != "random":
                common["weights_fingerprint"] = f"fp-{weights}"
            full = []
            for fold in range(tree.folds_of(scheme)):
                if scheme == "loco":
                    common["extra"] = {"test_center": tree.centers[fold]}
                full += [
                    RunSpec(strategy=s, regime="full", fold=fold, **common) for s in tree.strategies
                ]
                if fewshot:
                    full += _fewshot_specs(tree, common, fold)
            specs += sorted(full, key=lambda r: (r.strategy, r.regime, r.shots or 0, r.fold))
    return specs


def run_dir_in(root: Path, spec: RunSpec, tree: TreeSpec) -> Path:
    """Where the tree keeps `spec`: progbench's run path, under `weights-<name>/` for a
    backbone's second weights (the run path does not hold the weights)."""
    weights = tree.weights_of(spec.backbone)
    base = root if spec.weights == weights[0] else root / f"weights-{spec.weights}"
    return run_dir_for(base, spec)


def write_run_tree(root: Path, tree: TreeSpec | None = None) -> list[Path]:
    """Write every run of `tree` under `root` (finished: DONE included) and return the run dirs
    written. Runs already finished there are left alone, so a larger tree adds runs to a smaller
    one, as a sweep that goes on would."""
    tree = tree or TreeSpec()
    out = []
    for spec in iter_specs(tree):
        run_dir = run_dir_in(root, spec, tree)
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
REPORT_N_BOOT = 0  # no pooled CIs here: they cost most of the time (tests of CIs draw a few)

_EVALUATED: dict[str, tuple[Path, pd.DataFrame]] = {}


def evaluated_tree(
    tree: TreeSpec = REPORT_TREE, n_boot: int = REPORT_N_BOOT
) -> tuple[Path, pd.DataFrame]:
    """(root, results table) of `tree`, written and evaluated once per test session; callers get
    a copy of the table and must not write under the root."""
    key = repr((tree, n_boot))
    if key not in _EVALUATED:
        from progbench.evaluate.results import evaluate_tree

        root = Path(tempfile.mkdtemp(prefix="progbench-runtree-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        write_run_tree(root / "runs", tree)
        results = evaluate_tree(root / "runs", n_boot=n_boot).results
        _EVALUATED[key] = (root / "runs", results)
    root, results = _EVALUATED[key]
    return root, results.copy()


_REPORTS: dict[str, Path] = {}


def built_report(tree: TreeSpec = REPORT_TREE) -> Path:
    """The report folder of `tree` (MCC and PR-AUC), built once per test session; read it only."""
    key = repr(tree)
    if key not in _REPORTS:
        from progbench.report import build_report

        root, results = evaluated_tree(tree)
        build_report(results, root.parent / "report")  # the default metrics: MCC, PR-AUC
        _REPORTS[key] = root.parent / "report"
    return _REPORTS[key]
