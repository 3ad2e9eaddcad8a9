"""`build_report`: the results table in, a report folder out (tables, statistics, figures, HTML).

The report is a pure function of its inputs: the same table gives byte-identical files (no
timestamps beyond the runs' own, sorted rows, fixed figure metadata). Rebuilding into the same
folder replaces the previous report: every file is written atomically, and files that the
previous build listed in `report-manifest.json` but this one does not make are removed. A
non-empty folder without that manifest is refused, so nothing else is ever overwritten.

Layout of the folder (one `<metric>/` folder per metric: mcc/, pr_auc/, ...):

    report.html                          every metric in one self-contained page, with a switch
    <metric>/tables.md                   every results table of the metric
    <metric>/tables/<setting>.md|.csv    one per setting: full, fewshot-k2, ...
    <metric>/centres/<setting>.md|.csv   LOCO results per held-out centre (LOCO runs only)
    <metric>/stats/wilcoxon-<setting>.md|.csv, <metric>/stats/friedman-<setting>.md,
    <metric>/stats/nemenyi-<setting>.csv
    <metric>/stats/summary.json          every test in machine-readable form
    <metric>/figures/<name>.png|.svg     see progbench.report.figures
    provenance/runs.csv, provenance/cost.csv
    report-manifest.json                 the files above with their sha256
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from progbench.evaluate.registry import PRIMARY_METRICS
from progbench.evaluate.stats import DEFAULT_ALPHA
from progbench.report.audit import with_audit
from progbench.report.centres import centre_csv, centre_markdown, centre_table
from progbench.report.data import ReportData, Setting, parse_metrics, prepare
from progbench.report.figureset import report_figures
from progbench.report.html import render_page
from progbench.report.page import MetricReport, build_page, flag_paragraphs
from progbench.report.provenance import cost_by_group, with_variants
from progbench.report.publish import MANIFEST, check_out_dir, publish
from progbench.report.significance import (
    friedman_markdown,
    setting_stats,
    stats_json,
    wilcoxon_markdown,
)
from progbench.report.tables import fold_count_note, summary_table, to_csv, to_markdown

REPORT_HTML = "report.html"
ProgressFn = Callable[[int, int], None]


@dataclass
class ReportResult:
    out_dir: Path
    html: Path
    files: list[Path]
    notes: list[str] = field(default_factory=list)  # what was left out, and why


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, lineterminator="\n").encode()


def metric_report(data: ReportData, alpha: float, notes: list[str]) -> MetricReport:
    """Tables, per-centre tables, tests and figures of one metric."""
    tables = [summary_table(data, s) for s in data.settings]
    centres = [c for s in data.settings if (c := centre_table(data, s)) is not None]
    stats = [setting_stats(data, s, alpha) for s in data.settings]
    for t in tables:
        if fold_count_note(t):
            notes.append(
                f"{data.label}, {t.setting.title}: cells scored over different numbers of "
                "folds (the table says which)"
            )
    for st in stats:
        if st.friedman is None:
            notes.append(f"{data.label}, {st.setting.title}: Friedman test {st.friedman_note}")
    figures = report_figures(data, stats, notes)
    return MetricReport(data, tables, centres, stats, figures)


def metric_files(m: MetricReport) -> dict[str, bytes]:
    """The files of one metric, under `<metric>/`."""
    data, root = m.data, m.metric
    files: dict[str, bytes] = {}
    all_md = [f"# Results: {data.label}\n", *(f"**{p.text}**\n" for p in flag_paragraphs(data))]
    for t in m.tables:
        md = to_markdown(t, data)
        files[f"{root}/tables/{t.setting.key}.md"] = md.encode()
        files[f"{root}/tables/{t.setting.key}.csv"] = to_csv(t).encode()
        all_md.append(md)
    files[f"{root}/tables.md"] = "\n".join(all_md).encode()
    for c in m.centres:
        files[f"{root}/centres/{c.setting.key}.md"] = centre_markdown(c, data).encode()
        files[f"{root}/centres/{c.setting.key}.csv"] = centre_csv(c).encode()
    for st in m.stats:
        key = st.setting.key
        files[f"{root}/stats/wilcoxon-{key}.md"] = wilcoxon_markdown(st, data).encode()
        files[f"{root}/stats/wilcoxon-{key}.csv"] = _csv(st.wilcoxon)
        files[f"{root}/stats/friedman-{key}.md"] = friedman_markdown(st, data).encode()
        if st.friedman is not None:
            nemenyi = st.friedman.nemenyi.reset_index(names="strategy")
            files[f"{root}/stats/nemenyi-{key}.csv"] = _csv(nemenyi)
    files[f"{root}/stats/summary.json"] = stats_json(m.stats).encode()
    for fig in m.figures:
        files[f"{root}/figures/{fig.name}.png"] = fig.png
        files[f"{root}/figures/{fig.name}.svg"] = fig.svg
    return files


def build_report(
    results: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    metrics: str | Sequence[str] = PRIMARY_METRICS,
    run_versions: Sequence[dict[str, Any]] | None = None,
    alpha: float = DEFAULT_ALPHA,
    run_variants: dict[str, str] | None = None,
    progress: ProgressFn | None = None,
    audits: Sequence[dict[str, Any]] | None = None,
) -> ReportResult:
    """Write the report of `results` (the table of `progbench evaluate`) for `metrics` (names,
    or one comma-separated string; default MCC and PR-AUC) into `out_dir`. `run_versions` (from
    `collect_run_versions`) adds the runs' library versions, `run_variants` (from
    `collect_run_variants`) the feature variant of each run to the runs table; `audits` (from
    `collect_audits`) an Audit section before the results."""
    names = parse_metrics(metrics)
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    prepared = [prepare(results, m) for m in names]  # every metric checked before drawing
    prepared = [dataclasses.replace(d, runs=with_variants(d.runs, run_variants)) for d in prepared]
    notes: list[str] = []
    steps = len(names) + 1
    files: dict[str, bytes] = {}
    reports = []
    for i, data in enumerate(prepared):
        reports.append(metric_report(data, alpha, notes))
        files |= metric_files(reports[-1])
        if progress:
            progress(i + 1, steps)
    runs = prepared[0].runs
    cost = cost_by_group(runs)
    files["provenance/runs.csv"] = _csv(runs)
    files["provenance/cost.csv"] = _csv(cost)
    page = with_audit(build_page(reports, results, run_versions, cost), audits or [])
    files[REPORT_HTML] = render_page(page).encode()
    written = publish(out_dir, files)
    if progress:
        progress(steps, steps)
    return ReportResult(out_dir=out_dir, html=out_dir / REPORT_HTML, files=written, notes=notes)


__all__ = ["MANIFEST", "REPORT_HTML", "ReportResult", "Setting", "build_report"]
