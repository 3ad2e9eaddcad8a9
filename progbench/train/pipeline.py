"""`progbench train`: from a task and a backbone to scored runs, whatever the strategy.

Which runs a call makes, and on which splits, is progbench.train.plan's rule, the same for
every strategy; feature-path strategies (LP, scikit-learn) are fitted on the feature cache
(progbench.train.features), the others stream images (progbench.train.finetune).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progbench.data.manifest import Task
from progbench.runs import cell_dir
from progbench.train.options import FinetuneOptions
from progbench.train.plan import SplitRequest, plan_runs, resolve_splits

ProgressFactory = Callable[[str], Any]


@dataclass
class TrainSummary:
    runs_root: Path
    splits_file: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    features: Any = None  # the ExtractResult the probes read (feature path only)
    scheme: str = ""  # the scheme the runs were made with (auto resolved)
    cell_root: Path | None = None  # the runs of this (task, scheme, backbone, strategy)
    groups: list[dict[str, Any]] = field(default_factory=list)  # evaluate.results.summarise


@dataclass(frozen=True)
class TrainRequest:
    """One `progbench train` call: a strategy on a backbone, over every fold and draw of a task."""

    task: Task
    backbone: str
    strategy: str
    splits: SplitRequest
    runs_root: Path
    weights: str = "pretrained"
    force: bool = False
    probe: str = "default"  # LP solver preset
    options: FinetuneOptions = field(default_factory=FinetuneOptions)


def run_train(
    request: TrainRequest, progress: ProgressFactory | None = None, score: bool = True
) -> TrainSummary:
    """Train the request's runs (feature path from the feature cache, PEFT/FFT by streaming
    images), then (with `score`) summarise the cell's runs with the shared evaluator and the
    patient bootstrap."""
    from progbench.evaluate.results import evaluate_tree, summarise
    from progbench.models.registry import get_backbone_spec
    from progbench.models.strategies import get_strategy
    from progbench.runs.taskdata import claim_task

    # Names and pairs are checked before anything is written, splits included; a peft adapter
    # is applied to the backbone built weightless, so a preset peft refuses fails here too.
    strategy = get_strategy(request.strategy)
    spec = get_backbone_spec(request.backbone)
    strategy.refuse_if_not_applicable(spec)
    strategy.preflight(spec)
    claim_task(request.task, request.runs_root)  # one data set per task name and runs tree
    if strategy.path == "features":
        summary = train_features(request, progress)
    else:
        summary = train_finetune(request, progress)
    summary.cell_root = cell_dir(
        request.runs_root, request.task.name, summary.scheme, request.backbone, request.strategy
    )
    if score:
        scored = evaluate_tree(summary.cell_root, cache=False)
        summary.groups = summarise(scored.results)
    return summary


def train_features(request: TrainRequest, progress: ProgressFactory | None = None) -> TrainSummary:
    """A feature-path strategy (LP, a scikit-learn estimator) and its few-shot grid from the
    feature store, extracting it first if needed; the strategy supplies the solver."""
    from progbench.cache.featurestore import FeatureStore
    from progbench.cache.imagestore import ImageStoreParams
    from progbench.extract.features import extract_features
    from progbench.models.identity import backbone_ref
    from progbench.models.strategies import get_strategy
    from progbench.runs.spec import ALIASES
    from progbench.train.features import FeatureContext, feature_settings, run_feature_probes
    from progbench.train.solvers import solver_for

    task, backbone, opts = request.task, request.backbone, request.options
    cfg = solver_for(get_strategy(request.strategy), request.probe)  # fails before any work
    start = time.perf_counter()
    splits, splits_path, note = resolve_splits(task, request.splits, request.runs_root)
    loaded = backbone_ref(backbone, request.weights)
    with _maybe(progress, f"features {backbone}") as update:
        res = extract_features(
            task.manifest,
            backbone,
            weights=request.weights,
            batch_size=opts.batch_size,
            device=opts.device,
            dtype=opts.dtype,
            cache_dir=opts.cache_dir,
            image_params=ImageStoreParams(size=opts.image_size),
            progress=update,
            loaded=loaded,
        )
    ctx = FeatureContext(
        backbone=backbone,
        weights=loaded.weights,
        weights_fingerprint=loaded.weights_fingerprint,
        feature_store=res.key,
        encoder_params=loaded.encoder_params,
        strategy=request.strategy,
    )
    # A run recorded on the key babab05 gave these features is a run on them (runs.spec).
    aliases = {ALIASES: {"features": [res.legacy_key]}} if res.legacy_key else None
    problems = plan_runs(
        task,
        splits,
        request.splits,
        splits_path,
        ctx.identity(),
        feature_settings(ctx, cfg),
        aliases,
    )
    with _maybe(progress, f"{request.strategy} on features of {backbone}") as update:
        probes = run_feature_probes(
            task,
            problems,
            FeatureStore(res.path),
            ctx,
            request.runs_root,
            cfg,
            request.force,
            update,
        )
    summary = TrainSummary(
        request.runs_root, splits_path, probes.written, probes.skipped, features=res
    )
    summary.scheme = splits.scheme
    summary.seconds = time.perf_counter() - start
    summary.notes.append(note)
    if res.repaired:
        summary.notes.append(
            f"feature store {res.key}: {res.repaired} images whose chunks were missing or "
            "damaged extracted again"
        )
    if res.computed:
        summary.notes.append(f"extracted {res.computed} images ({res.images_per_s or 0:.1f} img/s)")
    else:
        summary.notes.append(f"reused feature store {res.key}")
    return summary


def train_finetune(request: TrainRequest, progress: ProgressFactory | None = None) -> TrainSummary:
    """PEFT or FFT runs streamed from the image store (progbench.train.finetune)."""
    from progbench.train.finetune import prepare_finetune, train_problems

    start = time.perf_counter()
    splits, splits_path, note = resolve_splits(request.task, request.splits, request.runs_root)
    ctx = prepare_finetune(
        request.task,
        request.backbone,
        request.weights,
        request.strategy,
        request.runs_root,
        request.options,
        request.force,
    )
    problems = plan_runs(
        request.task, splits, request.splits, splits_path, ctx.identity(), ctx.settings()
    )
    written, skipped = train_problems(ctx, problems, progress)
    summary = TrainSummary(request.runs_root, splits_path, written, skipped, notes=[note])
    summary.scheme = splits.scheme
    summary.seconds = time.perf_counter() - start
    return summary


@contextmanager
def _maybe(progress: ProgressFactory | None, description: str) -> Iterator[Any]:
    if progress is None:
        yield None
        return
    with progress(description) as update:
        yield update
