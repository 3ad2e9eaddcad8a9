"""`progbench demo`: the whole study on a synthetic cohort, in under five minutes on 2 CPU cores.

Stages: synthesise a cohort -> image store -> splits -> models matrix -> features for two
backbones -> LP and the few-shot grid from the cache -> LoRA, BitFit and FFT streamed from the
image store -> the shared evaluator -> the report. Each stage is a plain function call into the
library, so the demo doubles as a worked example of the API. Rerunning it reuses every finished
piece (cohort, stores, splits, runs). Only the demo's own preset (DemoConfig) is shortened; the
library defaults stay those of the reference study.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progbench.cache.imagestore import ImageStoreParams, build_image_store
from progbench.data.fewshot import add_fewshot
from progbench.data.manifest import Task, load_task
from progbench.data.splits import Splits, make_splits, read_splits, write_splits
from progbench.data.summary import cohort_summary, split_summary
from progbench.data.synth import synthesize

ProgressFactory = Callable[
    [str], Any
]  # description -> context manager yielding update(done, total)


@dataclass(frozen=True)
class DemoConfig:
    """The demo's own preset: small enough for 2 CPU cores, same code paths as a real study."""

    patients: int = 150
    centers: int = 3
    seed: int = 0
    signal: float = 2.0
    size: int = 224
    shots: tuple[int, ...] = (2, 4, 8, 16)
    repeats: int = 3
    backbones: tuple[str, ...] = ("resnet18", "dinov2-s")  # a CNN and a foundation model
    weights: str = "random"  # no downloads here; pass pretrained or a path for real weights
    finetune_backbone: str = "resnet18"
    finetune_strategies: tuple[str, ...] = ("lora-r8", "bitfit", "fft")
    # Streaming fine-tuning is the slow path on a CPU: the `demo` training preset
    # (progbench/configs/training/demo.yaml: small images, 4 epochs, a fixed head lr), 2 folds,
    # and higher backbone lrs, as random-init weights must move further than pretrained ones.
    finetune_preset: str = "demo"
    finetune_folds: int = 2  # the first folds of the same 5-fold split as LP
    finetune_lr_backbone: tuple[tuple[str, float], ...] = (
        ("fft", 1e-4),
        ("lora-r8", 1e-3),
        ("bitfit", 1e-3),
    )


@dataclass
class DemoResult:
    out: Path
    cohort: dict[str, Any]
    image_store: Path
    splits: dict[str, Path] = field(default_factory=dict)
    split_rows: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)
    matrix: Any = None  # progbench.models.matrix.ModelMatrix
    features: dict[str, Any] = field(default_factory=dict)  # backbone -> ExtractResult
    runs: Path | None = None
    summary: list[dict[str, Any]] = field(default_factory=list)  # evaluate.results.summarise
    report: Any = None  # progbench.report.ReportResult
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


def _splits(task: Task, scheme: str, path: Path, cfg: DemoConfig) -> Splits:
    if path.is_file():
        return read_splits(path)
    s = make_splits(task, scheme, folds=5, seed=42)  # type: ignore[arg-type]
    s = add_fewshot(s, task, list(cfg.shots), cfg.repeats)
    write_splits(s, path)
    return s


