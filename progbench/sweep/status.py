"""`progbench sweep status`: where every cell of a sweep stands, read from the run tree.

A cell is done when every one of its runs is DONE; running while its unit lock is held (a
local worker) or its SLURM job runs; failed when its last attempt failed (with the error line
and the log); pending otherwise; n/a when the registry says it does not apply; not prepared when
its task's data is not on this machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from filelock import FileLock, Timeout

from progbench.sweep.cells import CellPlan, expand
from progbench.sweep.cost import spent_hours
from progbench.sweep.execute import Unit, state_paths
from progbench.sweep.slurm_run import states as slurm_states
from progbench.sweep.spec import Sweep


@dataclass(frozen=True)
class CellStatus:
    plan: CellPlan
    state: str
    runs_done: int
    device_hours: float
    error: str | None = None
    log: str | None = None

    def to_json(self) -> dict[str, Any]:
        c = self.plan.cell
        return {
            "task": c.task,
            "scheme": c.scheme,
            "backbone": c.backbone,
            "strategy": c.strategy,
            "regime": c.regime,
            "state": self.state,
            "runs_done": self.runs_done,
            "runs_total": len(self.plan.runs),
            "device_hours": round(self.device_hours, 4),
            "error": self.error,
            "log": self.log,
        }


def _held(lock_file) -> bool:
    if not lock_file.exists():
        return False
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def _last_attempt(state_file) -> dict[str, Any]:
    try:
        return json.loads(state_file.read_text())
    except (OSError, ValueError):
        return {}


def cell_status(sweep: Sweep, p: CellPlan, jobs: dict[str, Any]) -> CellStatus:
    if not p.applicable:
        return CellStatus(p, "n/a", 0, 0.0, error=p.reason)
    dirs = p.run_dirs(sweep.runs_root)
    finished = [d for d in dirs if (d / "DONE").is_file()]
    hours = spent_hours(finished)
    if len(finished) == len(dirs):
        return CellStatus(p, "done", len(finished), hours)
    if not p.prepared:
        return CellStatus(p, "not prepared", 0, 0.0)
    unit = Unit("cell", p.cell.task, p.cell.strategy, p.cell.backbone, p.cell)
    state_file, lock_file, _ = state_paths(sweep, unit)
    job = jobs.get(unit.key)
    if _held(lock_file) or (job is not None and job.state == "running"):
        return CellStatus(p, "running", len(finished), hours)
    if job is not None and job.state == "pending":
        return CellStatus(p, "pending", len(finished), hours)
    last = _last_attempt(state_file)
    if last.get("state") == "failed":
        return CellStatus(p, "failed", len(finished), hours, last.get("error"), last.get("log"))
    if job is not None and job.state == "failed":
        log = str(job.log) if job.log else None
        return CellStatus(p, "failed", len(finished), hours, job.error, log)
    return CellStatus(p, "pending", len(finished), hours)


def sweep_status(sweep: Sweep) -> list[CellStatus]:
    jobs = {s.key: s for s in slurm_states(sweep).values() if s.key}
    return [cell_status(sweep, p, jobs) for p in expand(sweep)]


def totals(cells: list[CellStatus]) -> dict[str, Any]:
    out: dict[str, Any] = {"cells": len(cells)}
    for c in cells:
        out[c.state] = out.get(c.state, 0) + 1
    live = [c for c in cells if c.state != "n/a"]
    out["runs_done"] = sum(c.runs_done for c in live)
    out["runs_total"] = sum(len(c.plan.runs) for c in live)
    out["device_hours"] = round(sum(c.device_hours for c in live), 4)
    return out
