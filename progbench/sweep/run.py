"""`progbench sweep run`: every pending cell of a sweep, in dependency order, then the sweep's
evaluation and report (`<runs>/results.parquet`, `<runs>/report/`).

Cells run through the library functions `train` uses; a cell failing never stops the others;
a rerun does only what is not DONE. Locally the command waits; on SLURM it waits unless
`wait=False`, and `finish_sweep` (`progbench sweep wait`) completes it later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progbench.errors import ConfigError
from progbench.sweep.execute import Unit, UnitResult
from progbench.sweep.local import LocalExecutor, run_phases
from progbench.sweep.plan import SweepPlan, make_plan
from progbench.sweep.slurm_run import SlurmExecutor, submit_sweep
from progbench.sweep.spec import Sweep

OnResult = Callable[[UnitResult], None]


@dataclass
class SweepRun:
    plan: SweepPlan
    results: list[UnitResult] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[UnitResult]:
        return [r for r in self.results if r.state == "failed"]

    @property
    def cells_done(self) -> list[UnitResult]:
        return [r for r in self.results if r.kind == "cell" and r.state == "done"]

    @property
    def already_done(self) -> tuple[int, int]:
        """(cells, runs) that were done before this call started: reused, not run again."""
        rows = [r for r in self.plan.applicable if r.state == "done"]
        return len(rows), sum(r.done for r in rows)


def phases(sweep: Sweep, plan: SweepPlan) -> list[list[Unit]]:
    """Image stores, feature stores, feature-path cells (the `lp` family: LP, scikit-learn),
    streamed cells: the pending work, in order."""
    rows = [r for r in plan.applicable if r.pending and r.plan.prepared]
    images: dict[str, Unit] = {}
    features: dict[str, Unit] = {}
    feature_cells: list[Unit] = []
    streamed: list[Unit] = []
    for r in rows:
        c = r.plan.cell
        size = sweep.options_for(c.strategy, c.task).image_size
        unit = Unit("images", c.task, c.strategy, size=size)
        images.setdefault(unit.key, unit)
        cell = Unit("cell", c.task, c.strategy, c.backbone, c)
        if r.plan.family == "lp":
            feat = Unit("features", c.task, c.strategy, c.backbone)
            features.setdefault(feat.key, feat)
            feature_cells.append(cell)
        else:
            streamed.append(cell)
    return [
        p for p in (list(images.values()), list(features.values()), feature_cells, streamed) if p
    ]


def refuse_unprepared(sweep: Sweep, plan: SweepPlan) -> None:
    waiting = {r.plan.cell.task for r in plan.applicable if r.pending and not r.plan.prepared}
    if not waiting:
        return
    tasks = [t for t in sweep.tasks if t.name in waiting]
    lines = [
        f"  - {t.name}: {t.path} does not exist"
        + (f"; prepare it with: {t.entry.prepare}" if t.entry.prepare else "")
        for t in tasks
    ]
    raise ConfigError(
        f"{len(tasks)} task(s) of sweep {sweep.name} are not prepared:\n" + "\n".join(lines),
        "Prepare the data with `progbench prepare` (docs/DATASETS.md), or leave these tasks out.",
    )


def refuse_other_data(sweep: Sweep) -> None:
    """A task whose name has runs of other data in the tree is refused before any store."""
    from progbench.runs.taskdata import check_task

    for t in sweep.tasks:
        if t.task is not None:
            check_task(t.task, sweep.runs_root)


def run_sweep(
    sweep: Sweep,
    executor: LocalExecutor | SlurmExecutor,
    on_result: OnResult = lambda _: None,
    on_start: Callable[[int], None] = lambda _: None,
) -> SweepRun:
    """Run (locally) or submit (SLURM) every pending cell; `on_start(n)` is told the number of
    units before the first one runs."""
    start = time.perf_counter()
    plan = make_plan(sweep)
    refuse_unprepared(sweep, plan)
    refuse_other_data(sweep)
    work = phases(sweep, plan)
    on_start(sum(len(p) for p in work))
    out = SweepRun(plan)
    if isinstance(executor, SlurmExecutor):
        out.job_ids = submit_sweep(sweep, work, executor)
    else:
        out.results = run_phases(sweep, work, executor, on_result)
    out.seconds = time.perf_counter() - start
    return out


@dataclass(frozen=True)
class SweepReport:
    results: tuple[Path, Path] | None  # results.parquet, results.csv
    html: Path | None
    notes: list[str]
    summary: list[dict[str, Any]] = field(default_factory=list)  # evaluate.results.summarise


def finish_sweep(sweep: Sweep, progress: Any = None) -> SweepReport:
    """Evaluate the sweep's tree, run its audits (`audit: true`, progbench.sweep.audit) and
    write its report (`<runs>/report/`, with an Audit section when audits exist)."""
    from progbench.evaluate.results import evaluate_tree, summarise, write_results
    from progbench.report import build_report, collect_run_versions
    from progbench.report.audit import collect_audits
    from progbench.runs import iter_runs
    from progbench.sweep.audit import audit_sweep

    root = sweep.runs_root
    if not root.is_dir() or not iter_runs(root).done:
        return SweepReport(None, None, ["no finished run to evaluate yet"])
    cfg = sweep.config.report
    tree = evaluate_tree(root, cfg.threshold, n_boot=cfg.n_boot, progress=progress)
    written = write_results(tree.results, root)
    audit_notes = audit_sweep(sweep)
    report = build_report(
        tree.results,
        root / "report",
        metrics=cfg.metrics,
        run_versions=collect_run_versions(root),
        audits=collect_audits(root),
    )
    notes = audit_notes + list(report.notes)
    return SweepReport(written, report.html, notes, summarise(tree.results))
