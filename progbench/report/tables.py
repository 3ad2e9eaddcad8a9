"""Results tables: the metric as mean ± std ×100 per task × backbone × strategy, one table per
setting (full data, each few-shot k), with the pooled value and its 95% patient-bootstrap CI
beside it, the best cell of each task in bold. Markdown and CSV.

A cell some of whose runs predicted one class for every test image (a degenerate classifier)
carries DEGENERATE_MARK and says in how many runs; a table whose cells were scored over
different numbers of folds says so under its caption (`fold_count_note`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from progbench.report.data import ReportData, Setting

UNDEFINED = "—"
DEGENERATE_MARK = "†"
LONG_COLUMNS = (
    "task",
    "scheme",
    "backbone",
    "family",
    "strategy",
    "regime",
    "shots",
    "n_runs",
    "n_degenerate",
    "mean",
    "std",
    "pooled",
    "ci_low",
    "ci_high",
    "cell",
    "pooled_cell",
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


def format_pooled(pooled: float, low: float, high: float) -> str:
    """`pooled [low, high]` ×100; without the CI when it is undefined (no bootstrap), empty
    when the pooled value is."""
    if pooled is None or math.isnan(pooled):
        return ""
    text = f"{100 * pooled:.1f}"
    if not (math.isnan(low) or math.isnan(high)):
        text += f" [{100 * low:.1f}, {100 * high:.1f}]"
    return text


def format_number(x: object, digits: int = 3) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return UNDEFINED
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, float | np.floating):
        v = float(x)
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return str(x)


@dataclass(frozen=True)
class SummaryTable:
    setting: Setting
    long: pd.DataFrame  # LONG_COLUMNS and task_label, rows in display order


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
    g["pooled_cell"] = [
        format_pooled(p, lo, hi)
        for p, lo, hi in zip(g["pooled"], g["ci_low"], g["ci_high"], strict=True)
    ]
    g["best"] = False
    for _, idx in g.groupby(["task", "scheme"]).groups.items():
        g.loc[idx, "best"] = best_mask(g.loc[idx, "mean"], data.higher_is_better)
    task_rank = {t: i for i, t in enumerate(data.tasks)}
    model_rank = {m: i for i, m in enumerate(data.models)}
    strategy_rank = {s: i for i, s in enumerate(data.strategies)}
    g = g.assign(
        _t=g["task_label"].map(task_rank),
        _m=g["model"].map(model_rank),
        _s=g["strategy"].map(strategy_rank),
    ).sort_values(["_t", "_m", "_s"])
    long = g.assign(backbone=g["model"])  # the model label: `backbone (weights)` if ambiguous
    long["shots"] = long["shots"].where(long["regime"] != "full", pd.NA).astype("Int64")
    return SummaryTable(setting, long[[*LONG_COLUMNS, "task_label"]].reset_index(drop=True))


def degenerate_text(n: int) -> str:
    """What a cell's mark means: `† one class in 2 run(s)`; empty when no run was degenerate."""
    return f"{DEGENERATE_MARK} one class in {n} run(s)" if n else ""


def fold_count_note(table: SummaryTable) -> str | None:
    """A sentence when the table's cells were scored over different numbers of folds (folds
    missing, or folds where the metric is undefined): the usual count and the cells off it."""
    long = table.long.dropna(subset=["n_runs"])
    counts = long["n_runs"].astype(int)
    if counts.nunique() <= 1:
        return None
    usual = int(counts.mode().max())
    off = long[counts != usual]
    cells = [
        f"{r.task_label} / {r.backbone} / {r.strategy} ({int(r.n_runs)})"
        for r in off.itertuples(index=False)
    ]
    shown = "; ".join(cells[:8]) + (f"; and {len(cells) - 8} more" if len(cells) > 8 else "")
    return (
        f"The cells of this table were scored over different numbers of folds: {usual} for most, "
        f"other counts for {shown}. A fold is missing when its run is, or does not count when "
        "the metric is undefined on it."
    )


@dataclass(frozen=True)
class WideCell:
    cell: str  # mean ± std
    pooled: str  # pooled [CI], or empty
    mean: float
    best: bool
    n_degenerate: int = 0  # runs of the cell that predicted one class on their test split

    @property
    def text(self) -> str:
        """The cell with DEGENERATE_MARK when any of its runs was degenerate."""
        return f"{self.cell} {DEGENERATE_MARK}" if self.n_degenerate else self.cell

    @property
    def note(self) -> str:
        """The pooled value, then the degenerate runs, as one line."""
        return "; ".join(x for x in (self.pooled, degenerate_text(self.n_degenerate)) if x)


EMPTY_CELL = WideCell(UNDEFINED, "", math.nan, False)


def wide_rows(
    table: SummaryTable, strategies: Sequence[str]
) -> list[tuple[str, str, list[WideCell]]]:
    """(task label, backbone, [cell per strategy]) rows; strategies without a run show '—'."""
    rows = []
    long = table.long
    for (task, model), part in long.groupby(["task_label", "backbone"], sort=False):
        by_strategy = {
            r.strategy: WideCell(
                r.cell, r.pooled_cell, float(r.mean), bool(r.best), int(r.n_degenerate)
            )
            for r in part.itertuples(index=False)
        }
        rows.append((str(task), str(model), [by_strategy.get(s, EMPTY_CELL) for s in strategies]))
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
    pooled = (
        "the metric of all folds' test predictions pooled"
        if not setting.is_fewshot
        else "the mean over draws of the pooled metric"
    )
    direction = "higher" if data.higher_is_better else "lower"
    return (
        f"{setting.title}: {data.label} ×100, mean ± std {spread} (test split); in brackets "
        f"{pooled}, with its 95% CI from a bootstrap over patients when one was drawn. "
        f"Best mean per task in bold ({direction} is better); {UNDEFINED} = no run or undefined; "
        f"{DEGENERATE_MARK} = a degenerate classifier: some of the cell's runs predicted one class "
        "for every test image at the chosen threshold."
    )


def markdown_cell(c: WideCell) -> str:
    text = f"**{c.cell}**" if c.best else c.cell
    text = f"{text} ({c.pooled})" if c.pooled else text
    return f"{text} {degenerate_text(c.n_degenerate)}" if c.n_degenerate else text


def to_markdown(table: SummaryTable, data: ReportData) -> str:
    strategies = table_strategies(table, data.strategies)
    rows = [
        [task, model, *[markdown_cell(c) for c in cells]]
        for task, model, cells in wide_rows(table, strategies)
    ]
    body = markdown_table(
        ["task", "backbone", *strategies], rows, [False, False, *[True] * len(strategies)]
    )
    folds = fold_count_note(table)
    note = f"\n\n{folds}" if folds else ""
    return f"### {table.setting.title}\n\n{caption(data, table.setting)}{note}\n\n{body}"


def to_csv(table: SummaryTable) -> str:
    """Long CSV: one row per task × backbone × strategy, raw values (not ×100)."""
    return table.long[list(LONG_COLUMNS)].to_csv(index=False, lineterminator="\n")
