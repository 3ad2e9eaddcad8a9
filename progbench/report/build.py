"""`build_report`: the results table in, a report folder out (tables, statistics, figures, HTML).

The report is a pure function of its inputs: the same table gives byte-identical files (no
timestamps beyond the runs' own, sorted rows, fixed figure metadata). Rebuilding into the same
folder replaces the previous report: every file is written atomically, and files that the
previous build listed in `report-manifest.json` but this one does not make are removed. A
non-empty folder without that manifest is refused, so nothing else is ever overwritten.

Layout of the folder:

    report.html                 everything below in one self-contained page
    tables.md                   every results table
    tables/<setting>.md|.csv    one per setting: full, fewshot-k2, ...
    stats/wilcoxon-<setting>.md|.csv, stats/friedman-<setting>.md, stats/nemenyi-<setting>.csv
    stats/summary.json          every test in machine-readable form
    figures/<name>.png|.svg     see progbench.report.figures
    provenance/runs.csv, provenance/cost.csv
    report-manifest.json        the files above with their sha256
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from progbench.atomic import atomic_write_bytes
from progbench.errors import ConfigError
from progbench.evaluate.stats import DEFAULT_ALPHA
from progbench.report import figures as F
from progbench.report import html as H
from progbench.report.data import ReportData, Setting, prepare
from progbench.report.provenance import cost_by_group, git_shas, report_versions, weights_table
from progbench.report.significance import (
    WILCOXON_HEADER,
    SettingStats,
    friedman_markdown,
    setting_stats,
    stats_json,
    wilcoxon_markdown,
)
from progbench.report.tables import (
    SummaryTable,
    caption,
    format_number,
    summary_table,
    table_strategies,
    to_csv,
    to_markdown,
    wide_rows,
)

REPORT_HTML = "report.html"
MANIFEST = "report-manifest.json"
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ReportFigure:
    name: str
    title: str
    caption: str
    png: bytes
    svg: bytes


@dataclass
class ReportResult:
    out_dir: Path
    html: Path
    files: list[Path]
    notes: list[str] = field(default_factory=list)  # what was left out, and why


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, lineterminator="\n").encode()


# ------------------------------------------------------------------------------------ figures


def _figures(
    data: ReportData, stats: Sequence[SettingStats], notes: list[str]
) -> list[ReportFigure]:
    label = data.label
    specs: list[tuple[str, str, str, Callable[[], Any]]] = [
        (
            "rq1-strategies-boxplot",
            f"{label} per strategy",
            f"Per-fold {label} of every backbone, one box per strategy and panel per task "
            "(full data).",
            lambda: F.boxplot_figure(data),
        ),
        (
            "rq1-cnn-vs-fm",
            f"{label}: CNN against foundation models",
            f"Mean {label} over folds of each backbone, CNN and foundation-model (FM) backbones "
            "side by side per strategy (full data); `unknown` = not in the backbone registry.",
            lambda: F.cnn_vs_fm_figure(data),
        ),
        (
            "rq2-efficiency",
            f"{label} against % trainable parameters",
            f"Mean {label} over folds against the share of trainable parameters (log scale); "
            "colour = strategy, marker = backbone (full data).",
            lambda: F.efficiency_figure(data),
        ),
    ]
    for regime in sorted({s.regime for s in data.settings if s.is_fewshot}):
        specs.append(
            (
                f"rq3-{regime}",
                f"{label} against k ({regime})",
                f"Mean {label} over folds against k, images per class; bands = ± the std over "
                "few-shot draws (mean over folds of the within-fold std).",
                lambda regime=regime: F.fewshot_figure(data, regime),
            )
        )
    for st in stats:
        if st.friedman is not None:
            title = f"Critical difference diagram, {st.setting.title} ({label})"
            specs.append(
                (
                    f"extra-cd-{st.setting.key}",
                    title,
                    f"Mean rank of each strategy over {st.friedman.n_blocks} (task, backbone) "
                    f"blocks (1 = best); bars join strategies the Nemenyi test does not separate "
                    f"at α = {st.alpha:g}; CD = {st.friedman.cd:.2f}.",
                    lambda st=st, title=title: F.cd_figure(st.friedman, title),
                )
            )
    out = []
    for name, title, cap, make in specs:
        fig = make()
        if fig is None:
            notes.append(f"figure {name} left out: the table has no data for it")
            continue
        png, svg = F.render(fig)
        out.append(ReportFigure(name, title, cap, png, svg))
    return out


# ------------------------------------------------------------------------------------ html


def _results_html(data: ReportData, tables: Sequence[SummaryTable]) -> str:
    parts = []
    for t in tables:
        strategies = table_strategies(t, data.strategies)
        means = {(r.task, r.backbone, r.strategy): r.mean for r in t.long.itertuples(index=False)}
        rows = []
        for task, model, cells in wide_rows(t, strategies):
            row = [H.Cell(task), H.Cell(model), H.Cell(data.families.get(model, "unknown"))]
            for s, (text, best) in zip(strategies, cells, strict=True):
                mean = means.get((task, model, s))
                row.append(H.Cell(text, sort=mean, numeric=True, best=best))
            rows.append(row)
        parts.append(H.heading(t.setting.title))
        parts.append(
            H.table_html(
                f"table-{t.setting.key}",
                ["task", "backbone", "family", *strategies],
                rows,
                caption(data, t.setting),
            )
        )
    return "".join(parts)


def _stats_html(
    data: ReportData, stats: Sequence[SettingStats], figs: dict[str, ReportFigure]
) -> str:
    parts = [
        H.paragraph(
            "Wilcoxon signed-rank tests (two-sided) between every pair of strategies, paired on "
            "matched (task, backbone, fold): per-fold values in the full regime, per-fold means "
            "over draws in few-shot regimes; p-values Holm-corrected over the pairs of a setting. "
            "Friedman tests over (task, backbone) blocks of mean values, with Nemenyi post-hoc "
            "p-values and the critical difference of mean ranks (Demšar 2006).",
            "note",
        )
    ]
    for st in stats:
        key = st.setting.key
        parts.append(H.heading(f"{st.setting.title}: Wilcoxon signed-rank"))
        rows = [
            [
                H.Cell(r.a),
                H.Cell(r.b),
                H.num(r.n_pairs, str(r.n_pairs)),
                H.num(r.wins_a, str(r.wins_a)),
                H.num(r.wins_b, str(r.wins_b)),
                H.num(r.ties, str(r.ties)),
                H.num(100 * r.median_diff, format_number(100 * r.median_diff, 1)),
                H.num(r.statistic, format_number(r.statistic, 1)),
                H.num(r.p, format_number(r.p, 4)),
                H.num(r.p_holm, format_number(r.p_holm, 4)),
                H.Cell("yes" if r.significant else "no", best=bool(r.significant)),
            ]
            for r in st.wilcoxon.itertuples(index=False)
        ]
        if rows:
            parts.append(H.table_html(f"wilcoxon-{key}", WILCOXON_HEADER, rows))
        else:
            parts.append(H.paragraph("No pair of strategies to compare.", "note"))
        parts.append(H.heading(f"{st.setting.title}: Friedman and Nemenyi"))
        f = st.friedman
        if f is None:
            parts.append(H.paragraph(f"Friedman test {st.friedman_note}.", "note"))
            continue
        parts.append(
            H.paragraph(
                f"Friedman χ² = {f.statistic:.3f}, p = {format_number(f.p, 4)} over {f.n_blocks} "
                f"blocks and {len(f.mean_ranks)} strategies; critical difference "
                f"CD = {f.cd:.3f} at α = {f.alpha:g}."
            )
        )
        names = list(f.mean_ranks.index)
        parts.append(
            H.table_html(
                f"nemenyi-{key}",
                ["strategy", "mean rank", *[f"p vs {n}" for n in names]],
                [
                    [
                        H.Cell(a),
                        H.num(f.mean_ranks[a], f"{f.mean_ranks[a]:.3f}"),
                        *[
                            H.num(f.nemenyi.loc[a, b], format_number(f.nemenyi.loc[a, b], 4))
                            for b in names
                        ],
                    ]
                    for a in names
                ],
                "Mean ranks (1 = best) and Nemenyi p-values.",
            )
        )
        fig = figs.get(f"extra-cd-{key}")
        if fig is not None:
            parts.append(H.figure_html(fig.name, fig.title, fig.caption, fig.png))
    return "".join(parts)


def _provenance_html(
    data: ReportData, run_versions: Sequence[dict[str, Any]] | None, cost: pd.DataFrame
) -> str:
    parts = [H.heading("Software that drew this report")]
    versions = report_versions()
    parts.append(
        H.table_html(
            "versions-report",
            ["library", "version"],
            [[H.Cell(k), H.Cell(v)] for k, v in versions.items()],
        )
    )
    parts.append(H.heading("Software the runs recorded"))
    if run_versions:
        names = sorted({k for entry in run_versions for k in entry["versions"]})
        rows = [
            [H.Cell(n), *[H.Cell(str(entry["versions"].get(n, "—"))) for entry in run_versions]]
            for n in names
        ]
        parts.append(
            H.table_html(
                "versions-runs",
                [
                    "library",
                    *[f"set {i + 1} ({e['runs']} runs)" for i, e in enumerate(run_versions)],
                ],
                rows,
                "Library versions from the runs' spec.json, one column per distinct set.",
            )
        )
    else:
        parts.append(
            H.paragraph("Not given (the report was built from a results table alone).", "note")
        )
    parts.append(H.heading("Weights"))
    wt = weights_table(data.runs)
    parts.append(
        H.table_html(
            "weights",
            list(wt.columns),
            [[H.Cell(str(v)) for v in row] for row in wt.itertuples(index=False)],
        )
    )
    parts.append(H.heading("Code (git SHA of the runs)"))
    gs = git_shas(data.runs)
    parts.append(
        H.table_html(
            "git",
            list(gs.columns),
            [[H.Cell(str(v)) for v in row] for row in gs.itertuples(index=False)],
        )
    )
    parts.append(H.heading("Cost"))
    if not cost.empty:
        parts.append(
            H.table_html(
                "cost",
                list(cost.columns),
                [
                    [
                        H.Cell(str(v)) if isinstance(v, str) else H.num(v, format_number(v))
                        for v in row
                    ]
                    for row in cost.itertuples(index=False)
                ],
                "Hours summed over runs; memory is the largest peak of any run.",
            )
        )
    parts.append(H.heading("Runs"))
    runs = data.runs
    header = list(runs.columns)
    rows = [
        [
            H.num(v, format_number(v))
            if isinstance(v, float | int) and not isinstance(v, bool)
            else H.Cell("—" if v is pd.NA or v is None else str(v))
            for v in row
        ]
        for row in runs.itertuples(index=False)
    ]
    parts.append(
        H.table_html(
            "runs", header, rows, "One row per run: spec, cost (metrics.json) and provenance."
        )
    )
    return "".join(parts)


def _intro(data: ReportData, results: pd.DataFrame) -> str:
    runs = data.runs
    full = int((runs["regime"] == "full").sum()) if "regime" in runs else 0
    rules = sorted(
        {str(r) for r in results.get("threshold_rule", pd.Series(dtype=str)).dropna().unique()}
    )
    text = (
        f"{data.label} on the test split. {len(runs)} runs ({full} full-data, "
        f"{len(runs) - full} few-shot) of {len(data.tasks)} task(s), {len(data.models)} "
        f"backbone(s) and {len(data.strategies)} strategies. Threshold rule(s): "
        f"{', '.join(rules) or 'unknown'}. Definitions: docs/METHODOLOGY.md, sections 6 and 7."
    )
    return H.paragraph(text)


# ------------------------------------------------------------------------------------ files


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file", "Give a folder for the report.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise ConfigError(
            f"--out {out_dir} is not empty and holds no progbench report ({MANIFEST} is missing)",
            "Give an empty or new folder, or the folder of an earlier report to update it.",
        )


def _publish(out_dir: Path, files: dict[str, bytes]) -> list[Path]:
    """Write every file atomically, drop files of the previous build that this one lacks, then
    write the manifest last."""
    old: dict[str, str] = {}
    manifest = out_dir / MANIFEST
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
        except (OSError, ValueError):
            old = {}
    written = []
    for rel in sorted(files):
        path = out_dir / rel
        atomic_write_bytes(path, files[rel])
        written.append(path)
    for rel in sorted(set(old) - set(files)):
        stale = out_dir / rel
        # Only names this module writes, never a path that leaves the folder.
        if ".." not in Path(rel).parts and stale.is_file():
            stale.unlink()
            if stale.parent != out_dir and not any(stale.parent.iterdir()):
                stale.parent.rmdir()
    digests = {rel: hashlib.sha256(files[rel]).hexdigest() for rel in sorted(files)}
    atomic_write_bytes(
        manifest, (json.dumps({"files": digests}, indent=2, sort_keys=True) + "\n").encode()
    )
    return written


def build_report(
    results: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    metric: str = "mcc",
    run_versions: Sequence[dict[str, Any]] | None = None,
    alpha: float = DEFAULT_ALPHA,
    progress: ProgressFn | None = None,
) -> ReportResult:
    """Write the report of `results` (the table of `progbench evaluate`) for `metric` into
    `out_dir`. `run_versions` (from `collect_run_versions`) adds the runs' library versions."""
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    data = prepare(results, metric)
    notes: list[str] = []
    steps = 4

    def tick(i: int) -> None:
        if progress:
            progress(i, steps)

    files: dict[str, bytes] = {}
    tables = [summary_table(data, s) for s in data.settings]
    all_md = [f"# Results: {data.label}\n"]
    for t in tables:
        md = to_markdown(t, data)
        files[f"tables/{t.setting.key}.md"] = md.encode()
        files[f"tables/{t.setting.key}.csv"] = to_csv(t).encode()
        all_md.append(md)
    files["tables.md"] = "\n".join(all_md).encode()
    tick(1)

    stats = [setting_stats(data, s, alpha) for s in data.settings]
    for st in stats:
        key = st.setting.key
        files[f"stats/wilcoxon-{key}.md"] = wilcoxon_markdown(st, data).encode()
        files[f"stats/wilcoxon-{key}.csv"] = _csv(st.wilcoxon)
        files[f"stats/friedman-{key}.md"] = friedman_markdown(st, data).encode()
        if st.friedman is not None:
            nemenyi = st.friedman.nemenyi.reset_index(names="strategy")
            files[f"stats/nemenyi-{key}.csv"] = _csv(nemenyi)
        else:
            notes.append(f"{st.setting.title}: Friedman test {st.friedman_note}")
    files["stats/summary.json"] = stats_json(stats).encode()
    tick(2)

    figures = _figures(data, stats, notes)
    for fig in figures:
        files[f"figures/{fig.name}.png"] = fig.png
        files[f"figures/{fig.name}.svg"] = fig.svg
    tick(3)

    cost = cost_by_group(data.runs)
    files["provenance/runs.csv"] = _csv(data.runs)
    files["provenance/cost.csv"] = _csv(cost)
    by_name = {f.name: f for f in figures}
    plain = [f for f in figures if not f.name.startswith("extra-cd-")]
    html = H.page(
        f"progbench report: {data.label}",
        _intro(data, results),
        [
            ("tables", "Results", _results_html(data, tables)),
            (
                "figures",
                "Figures",
                "".join(H.figure_html(f.name, f.title, f.caption, f.png) for f in plain),
            ),
            ("statistics", "Statistics", _stats_html(data, stats, by_name)),
            ("provenance", "Provenance", _provenance_html(data, run_versions, cost)),
        ],
    )
    files[REPORT_HTML] = html.encode()
    written = _publish(out_dir, files)
    tick(4)
    return ReportResult(out_dir=out_dir, html=out_dir / REPORT_HTML, files=written, notes=notes)


__all__ = ["MANIFEST", "REPORT_HTML", "ReportResult", "Setting", "build_report"]
