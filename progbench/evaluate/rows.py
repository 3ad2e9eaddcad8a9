"""The results table's columns and rows: one run's rows, a group's aggregate rows, the table.

One row per (run or aggregate) x split x metric, with the spec of the run or group, its cost
(per run; an aggregate's summarised) and provenance; `to_table` gives them RESULT_COLUMNS and
stable dtypes. evaluate.results builds the table of a whole tree from these.

`n_degenerate` counts the runs behind a row whose split was predicted one class at the chosen
threshold (a constant classifier; evaluate.metrics.is_degenerate): 0 or 1 on a run's rows, the
group's (fold's, repeat's) count on an aggregate's. It is counted from the runs on every call,
never cached, so the cached aggregates keep their meaning (results.AGGREGATE_VERSION unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from progbench.evaluate.aggregate import AggregateRow, EvaluatedRun
from progbench.evaluate.metrics import RESULT_KEYS

SPEC_COLUMNS = (
    "task",
    "backbone",
    "weights",
    "weights_fingerprint",
    "strategy",
    "regime",
    "scheme",
)
COST_COLUMNS = (
    "trainable_percent",
    "wall_time_s",
    "device_time_s",
    "peak_host_mb",
    "peak_device_mb",
)
RESULT_COLUMNS: tuple[str, ...] = (
    "level",
    *SPEC_COLUMNS,
    "shots",
    "repeat",
    "fold",
    "test_center",  # the held-out centre of a LOCO run (spec.json extra.test_center); else NA
    "split",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n_runs",
    "n_degenerate",  # runs behind the row that predicted one class (module docstring)
    "threshold_rule",
    *COST_COLUMNS,
    "git_sha",
    "measured_at",
    "run_dir",
)
_INT_COLUMNS = ("shots", "repeat", "fold", "n_runs", "n_degenerate")
_FLOAT_COLUMNS = ("value", "ci_low", "ci_high", *COST_COLUMNS)


def _spec_fields(er: EvaluatedRun) -> dict[str, Any]:
    s = er.spec
    return {
        "task": s.task,
        "backbone": s.backbone,
        "weights": s.weights,
        "weights_fingerprint": s.weights_fingerprint,
        "strategy": s.strategy,
        "regime": s.regime,
        "scheme": s.scheme,
        "shots": s.shots,
    }


def _cost_fields(er: EvaluatedRun) -> dict[str, Any]:
    cost = er.run.cost if er.run else None
    return {c: getattr(cost, c) if cost else None for c in COST_COLUMNS}


def _test_center(er: EvaluatedRun) -> str | None:
    centre = er.spec.extra.get("test_center") if er.spec.scheme == "loco" else None
    return None if centre is None else str(centre)


def run_rows(er: EvaluatedRun, root: Path | None = None) -> list[dict[str, Any]]:
    """Rows of one run: every split it has, every key of its metrics."""
    run = er.run
    path = run.path if run else None
    base = (
        _spec_fields(er)
        | _cost_fields(er)
        | {
            "level": "run",
            "repeat": er.spec.repeat,
            "fold": er.spec.fold,
            "test_center": _test_center(er),
            "n_runs": 1,
            "git_sha": run.git_sha if run else None,
            "measured_at": run.finished_at if run else None,
            "run_dir": str(path.relative_to(root))
            if path and root
            else (str(path) if path else None),
        }
    )
    rows = []
    for split, values in er.metrics.items():
        for metric in RESULT_KEYS:
            rows.append(
                base
                | {
                    "split": split,
                    "metric": metric,
                    "value": values.get(metric),
                    "threshold_rule": values.get("threshold_rule"),
                    "n_degenerate": int(bool(values.get("degenerate"))),
                }
            )
    return rows


def _joined(values: Sequence[str | None]) -> str | None:
    distinct = sorted({v for v in values if v})
    return ",".join(distinct) if distinct else None


def _degenerate(er: EvaluatedRun) -> bool:
    return bool(er.metrics.get("test", {}).get("degenerate"))


def _n_degenerate(runs: Sequence[EvaluatedRun], row: AggregateRow) -> int:
    """Degenerate runs behind an aggregate row: its fold's, its repeat's, or the group's."""
    return sum(
        _degenerate(r)
        for r in runs
        if (row.fold is None or r.spec.fold == row.fold)
        and (row.repeat is None or r.spec.repeat == row.repeat)
    )


def aggregate_rows(
    runs: Sequence[EvaluatedRun], rows: Sequence[AggregateRow], policy: str, measured_at: str
) -> list[dict[str, Any]]:
    """Table rows for a group's aggregates: spec of the group, summarised cost, provenance."""
    first = runs[0]
    costs = [_cost_fields(r) for r in runs]

    def summarise(col: str, fn: Callable[[list[float]], float]) -> float | None:
        xs = [c[col] for c in costs if c[col] is not None]
        return float(fn(xs)) if xs else None

    fallbacks = sum("fallback" in r.threshold_rule for r in runs)
    base = {k: v for k, v in _spec_fields(first).items()} | {
        "split": "test",
        "threshold_rule": policy
        + (f" (fallback fixed:0.5 in {fallbacks} runs)" if fallbacks else ""),
        # Cost per run: mean time and trainable share, worst-case (max) memory.
        "trainable_percent": summarise("trainable_percent", np.mean),
        "wall_time_s": summarise("wall_time_s", np.mean),
        "device_time_s": summarise("device_time_s", np.mean),
        "peak_host_mb": summarise("peak_host_mb", np.max),
        "peak_device_mb": summarise("peak_device_mb", np.max),
        "git_sha": _joined([r.run.git_sha if r.run else None for r in runs]),
        "measured_at": measured_at,
        "run_dir": None,
    }
    if len({r.spec.weights_fingerprint for r in runs}) > 1:
        base["weights_fingerprint"] = _joined([r.spec.weights_fingerprint for r in runs])
    return [base | a.as_dict() | {"n_degenerate": _n_degenerate(runs, a)} for a in rows]


def to_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with RESULT_COLUMNS and stable dtypes (undefined values are NaN/NA)."""
    df = pd.DataFrame(list(rows), columns=list(RESULT_COLUMNS))
    for col in _INT_COLUMNS:
        df[col] = pd.array(df[col].tolist(), dtype="Int64")
    for col in _FLOAT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in RESULT_COLUMNS:
        if col not in _INT_COLUMNS and col not in _FLOAT_COLUMNS:
            df[col] = df[col].astype("string")
    return df
