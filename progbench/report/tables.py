"""Results tables: the metric as mean ± std ×100 per task × backbone × strategy, one table per
setting (full data, each few-shot k), the best cell of each task in bold. Markdown and CSV."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from progbench.report.data import ReportData, Setting

UNDEFINED = "—"
LONG_COLUMNS = (
    "task",
    "backbone",
    "family",
    "strategy",
    "regime",
    "shots",
    "n_runs",
    "mean",
    "std",
    "cell",
    "best",
)


def format_cell(mean: float, std: float | None = None) -> str:
    """`mean ± std` ×100 with one decimal; the std is left out when undefined (one fold)."""
    if mean is None or math.isnan(mean):
        return UNDEFINED
    text = f"{100 * mean:.1f}"
    if std is not None and not math.isnan(std):
        text += f" ± {100 * std:.1f}"
    return text


def format_number(x: object, digits: int = 3) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return UNDEFINED
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, float | np.floating):
        return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"
    return str(x)


@dataclass(frozen=True)
class SummaryTable:
    setting: Setting
    long: pd.DataFrame  # LONG_COLUMNS, rows in display order


def best_mask(means: pd.Series, higher_is_better: bool) -> pd.Series:
    """True where the mean equals the best defined mean (ties are all best)."""
    defined = means.dropna()
    if defined.empty:
        return pd.Series(False, index=means.index)
    best = defined.max() if higher_is_better else defined.min()
    return means.notna() & np.isclose(means.fillna(best + 1.0), best, rtol=0.0, atol=1e-12)


def summary_table(data: ReportData, setting: Setting) -> SummaryTable:
    g = data.groups_in(setting).copy()
    g["family"] = g["model"].map(data.families)
    g["cell"] = [format_cell(m, s) for m, s in zip(g["mean"], g["std"], strict=True)]
    g["best"] = False
    for _, idx in g.groupby("task").groups.items():
        g.loc[idx, "best"] = best_mask(g.loc[idx, "mean"], data.higher_is_better)
    model_rank = {m: i for i, m in enumerate(data.models)}
    strategy_rank = {s: i for i, s in enumerate(data.strategies)}
    g = g.assign(_m=g["model"].map(model_rank), _s=g["strategy"].map(strategy_rank)).sort_values(
        ["task", "_m", "_s"]
    )
    long = g.assign(backbone=g["model"])  # the model label: `backbone (weights)` if ambiguous
    long["shots"] = long["shots"].where(long["regime"] != "full", pd.NA).astype("Int64")
    return SummaryTable(setting, long[list(LONG_COLUMNS)].reset_index(drop=True))


def wide_rows(
    table: SummaryTable, strategies: Sequence[str]
) -> list[tuple[str, str, list[tuple[str, bool]]]]:
    """(task, backbone, [(cell, best) per strategy]) rows; strategies without a run show '—'."""
    rows = []
    long = table.long
    for (task, model), part in long.groupby(["task", "backbone"], sort=False):
        by_strategy = {
            s: (c, bool(b))
            for s, c, b in part[["strategy", "cell", "best"]].itertuples(index=False)
        }
        rows.append(
            (str(task), str(model), [by_strategy.get(s, (UNDEFINED, False)) for s in strategies])
        )
    return rows


def table_strategies(table: SummaryTable, order: Sequence[str]) -> list[str]:
    present = set(table.long["strategy"])
    return [s for s in order if s in present]


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]
) -> str:
    """A GitHub-flavoured Markdown table (numeric columns right-aligned)."""
    lines = [
        "| " + " | ".join(_escape(h) for h in header) + " |",
        "|" + "|".join("--:" if n else ":--" for n in numeric) + "|",
    ]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def caption(data: ReportData, setting: Setting) -> str:
    spread = "over folds" if not setting.is_fewshot else "over folds of the mean over draws"
    direction = "higher" if data.higher_is_better else "lower"
    return (
        f"{setting.title}: {data.label} ×100, mean ± std {spread} (test split). "
        f"Best per task in bold ({direction} is better); {UNDEFINED} = no run or undefined."
    )


def to_markdown(table: SummaryTable, data: ReportData) -> str:
    strategies = table_strategies(table, data.strategies)
    rows = [
        [task, model, *[f"**{c}**" if best else c for c, best in cells]]
        for task, model, cells in wide_rows(table, strategies)
    ]
    body = markdown_table(
        ["task", "backbone", *strategies], rows, [False, False, *[True] * len(strategies)]
    )
    return f"### {table.setting.title}\n\n{caption(data, table.setting)}\n\n{body}"


def to_csv(table: SummaryTable) -> str:
    """Long CSV: one row per task × backbone × strategy, raw mean and std (not ×100)."""
    return table.long.to_csv(index=False, lineterminator="\n")
