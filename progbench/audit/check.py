"""What every audit check is and returns: the Check protocol (a name, a reason to skip, a run)
and CheckResult, one entry of `audit.json`'s `checks` list.

A check is a small class (benchopt-plugin style): `skip_reason(ctx)` says, before any work, why
it cannot run on this task and these weights (None: it can); `run(ctx)` returns its result. The
runner (progbench.audit.runner) turns a ProgbenchError raised by `run` into a skip with the
error's message, so one check that cannot run never stops the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from progbench.audit.context import AuditContext

Status = Literal["ok", "flag", "skip"]
STATUSES: tuple[str, ...] = ("ok", "flag", "skip")


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict. `metric` is the check's headline number (named by `metric_name`),
    `ci` its 95% patient-bootstrap interval where it has one, `data` the check's details."""

    name: str
    status: Status
    detail: str
    metric: float | None = None
    metric_name: str | None = None
    ci: tuple[float | None, float | None] | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        ci = None if self.ci is None else [_finite(self.ci[0]), _finite(self.ci[1])]
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "metric": _finite(self.metric),
            "metric_name": self.metric_name,
            "ci": ci,
            "data": self.data,
        }


def skipped(name: str, reason: str) -> CheckResult:
    return CheckResult(name, "skip", reason)


class Check(Protocol):
    """An audit check (progbench.audit.checks lists them, in the order they run)."""

    name: str
    summary: str  # one line: what the check asks

    def skip_reason(self, ctx: AuditContext) -> str | None:
        """Why this check cannot run here (None: it can); decided before any work."""
        ...

    def run(self, ctx: AuditContext) -> CheckResult: ...
