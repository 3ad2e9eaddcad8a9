"""A sweep's cells: one (task, scheme, backbone, strategy, regime) each, one `train` call's runs.

The grid is tasks x schemes x backbones x strategies x regimes (full, and the few-shot regime
for the few-shot strategies), minus cells matched by `exclude` and cells the registry says do
not apply (each with its reason). A cell knows its runs without making any: the folds follow
from the scheme (LOCO: one per centre), the draws from `fewshot`, and `limits` may keep only a
family's first folds.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from progbench.config import BackboneSpec
from progbench.config.sweeps import Family
from progbench.data.splits import resolve_scheme
from progbench.errors import ConfigError
from progbench.models.registry import get_backbone_spec
from progbench.runs import DONE_FILE, cell_dir, run_path
from progbench.sweep.spec import Sweep, SweepTask

FULL = "full"


@dataclass(frozen=True, order=True)
class Cell:
    task: str
    scheme: str
    backbone: str
    strategy: str
    regime: str

    @property
    def id(self) -> str:
        return f"{self.task}/{self.scheme}/{self.backbone}/{self.strategy}/{self.regime}"

    @property
    def slug(self) -> str:
        return self.id.replace("/", "__")


class RunKey(NamedTuple):
    """One run of a cell (a named tuple: a grid has tens of thousands of them)."""

    fold: int
    shots: int | None = None
    repeat: int | None = None


@dataclass(frozen=True)
class CellPlan:
    cell: Cell
    family: Family
    applicable: bool
    reason: str | None  # why not applicable
    prepared: bool
    runs: tuple[RunKey, ...]
    n_images: int  # the task's cohort
    train_fraction: float  # share of the cohort a full-data run trains on
    train_centers: int  # centres in a fold's training part (per-centre few-shot draws)

    def base(self, runs_root: Path) -> Path:
        c = self.cell
        return cell_dir(runs_root, c.task, c.scheme, c.backbone, c.strategy)

    def run_dirs(self, runs_root: Path) -> list[Path]:
        base = self.base(runs_root)
        return [run_path(base, self.cell.regime, r.fold, r.shots, r.repeat) for r in self.runs]

    def finished(self, runs_root: Path) -> list[RunKey]:
        """The cell's runs that are DONE, from one walk of its folder (none when it is absent:
        a plan of a grid not started yet builds no path per run)."""
        regime_dir = self.base(runs_root) / self.cell.regime
        if not regime_dir.is_dir():
            return []
        found = {
            Path(root).relative_to(regime_dir).as_posix()
            for root, _, files in os.walk(regime_dir)
            if DONE_FILE in files
        }
        return [k for k in self.runs if _relative(k) in found]


def _relative(k: RunKey) -> str:
    return f"fold-{k.fold}" if k.shots is None else f"fold-{k.fold}/shots-{k.shots}/rep-{k.repeat}"


def _schemes(sweep: Sweep, t: SweepTask) -> list[str]:
    out: list[str] = []
    for s in sweep.config.schemes:
        if t.task is not None:
            out.append(resolve_scheme(t.task, s)[0])
        elif s == "auto":
            assert t.entry.cohort is not None
            out.append("loco" if t.entry.cohort.centers >= 2 else "kfold")
        else:
            out.append(s)
    return list(dict.fromkeys(out))


def _n_folds(sweep: Sweep, t: SweepTask, scheme: str) -> int:
    if scheme == "holdout":
        return 1
    if scheme == "kfold":
        return sweep.config.folds
    if t.task is not None:
        return int(t.task.manifest.frame["center"].nunique())
    assert t.entry.cohort is not None
    return t.entry.cohort.centers


def _cohort(t: SweepTask) -> int:
    if t.task is not None:
        return len(t.task.manifest.frame)
    assert t.entry.cohort is not None
    return t.entry.cohort.images


def _train_centers(t: SweepTask, scheme: str) -> int:
    if t.task is not None:
        n = int(t.task.manifest.frame["center"].nunique())
    else:
        assert t.entry.cohort is not None
        n = t.entry.cohort.centers
    return n - 1 if scheme == "loco" else n


def _train_fraction(sweep: Sweep, t: SweepTask, scheme: str, folds: int) -> float:
    """Share of the cohort in a fold's training part (outer split, then validation held out)."""
    if scheme == "loco" and t.task is not None:
        sizes = t.task.manifest.frame["center"].value_counts().to_numpy()
        outer = float(np.mean(1 - sizes / sizes.sum()))
    elif scheme == "holdout":
        outer = 0.8
    else:
        outer = 1 - 1 / folds
    return outer * (1 - sweep.config.val_fraction)


def _runs(sweep: Sweep, regime: str, folds: int, family: Family) -> tuple[RunKey, ...]:
    limit = sweep.config.limits.get(family)
    n = min(folds, limit.folds) if limit is not None and limit.folds is not None else folds
    if regime == FULL:
        return tuple(RunKey(f) for f in range(n))
    fs = sweep.config.fewshot
    assert fs is not None
    return tuple(RunKey(f, k, r) for f in range(n) for k in fs.shots for r in range(fs.repeats))


def _check_input_size(sweep: Sweep, cell: Cell, spec: BackboneSpec) -> None:
    """Refused before any work: a streamed cell asked for an input side its backbone cannot take
    (only CNNs take another; ViTs have a fixed patch grid). `train` would fail it at run time."""
    if sweep.strategy_objects[cell.strategy].path != "stream" or spec.is_cnn:
        return
    size = sweep.options_for(cell.strategy, cell.task).input_size
    if size is not None and size != spec.input_size:
        raise ConfigError(
            f"{sweep.source}: cell {cell.id} asks for input_size {size} (`train` or "
            f"`strategy_train`), but {spec.name} takes only {spec.input_size} px",
            f"Exclude such cells (exclude: ['*/*/{spec.name}/{cell.strategy}/*']), or set "
            "input_size only for strategies run on CNNs.",
        )


def expand(sweep: Sweep) -> list[CellPlan]:
    """Every cell of the sweep, with its runs and whether it applies."""
    fs = sweep.config.fewshot
    fewshot_regime = "fewshot-center" if fs is not None and fs.per_center else "fewshot"
    few = set(sweep.fewshot_strategies())
    out = []
    for t in sweep.tasks:
        for scheme in _schemes(sweep, t):
            folds = _n_folds(sweep, t, scheme)
            fraction = _train_fraction(sweep, t, scheme, folds)
            for backbone in sweep.backbones:
                spec = get_backbone_spec(backbone)
                for strategy in sweep.strategies:
                    family = sweep.family(strategy)
                    res = sweep.strategy_objects[strategy].resolve(spec)
                    regimes = [FULL] + ([fewshot_regime] if strategy in few else [])
                    for regime in regimes:
                        cell = Cell(t.name, scheme, backbone, strategy, regime)
                        if any(fnmatch.fnmatchcase(cell.id, p) for p in sweep.config.exclude):
                            continue
                        if res.applicable:
                            _check_input_size(sweep, cell, spec)
                        out.append(
                            CellPlan(
                                cell=cell,
                                family=family,
                                applicable=res.applicable,
                                reason=res.reason,
                                prepared=t.prepared,
                                runs=_runs(sweep, regime, folds, family),
                                n_images=_cohort(t),
                                train_fraction=fraction,
                                train_centers=_train_centers(t, scheme),
                            )
                        )
    return out
