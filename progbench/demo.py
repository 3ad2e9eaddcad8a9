"""`progbench demo`: the whole study on a synthetic cohort, in a few minutes on 2 CPU cores.

It writes a synthetic cohort into DIR/cohort, shows the models matrix of its backbones, then
runs the `demo` sweep (progbench/configs/sweeps/demo.yaml) with DIR as the sweep's root:
image stores, feature stores, LP and the few-shot grid under LOCO and 5-fold CV, LoRA, BitFit
and FFT streamed from the image store, then the shared evaluator and the report. Every stage is
a plain library call, the same a user's own sweep makes; rerunning reuses every finished piece.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progbench.data.manifest import Task, load_task
from progbench.data.splits import read_splits
from progbench.data.summary import cohort_summary, split_summary
from progbench.data.synth import synthesize

ProgressFactory = Callable[
    [str], Any
]  # description -> context manager yielding update(done, total)
DEMO_SWEEP = "demo"


@dataclass(frozen=True)
class DemoConfig:
    """The demo's cohort; what is trained on it is the `demo` sweep's."""

    patients: int = 150
    centers: int = 3
    seed: int = 0
    signal: float = 2.0


@dataclass
class DemoResult:
    out: Path
    cohort: dict[str, Any]
    sweep: Any = None  # progbench.sweep.spec.Sweep
    split_rows: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)
    splits: dict[str, Path] = field(default_factory=dict)
    matrix: Any = None  # progbench.models.matrix.ModelMatrix
    run: Any = None  # progbench.sweep.run.SweepRun
    summary: list[dict[str, Any]] = field(default_factory=list)  # evaluate.results.summarise
    report: Any = None  # progbench.sweep.run.SweepReport
    seconds: dict[str, float] = field(default_factory=dict)  # per stage

    @property
    def runs(self) -> Path | None:
        return None if self.sweep is None else self.sweep.runs_root


def _timed(result: DemoResult, stage: str) -> Callable[[], None]:
    t0 = time.perf_counter()

    def stop() -> None:
        result.seconds[stage] = time.perf_counter() - t0

    return stop


def _splits(task: Task, runs: Path) -> tuple[dict[str, Path], dict[str, list[tuple[object, ...]]]]:
    """The splits files the sweep wrote, one per scheme, with a row per fold."""
    paths: dict[str, Path] = {}
    for path in sorted((runs / task.name).glob("splits-*.json")):
        splits = read_splits(path)
        if splits.scheme not in paths or splits.fewshot_config:  # the one with the draws
            paths[splits.scheme] = path
    return paths, {s: split_summary(task, read_splits(p)) for s, p in paths.items()}


def run_demo(
    out: Path,
    cfg: DemoConfig | None = None,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] = lambda _: None,
    on_result: Callable[[Any], None] = lambda _: None,
) -> DemoResult:
    from progbench.models.matrix import compute_matrix
    from progbench.sweep.local import LocalExecutor
    from progbench.sweep.run import finish_sweep, run_sweep
    from progbench.sweep.spec import load_sweep

    cfg = cfg or DemoConfig()
    out = Path(out)
    result = DemoResult(out=out, cohort={})
    stop_data = _timed(result, "data")
    log(f"1. synthesising {cfg.patients} patients in {cfg.centers} centres -> {out / 'cohort'}")
    synthesize(out / "cohort", cfg.patients, cfg.centers, cfg.seed, signal=cfg.signal)
    task = load_task(out / "cohort" / "tasks" / "severity.yaml")
    result.cohort = cohort_summary(task)
    result.sweep = sweep = load_sweep(DEMO_SWEEP, root=out)
    stop_data()
    stop = _timed(result, "models")
    log(f"2. parameter matrix of {', '.join(sweep.backbones)} (full-size, no weights)")
    result.matrix = compute_matrix(sweep.backbones, sweep.strategies)
    stop()
    stop = _timed(result, "sweep")
    log(f"3. the `demo` sweep: stores, LP and few-shot LP, then {', '.join(sweep.strategies[1:])}")
    if progress is not None:
        with progress("sweep demo") as update:
            done = [0]

            def tick(r: Any) -> None:
                done[0] += 1
                update(done[0], max(done[0], total[0]))
                on_result(r)

            total = [0]
            result.run = run_sweep(sweep, LocalExecutor(), tick, lambda n: total.__setitem__(0, n))
    else:
        result.run = run_sweep(sweep, LocalExecutor(), on_result)
    stop()
    result.splits, result.split_rows = _splits(task, sweep.runs_root)
    stop = _timed(result, "evaluate + report")
    log("4. scoring every run with the shared evaluator, then writing the report")
    result.report = finish_sweep(sweep)
    result.summary = result.report.summary
    stop()
    return result
