"""`progbench demo`: the furthest end-to-end path, on a synthetic cohort, in a few minutes on a CPU.

Each stage is a plain function call into the library, so the demo doubles as a worked example of
the API. Rerunning it reuses every finished piece (cohort, stores, splits, runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progbench.data.fewshot import add_fewshot
from progbench.data.imagestore import ImageStoreParams, build_image_store
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


@dataclass
class DemoResult:
    out: Path
    cohort: dict[str, Any]
    image_store: Path
    splits: dict[str, Path] = field(default_factory=dict)
    split_rows: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)
    sections: list[tuple[str, Any]] = field(default_factory=list)  # (title, printable) for the CLI


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
    return result
