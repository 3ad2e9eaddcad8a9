"""`progbench sweep plan`: the grid as cells, what is done and pending, the order of the work,
and the projected device time of what is left (progbench.sweep.cost).

The work runs in dependency order: image stores (one per task image set), then feature stores
(one per image set x backbone, shared by every task and regime that uses it), then the LP cells
(seconds each from the cache), then the streamed PEFT/FFT cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from progbench.sweep.cells import CellPlan, RunKey, expand
from progbench.sweep.cost import STUDY_GPU_HOURS, CostOptions, Projection, describe_basis, project
from progbench.sweep.spec import Sweep


@dataclass(frozen=True)
class CellRow:
    plan: CellPlan
    done: int
    pending: tuple[RunKey, ...]
    device_hours: float
    basis: str

    @property
    def state(self) -> str:
        if not self.plan.applicable:
            return "n/a"
        if not self.pending:
            return "done"
        return "pending" if self.plan.prepared else "not prepared"


@dataclass(frozen=True)
class Stage:
    name: str
    items: int
    what: str


@dataclass
class SweepPlan:
    sweep: Sweep
    rows: list[CellRow]
    stages: list[Stage]
    projection: Projection
    basis: str
    notes: list[str] = field(default_factory=list)

    @property
    def applicable(self) -> list[CellRow]:
        return [r for r in self.rows if r.plan.applicable]

    @property
    def not_applicable(self) -> list[CellRow]:
        return [r for r in self.rows if not r.plan.applicable]

    def totals(self) -> dict[str, Any]:
        rows = self.applicable
        return {
            "cells": len(rows),
            "cells_not_applicable": len(self.not_applicable),
            "runs": sum(len(r.plan.runs) for r in rows),
            "runs_done": sum(r.done for r in rows),
            "runs_pending": sum(len(r.pending) for r in rows),
            "device_hours": round(self.projection.total_hours, 3),
            "extract_device_hours": round(self.projection.extract_hours, 3),
            "study_gpu_hours": STUDY_GPU_HOURS,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep.name,
            "file": str(self.sweep.source),
            "runs_root": str(self.sweep.runs_root),
            "basis": self.basis,
            "stages": [s.__dict__ for s in self.stages],
            "cells": [
                {
                    "task": r.plan.cell.task,
                    "scheme": r.plan.cell.scheme,
                    "backbone": r.plan.cell.backbone,
                    "strategy": r.plan.cell.strategy,
                    "regime": r.plan.cell.regime,
                    "family": r.plan.family,
                    "state": r.state,
                    "runs_total": len(r.plan.runs),
                    "runs_done": r.done,
                    "runs_pending": len(r.pending),
                    "device_hours": round(r.device_hours, 4),
                    "basis": r.basis,
                    "reason": r.plan.reason,
                }
                for r in self.rows
            ],
            "totals": self.totals(),
            "notes": self.notes,
        }


def _pending(p: CellPlan, sweep: Sweep) -> tuple[int, tuple[RunKey, ...]]:
    done = set(p.finished(sweep.runs_root))
    return len(done), tuple(k for k in p.runs if k not in done)


def _stages(sweep: Sweep, rows: list[CellRow]) -> list[Stage]:
    live = [r for r in rows if r.plan.applicable and r.pending and r.plan.prepared]
    tasks = {t.name: t for t in sweep.tasks}
    manifests = {
        (
            str(tasks[r.plan.cell.task].path),
            sweep.options_for(r.plan.cell.strategy, r.plan.cell.task).image_size,
        )
        for r in live
    }
    features = {(r.plan.cell.task, r.plan.cell.backbone) for r in live if r.plan.family == "lp"}
    image_sets = {
        (str(task.manifest.source), b) for t, b in features if (task := tasks[t].task) is not None
    }
    lp = sum(r.plan.family == "lp" for r in live)
    return [
        Stage("image stores", len(manifests), "a task's images decoded once per image size"),
        Stage("feature stores", len(image_sets), "one per image set x backbone, for LP cells"),
        Stage("lp cells", lp, "linear probes and few-shot grids from the feature stores"),
        Stage("streamed cells", len(live) - lp, "PEFT and FFT runs, images streamed"),
    ]


def _scheme_warnings(sweep: Sweep) -> list[str]:
    """`schemes: [auto]` that chose LOCO where a fold trains on few patients of a class."""
    from progbench.data.splits import resolve_scheme, scheme_warnings

    out = []
    for t in sweep.tasks:
        if t.task is None or "auto" not in sweep.config.schemes:
            continue
        resolved = resolve_scheme(t.task, "auto")[0]
        out += [f"task {t.name}: {w}" for w in scheme_warnings(t.task, "auto", resolved)]
    return out


def make_plan(sweep: Sweep, opts: CostOptions | None = None) -> SweepPlan:
    opts = opts or CostOptions()
    plans = expand(sweep)
    pending: dict[str, tuple[RunKey, ...]] = {}
    done: dict[str, int] = {}
    for p in plans:
        done[p.cell.id], pending[p.cell.id] = _pending(p, sweep) if p.applicable else (0, ())
    projection = project(sweep, plans, {k: list(v) for k, v in pending.items()}, opts)
    rows = [
        CellRow(
            p,
            done[p.cell.id],
            pending[p.cell.id],
            projection.cell_hours.get(p.cell.id, 0.0),
            projection.cell_basis.get(p.cell.id, "-"),
        )
        for p in plans
    ]
    notes = [
        f"task {t.name} is not prepared ({t.path} does not exist); its cells are counted from "
        f"its declared cohort size"
        + (f"; prepare it with: {t.entry.prepare}" if t.entry.prepare else "")
        for t in sweep.tasks
        if not t.prepared
    ]
    notes += _scheme_warnings(sweep)
    return SweepPlan(
        sweep, rows, _stages(sweep, rows), projection, describe_basis(projection, opts), notes
    )
