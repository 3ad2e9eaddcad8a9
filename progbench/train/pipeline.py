"""`progbench train`: from a task and a backbone to scored runs, whatever the strategy.

Splits are made (or read) once per (task, scheme, seed) and saved beside the runs, so every
strategy and backbone of a study is trained and tested on the same patients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progbench.atomic import atomic_write_json
from progbench.data.fewshot import add_fewshot
from progbench.data.manifest import Task
from progbench.data.splits import Scheme, Splits, make_splits, read_splits
from progbench.errors import SplitError
from progbench.train.options import FinetuneOptions

ProgressFactory = Callable[[str], Any]


@dataclass(frozen=True)
class SplitRequest:
    scheme: Scheme = "kfold"
    folds: int = 5
    val_fraction: float = 0.2
    seed: int = 42
    shots: tuple[int, ...] = ()
    repeats: int = 5
    per_center: bool = False
    splits_file: Path | None = None


@dataclass
class TrainSummary:
    runs_root: Path
    splits_file: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    features: Any = None  # the ExtractResult LP was trained on (LP only)
    cell_root: Path | None = None  # the runs of this (task, backbone, strategy)
    groups: list[dict[str, Any]] = field(default_factory=list)  # evaluate.results.summarise


def resolve_splits(task: Task, req: SplitRequest, runs_root: Path) -> tuple[Splits, Path]:
    """Read `--splits`, or make the splits and save them under the runs root (reused next time)."""
    if req.splits_file is not None:
        splits = read_splits(req.splits_file)
        path = req.splits_file
    else:
        tag = f"{req.scheme}-seed{req.seed}" + (
            f"-{req.folds}folds" if req.scheme == "kfold" else ""
        )
        if req.shots:
            center = "-percenter" if req.per_center else ""
            tag += f"-shots{'_'.join(map(str, req.shots))}x{req.repeats}{center}"
        path = runs_root / task.name / f"splits-{tag}.json"
        if path.is_file():
            splits = read_splits(path)
        else:
            splits = make_splits(task, req.scheme, req.folds, req.val_fraction, req.seed)
            if req.shots:
                splits = add_fewshot(splits, task, list(req.shots), req.repeats, req.per_center)
            atomic_write_json(path, splits.to_json())
    if splits.manifest_fingerprint != task.manifest.fingerprint():
        raise SplitError(
            f"splits {path} were made for another version of the manifest",
            "Remove the splits file (and the runs made with it) or pass matching --splits.",
        )
    if req.shots and not any(f.fewshot for f in splits.folds):
        raise SplitError(
            f"--shots was given but {path} holds no few-shot draws", "Write splits with --shots."
        )
    return splits, path


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


def run_train(request: TrainRequest, progress: ProgressFactory | None = None) -> TrainSummary:
    """Train the request's runs (LP from the feature cache, PEFT/FFT by streaming images), then
    score them with the shared evaluator (no bootstrap: `progbench evaluate` adds the CIs)."""
    from progbench.evaluate.results import evaluate_tree, summarise
    from progbench.models.registry import get_strategy_spec

    if get_strategy_spec(request.strategy).kind == "lp":
        summary = train_lp(request, progress)
    else:
        summary = train_finetune(request, progress)
    summary.cell_root = request.runs_root / request.task.name / request.backbone / request.strategy
    summary.groups = summarise(evaluate_tree(summary.cell_root, n_boot=0, cache=False).results)
    return summary


def train_lp(request: TrainRequest, progress: ProgressFactory | None = None) -> TrainSummary:
    """Linear probing (and the few-shot grid) from the feature store, extracting it first if needed."""
    import time

    from progbench.cache.featurestore import FeatureStore
    from progbench.data.imagestore import ImageStoreParams
    from progbench.extract.features import extract_features
    from progbench.models.loaders import load_backbone
    from progbench.train.linear import LPContext, run_linear_probes
    from progbench.train.probe import ProbeConfig

    task, backbone, opts = request.task, request.backbone, request.options
    cfg = ProbeConfig.preset(request.probe)  # a bad preset fails before any work
    start = time.perf_counter()
    splits, splits_path = resolve_splits(task, request.splits, request.runs_root)
    loaded = load_backbone(backbone, request.weights)
    kwargs = dict(
        weights=request.weights,
        batch_size=opts.batch_size,
        device=opts.device,
        dtype=opts.dtype,
        cache_dir=opts.cache_dir,
        image_params=ImageStoreParams(size=opts.image_size),
        loaded=loaded,
    )
    with _maybe(progress, f"features {backbone}") as update:
        res = extract_features(task.manifest, backbone, progress=update, **kwargs)
    ctx = LPContext(
        backbone=backbone,
        weights=loaded.weights,
        weights_fingerprint=loaded.weights_fingerprint,
        feature_store=res.key,
        encoder_params=sum(p.numel() for p in loaded.encoder.parameters()),
    )
    with _maybe(progress, f"linear probes {backbone}") as update:
        lp = run_linear_probes(
            task,
            splits,
            FeatureStore(res.path),
            ctx,
            request.runs_root,
            cfg,
            fewshot=bool(request.splits.shots),
            force=request.force,
            progress=update,
        )
    summary = TrainSummary(request.runs_root, splits_path, lp.written, lp.skipped, features=res)
    summary.seconds = time.perf_counter() - start
    if res.computed:
        summary.notes.append(f"extracted {res.computed} images ({res.images_per_s or 0:.1f} img/s)")
    else:
        summary.notes.append(f"reused feature store {res.key}")
    return summary


def train_finetune(request: TrainRequest, progress: ProgressFactory | None = None) -> TrainSummary:
    """PEFT or FFT runs streamed from the image store (progbench.train.finetune)."""
    import time

    from progbench.train.finetune import refuse_if_not_applicable, run_finetune

    start = time.perf_counter()
    # Before anything is written, splits included.
    refuse_if_not_applicable(request.backbone, request.strategy)
    splits, splits_path = resolve_splits(request.task, request.splits, request.runs_root)
    written, skipped = run_finetune(
        request.task,
        splits,
        request.backbone,
        request.weights,
        request.strategy,
        request.runs_root,
        request.options,
        request.force,
        progress,
    )
    summary = TrainSummary(request.runs_root, splits_path, written, skipped)
    summary.seconds = time.perf_counter() - start
    return summary


@contextmanager
def _maybe(progress: ProgressFactory | None, description: str) -> Iterator[Any]:
    if progress is None:
        yield None
        return
    with progress(description) as update:
        yield update
