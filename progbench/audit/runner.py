"""`run_audit`: every check of progbench.audit.checks on one (task, backbone, weights), and
`audit.json` written atomically.

Where: `<runs>/<task>/audit/<backbone>/audit.json` by default (`audit_dir`; no run markers, so
the run scanner never takes it for a run). The splits are the task's splits under the runs
tree (progbench.train.plan.resolve_splits, made and saved when absent), so the audit probes the
same folds as `train`. Features come from `extract_features`: the audited store and the
random-init store are content-keyed stores like any other, built once and reused.

audit.json:

    {"format": 1, "task", "backbone", "weights", "scheme", "splits", "config", "feature_stores",
     "created", "progbench", "seconds",
     "checks": [{"name", "status": "ok" | "flag" | "skip", "detail", "metric", "metric_name",
                 "ci": [lo, hi] | null, "data": {...}}]}
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from progbench import __version__
from progbench.atomic import atomic_write_json
from progbench.audit.check import CheckResult, skipped
from progbench.audit.checks import CHECK_NAMES, CHECKS
from progbench.audit.context import AuditConfig, AuditContext
from progbench.audit.lp import fold_rows
from progbench.data.manifest import Task
from progbench.errors import ConfigError, ProgbenchError
from progbench.provenance import now_iso
from progbench.train.options import FinetuneOptions
from progbench.train.plan import SplitRequest, resolve_splits

AUDIT_FILE = "audit.json"
AUDIT_FORMAT = 1
ProgressFn = Callable[[int, int], None]  # (checks done, checks to run)


@dataclass(frozen=True)
class AuditRequest:
    """One audit: a task, a backbone and its weights, with the options `train` would use."""

    task: Task
    backbone: str
    runs_root: Path
    weights: str = "pretrained"
    splits: SplitRequest = field(default_factory=SplitRequest)
    options: FinetuneOptions = field(default_factory=FinetuneOptions)
    config: AuditConfig = field(default_factory=AuditConfig)
    out: Path | None = None  # folder of audit.json; default audit_dir(...)
    checks: tuple[str, ...] | None = None  # names to run; default every check


@dataclass
class AuditReport:
    path: Path
    document: dict[str, Any]
    checks: list[CheckResult]
    seconds: float

    @property
    def flagged(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "flag"]


def audit_dir(runs_root: Path, task: str, backbone: str) -> Path:
    """`<runs>/<task>/audit/<backbone>/`."""
    return Path(runs_root) / task / "audit" / backbone


def _check_names(names: tuple[str, ...] | None) -> tuple[str, ...]:
    if names is None:
        return CHECK_NAMES
    unknown = [n for n in names if n not in CHECK_NAMES]
    if unknown:
        raise ConfigError(
            f"unknown audit check(s) {', '.join(unknown)}",
            f"Use some of: {', '.join(CHECK_NAMES)}.",
        )
    return names


def feature_source(request: AuditRequest) -> Callable[[str], tuple[np.ndarray, str]]:
    """weights -> (the probe preset's first feature variant, aligned with the manifest's rows;
    the feature store key), through `extract_features` (stores built once, then reused)."""

    def load(weights: str) -> tuple[np.ndarray, str]:
        from progbench.cache.featurestore import FeatureStore
        from progbench.cache.imagestore import ImageStoreParams
        from progbench.extract.features import extract_features
        from progbench.train.probe import ProbeConfig

        opts = request.options
        res = extract_features(
            request.task.manifest,
            request.backbone,
            weights=weights,
            batch_size=opts.batch_size,
            device=opts.device,
            dtype=opts.dtype,
            cache_dir=opts.cache_dir,
            image_params=ImageStoreParams(size=opts.image_size),
        )
        store = FeatureStore(res.path)
        variant = ProbeConfig.preset(request.config.probe).variants[0]
        ids = request.task.manifest.frame["image_id"].tolist()
        return store.load_variant(variant, ids), res.key

    return load


def run_audit(request: AuditRequest, progress: ProgressFn | None = None) -> AuditReport:
    """Run the checks asked for (each skipped with a reason where it cannot run) and write
    audit.json; returns its path, content and the checks' results."""
    start = time.perf_counter()
    names = _check_names(request.checks)
    task = request.task
    splits, splits_file, _ = resolve_splits(task, request.splits, request.runs_root)
    ctx = AuditContext(
        task=task,
        backbone=request.backbone,
        weights=request.weights,
        scheme=splits.scheme,
        folds=fold_rows(splits, task.manifest.frame["image_id"].tolist()),
        config=request.config,
        features=feature_source(request),
    )
    results: list[CheckResult] = []
    todo = [c for c in CHECKS if c.name in names]
    for i, check in enumerate(todo):
        if progress:
            progress(i, len(todo))
        reason = check.skip_reason(ctx)
        if reason is not None:
            results.append(skipped(check.name, reason))
            continue
        try:
            results.append(check.run(ctx))
        except ProgbenchError as err:  # this check cannot run here; the others still do
            results.append(skipped(check.name, err.message))
    if progress:
        progress(len(todo), len(todo))
    seconds = time.perf_counter() - start
    document = {
        "format": AUDIT_FORMAT,
        "task": task.name,
        "backbone": request.backbone,
        "weights": request.weights,
        "scheme": splits.scheme,
        "splits": str(splits_file),
        "config": dataclasses.asdict(request.config),
        "feature_stores": ctx.feature_stores,
        "created": now_iso(),
        "progbench": __version__,
        "seconds": round(seconds, 3),
        "checks": [r.to_json() for r in results],
    }
    out = request.out or audit_dir(request.runs_root, task.name, request.backbone)
    path = Path(out) / AUDIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, document)
    return AuditReport(path, document, results, seconds)
