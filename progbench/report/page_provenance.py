"""The provenance part of report.html: library versions (the report's and the runs'), weights,
git SHAs, cost, and one row per run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from progbench.report import html as H
from progbench.report.provenance import git_shas, report_versions, weights_table
from progbench.report.tables import format_number


def _value_cell(v: Any) -> H.Cell:
    if isinstance(v, float | int) and not isinstance(v, bool):
        return H.num(v, format_number(v))
    return H.Cell("—" if v is pd.NA or v is None else str(v))


def _text_table(table_id: str, df: pd.DataFrame, caption: str | None = None) -> H.Table:
    rows = [[H.Cell(str(v)) for v in row] for row in df.itertuples(index=False)]
    return H.Table(table_id, list(df.columns), rows, caption)


def versions_blocks(run_versions: Sequence[dict[str, Any]] | None) -> list[H.Block]:
    versions = report_versions()
    out: list[H.Block] = [
        H.Heading("Software that drew this report"),
        H.Table(
            "versions-report",
            ["library", "version"],
            [[H.Cell(k), H.Cell(v)] for k, v in versions.items()],
        ),
        H.Heading("Software the runs recorded"),
    ]
    if not run_versions:
        out.append(
            H.Paragraph("Not given (the report was built from a results table alone).", note=True)
        )
        return out
    names = sorted({k for entry in run_versions for k in entry["versions"]})
    rows = [
        [H.Cell(n), *[H.Cell(str(entry["versions"].get(n, "—"))) for entry in run_versions]]
        for n in names
    ]
    header = ["library", *[f"set {i + 1} ({e['runs']} runs)" for i, e in enumerate(run_versions)]]
    out.append(
        H.Table(
            "versions-runs",
            header,
            rows,
            "Library versions from the runs' spec.json, one column per distinct set.",
        )
    )
    return out


def cost_blocks(cost: pd.DataFrame) -> list[H.Block]:
    out: list[H.Block] = [H.Heading("Cost")]
    if cost.empty:
        return out
    rows = [
        [H.Cell(v) if isinstance(v, str) else H.num(v, format_number(v)) for v in row]
        for row in cost.itertuples(index=False)
    ]
    out.append(
        H.Table(
            "cost",
            list(cost.columns),
            rows,
            "Hours summed over runs; memory is the largest peak of any run.",
        )
    )
    return out


def runs_blocks(runs: pd.DataFrame) -> list[H.Block]:
    rows = [[_value_cell(v) for v in row] for row in runs.itertuples(index=False)]
    return [
        H.Heading("Runs"),
        H.Table(
            "runs",
            list(runs.columns),
            rows,
            "One row per run: spec, cost (metrics.json) and provenance.",
        ),
    ]


def provenance_blocks(
    runs: pd.DataFrame, run_versions: Sequence[dict[str, Any]] | None, cost: pd.DataFrame
) -> list[H.Block]:
    return [
        *versions_blocks(run_versions),
        H.Heading("Weights"),
        _text_table("weights", weights_table(runs)),
        H.Heading("Code (git SHA of the runs)"),
        _text_table("git", git_shas(runs)),
        *cost_blocks(cost),
        *runs_blocks(runs),
    ]
