"""LOCO results per held-out centre: one table per setting, a row per (task, model, strategy)
and a column per test centre, each cell the metric ×100 of the fold that held that centre out
(the run's value in the full regime, the mean over draws in few-shot regimes). The centre of a
fold is the `test_center` of its runs (spec.json `extra.test_center`, LOCO runs only)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from progbench.report.data import ReportData, Setting
from progbench.report.tables import (
    DEGENERATE_MARK,
    UNDEFINED,
    best_mask,
    format_cell,
    markdown_table,
)

CENTRE_COLUMNS = (
    "task",
    "scheme",
    "backbone",
    "family",
    "strategy",
    "regime",
    "shots",
    "test_center",
    "fold",
    "value",
    "n_degenerate",
    "best",
)


@dataclass(frozen=True)
class CentreTable:
    setting: Setting
    centres: list[str]
    long: pd.DataFrame  # CENTRE_COLUMNS and task_label, rows in display order


@dataclass(frozen=True)
class CentreRow:
    task: str  # the task label
    model: str
    strategy: str
    cells: list[tuple[str, float, bool]]  # (text, value, best) per centre


def centre_table(data: ReportData, setting: Setting) -> CentreTable | None:
    """The setting's per-centre values, or None when it has no run with a held-out centre."""
    f = data.folds_in(setting).dropna(subset=["test_center"]).copy()
    if f.empty:
        return None
    f["test_center"] = f["test_center"].astype(str)
    f["family"] = f["model"].map(data.families)
    f["best"] = False
    for _, idx in f.groupby(["task", "scheme", "test_center"]).groups.items():
        f.loc[idx, "best"] = best_mask(f.loc[idx, "value"], data.higher_is_better)
    ranks = {
        "_t": {t: i for i, t in enumerate(data.tasks)},
        "_m": {m: i for i, m in enumerate(data.models)},
        "_s": {s: i for i, s in enumerate(data.strategies)},
    }
    f = f.assign(
        _t=f["task_label"].map(ranks["_t"]),
        _m=f["model"].map(ranks["_m"]),
        _s=f["strategy"].map(ranks["_s"]),
    ).sort_values(["_t", "_m", "_s", "test_center"])
    long = f.assign(backbone=f["model"])
    long["shots"] = long["shots"].where(long["regime"] != "full", pd.NA).astype("Int64")
    long = long[[*CENTRE_COLUMNS, "task_label"]].reset_index(drop=True)
    return CentreTable(setting, sorted(set(long["test_center"])), long)


def centre_rows(table: CentreTable) -> list[CentreRow]:
    rows = []
    keys = ["task_label", "backbone", "strategy"]
    for (task, model, strategy), part in table.long.groupby(keys, sort=False):
        cols = ["test_center", "value", "best", "n_degenerate"]
        by_centre = {
            c: (format_cell(v) + (f" {DEGENERATE_MARK}" if d else ""), float(v), bool(b))
            for c, v, b, d in part[cols].itertuples(index=False)
        }
        cells = [by_centre.get(c, (UNDEFINED, math.nan, False)) for c in table.centres]
        rows.append(CentreRow(str(task), str(model), str(strategy), cells))
    return rows


def centre_caption(data: ReportData, setting: Setting) -> str:
    value = "the run's value" if not setting.is_fewshot else "the mean over draws"
    direction = "higher" if data.higher_is_better else "lower"
    return (
        f"{setting.title}, leave-one-centre-out: {data.label} ×100 on each held-out centre "
        f"({value} of the fold that held it out, test split). Best of each task and centre "
        f"in bold ({direction} is better); {UNDEFINED} = no run or undefined; "
        f"{DEGENERATE_MARK} = a degenerate classifier: the fold's run (a draw, in few-shot "
        "regimes) predicted one class for every test image."
    )


def centre_markdown(table: CentreTable, data: ReportData) -> str:
    rows = [
        [r.task, r.model, r.strategy, *[f"**{t}**" if b else t for t, _, b in r.cells]]
        for r in centre_rows(table)
    ]
    header = ["task", "backbone", "strategy", *table.centres]
    body = markdown_table(header, rows, [False] * 3 + [True] * len(table.centres))
    title = f"### {table.setting.title}: per test centre"
    return f"{title}\n\n{centre_caption(data, table.setting)}\n\n{body}"


def centre_csv(table: CentreTable) -> str:
    """Long CSV: one row per (task, model, strategy, centre), raw values (not ×100)."""
    return table.long[list(CENTRE_COLUMNS)].to_csv(index=False, lineterminator="\n")