def run_demo(
    out: Path,
    cfg: DemoConfig | None = None,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    cfg = cfg or DemoConfig()
    start = time.perf_counter()
    out = Path(out)
    cohort_dir = out / "cohort"
    log(f"1. synthesising {cfg.patients} patients in {cfg.centers} centres -> {cohort_dir}")
    synthesize(
        cohort_dir, patients=cfg.patients, centers=cfg.centers, seed=cfg.seed, signal=cfg.signal
    )
    task = load_task(cohort_dir / "tasks" / "severity.yaml")

    log("2. decoding images into the image store")
    params = ImageStoreParams(size=cfg.size)
    if progress:
        with progress("decoding images") as update:
            store = build_image_store(task.manifest, params, out / "cache", progress=update)
    else:
        store = build_image_store(task.manifest, params, out / "cache")

    result = DemoResult(out=out, cohort=cohort_summary(task), image_store=store.path)
    log("3. writing LOCO and 5-fold splits with few-shot draws")
    for scheme in ("loco", "kfold"):
        path = out / f"splits-{task.name}-{scheme}.json"
        result.splits[scheme] = path
        result.split_rows[scheme] = split_summary(task, _splits(task, scheme, path, cfg))
    result.seconds["data"] = time.perf_counter() - start
    _models_and_probes(task, cfg, out, result, progress, log)
    _finetune(task, cfg, out, result, progress, log)
    _evaluate_and_report(cfg, out, result, progress, log)
    return result


def _timed(result: DemoResult, stage: str) -> Callable[[], None]:
    t0 = time.perf_counter()

    def stop() -> None:
        result.seconds[stage] = time.perf_counter() - t0

    return stop


def _models_and_probes(
    task: Task,
    cfg: DemoConfig,
    out: Path,
    result: DemoResult,
    progress: ProgressFactory | None,
    log: Callable[[str], None],
) -> None:
    from progbench.models.matrix import compute_matrix
    from progbench.train.options import FinetuneOptions
    from progbench.train.pipeline import SplitRequest, TrainRequest, train_lp

    stop = _timed(result, "models")
    log(f"4. parameter matrix of {', '.join(cfg.backbones)} (full-size, random init)")
    result.matrix = compute_matrix(list(cfg.backbones))
    stop()
    stop = _timed(result, "extract + lp")
    result.runs = out / "runs"
    req = SplitRequest(
        scheme="kfold", shots=cfg.shots, repeats=cfg.repeats, splits_file=result.splits["kfold"]
    )
    options = FinetuneOptions(cache_dir=out / "cache", image_size=cfg.size)
    for i, backbone in enumerate(cfg.backbones):
        log(f"{5 + i}. features of {backbone} ({cfg.weights} weights), then LP and few-shot LP")
        request = TrainRequest(task, backbone, "lp", req, result.runs, cfg.weights, options=options)
        lp = train_lp(request, progress)
        result.features[backbone] = lp.features
    stop()


def _finetune(
    task: Task,
    cfg: DemoConfig,
    out: Path,
    result: DemoResult,
    progress: ProgressFactory | None,
    log: Callable[[str], None],
) -> None:
    from progbench.train.finetune import run_finetune
    from progbench.train.presets import resolve_training

    stop = _timed(result, "finetune")
    assert result.runs is not None
    opts = resolve_training(cfg.finetune_preset, task.name, {"cache_dir": out / "cache"})
    lr_backbone = dict(cfg.finetune_lr_backbone)
    # Full-data runs on the first folds of LP's 5-fold split, so runs pair up by fold in the
    # report (few-shot fine-tuning is left to the CLI).
    splits = read_splits(result.splits["kfold"])
    folds = splits.folds[: cfg.finetune_folds]
    full_only = splits.model_copy(
        update={
            "folds": [f.model_copy(update={"fewshot": []}) for f in folds],
            "fewshot_config": None,
        }
    )
    log(
        f"7. {', '.join(cfg.finetune_strategies)} on {cfg.finetune_backbone}, streamed from the "
        f"image store ({cfg.finetune_folds} folds, {opts.epochs} epochs, {opts.image_size} px)"
    )
    for strategy in cfg.finetune_strategies:
        run_finetune(
            task,
            full_only,
            cfg.finetune_backbone,
            cfg.weights,
            strategy,
            result.runs,
            dataclasses.replace(opts, lr_backbone=lr_backbone.get(strategy)),
            progress=progress,
        )
    stop()


def _evaluate_and_report(
    cfg: DemoConfig,
    out: Path,
    result: DemoResult,
    progress: ProgressFactory | None,
    log: Callable[[str], None],
) -> None:
    from progbench.evaluate.results import evaluate_tree, summarise
    from progbench.report import build_report, collect_run_versions

    stop = _timed(result, "evaluate + report")
    assert result.runs is not None
    log("8. scoring every run with the shared evaluator, then writing the report")
    # No bootstrap in the demo (seconds per group): `progbench evaluate` adds the CIs.
    evaluated = evaluate_tree(result.runs, n_boot=0, cache=False)
    result.summary = summarise(evaluated.results)
    result.report = build_report(
        evaluated.results, out / "report", run_versions=collect_run_versions(result.runs)
    )
    stop()
