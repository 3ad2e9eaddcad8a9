"""The content of report.html as a view model (progbench.report.html): one part per metric for
the results, per-centre tables, figures and statistics (the page shows one metric at a time),
and the provenance, shared by all metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from progbench.evaluate.results import RANDOM_WEIGHTS
from progbench.report import html as H
from progbench.report.centres import CentreTable, centre_caption, centre_rows
from progbench.report.data import ReportData
from progbench.report.figureset import CD_PREFIX, ReportFigure
from progbench.report.page_provenance import provenance_blocks
from progbench.report.significance import WILCOXON_HEADER, SettingStats, friedman_sentence
from progbench.report.tables import (
    DEGENERATE_MARK,
    SummaryTable,
    caption,
    fold_count_note,
    format_number,
    table_strategies,
    wide_rows,
)


@dataclass(frozen=True)
class MetricReport:
    """Everything the report holds for one metric."""

    data: ReportData
    tables: list[SummaryTable]
    centres: list[CentreTable]
    stats: list[SettingStats]
    figures: list[ReportFigure]

    @property
    def metric(self) -> str:
        return self.data.metric


def results_blocks(m: MetricReport) -> list[H.Block]:
    data = m.data
    out: list[H.Block] = []
    for t in m.tables:
        strategies = table_strategies(t, data.strategies)
        rows = [
            [
                H.Cell(task),
                H.Cell(model),
                H.Cell(data.families.get(model, "unknown")),
                *[
                    H.Cell(c.text, sort=c.mean, numeric=True, best=c.best, note=c.note)
                    for c in cells
                ],
            ]
            for task, model, cells in wide_rows(t, strategies)
        ]
        out.append(H.Heading(f"{t.setting.title} ({data.label})"))
        out.append(
            H.Table(
                f"{m.metric}-table-{t.setting.key}",
                ["task", "backbone", "family", *strategies],
                rows,
                caption(data, t.setting),
            )
        )
        folds = fold_count_note(t)
        if folds:
            out.append(H.Paragraph(folds, note=True))
    return out


def centre_blocks(m: MetricReport) -> list[H.Block]:
    out: list[H.Block] = []
    for t in m.centres:
        rows = [
            [
                H.Cell(r.task),
                H.Cell(r.model),
                H.Cell(r.strategy),
                *[H.Cell(text, sort=v, numeric=True, best=b) for text, v, b in r.cells],
            ]
            for r in centre_rows(t)
        ]
        out.append(H.Heading(f"{t.setting.title}: per test centre ({m.data.label})"))
        out.append(
            H.Table(
                f"{m.metric}-centres-{t.setting.key}",
                ["task", "backbone", "strategy", *t.centres],
                rows,
                centre_caption(m.data, t.setting),
            )
        )
    return out


def _figure(m: MetricReport, fig: ReportFigure) -> H.Figure:
    return H.Figure(
        f"fig-{m.metric}-{fig.name}",
        fig.name,
        fig.title,
        fig.caption,
        fig.png,
        f"{m.metric}/figures",
    )


def figure_blocks(m: MetricReport) -> list[H.Block]:
    return [_figure(m, f) for f in m.figures if not f.name.startswith(CD_PREFIX)]


def _wilcoxon_table(m: MetricReport, st: SettingStats) -> H.Table:
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
    return H.Table(f"{m.metric}-wilcoxon-{st.setting.key}", WILCOXON_HEADER, rows)


def _nemenyi_table(m: MetricReport, st: SettingStats) -> H.Table:
    f = st.friedman
    assert f is not None
    names = list(f.mean_ranks.index)
    rows = [
        [
            H.Cell(a),
            H.num(f.mean_ranks[a], f"{f.mean_ranks[a]:.3f}"),
            *[H.num(f.nemenyi.loc[a, b], format_number(f.nemenyi.loc[a, b], 4)) for b in names],
        ]
        for a in names
    ]
    return H.Table(
        f"{m.metric}-nemenyi-{st.setting.key}",
        ["strategy", "mean rank", *[f"p vs {n}" for n in names]],
        rows,
        "Mean ranks (1 = best) and Nemenyi p-values.",
    )


STATS_NOTE = (
    "Wilcoxon signed-rank tests (two-sided) between every pair of strategies, paired on matched "
    "(task, scheme, backbone, fold): per-fold values in the full regime, per-fold means over "
    "draws in few-shot regimes; p-values Holm-corrected over the pairs of a setting. Friedman "
    "tests over (task, scheme, backbone) blocks of mean values, with Nemenyi post-hoc p-values "
    "and the critical difference of mean ranks (Demšar 2006). With fewer than 10 blocks the "
    "Friedman p is the exact permutation p-value (Monte Carlo when the arrangements are too "
    "many), not the chi-square approximation; each test says which p it used."
)


def stats_blocks(m: MetricReport) -> list[H.Block]:
    out: list[H.Block] = [H.Paragraph(STATS_NOTE, note=True)]
    figures = {f.name: f for f in m.figures}
    label = m.data.label
    for st in m.stats:
        out.append(H.Heading(f"{st.setting.title}: Wilcoxon signed-rank ({label})"))
        if len(st.wilcoxon):
            out.append(_wilcoxon_table(m, st))
        else:
            out.append(H.Paragraph("No pair of strategies to compare.", note=True))
        out.append(H.Heading(f"{st.setting.title}: Friedman and Nemenyi ({label})"))
        if st.friedman is None:
            out.append(H.Paragraph(f"Friedman test {st.friedman_note}.", note=True))
            continue
        out.append(H.Paragraph(friedman_sentence(st.friedman)))
        out.append(_nemenyi_table(m, st))
        fig = figures.get(f"{CD_PREFIX}{st.setting.key}")
        if fig is not None:
            out.append(_figure(m, fig))
    return out


def flag_paragraphs(data: ReportData) -> list[H.Paragraph]:
    """Warnings the reader needs before the first table: backbones run with random weights, and
    runs that predicted one class for every test image (degenerate classifiers)."""
    out = []
    runs = data.runs
    if "weights" in runs:
        random = runs[runs["weights"] == RANDOM_WEIGHTS]
        if len(random):
            names = ", ".join(sorted(set(random["backbone"])))
            out.append(
                H.Paragraph(
                    f"Random weights: {len(random)} of {len(runs)} runs ({names}) used a seeded "
                    "random initialisation (--weights random), not pretrained weights. Their "
                    "results measure an untrained backbone and say nothing about the pretrained "
                    "one.",
                    warning=True,
                )
            )
    groups = data.groups
    degenerate = groups[groups["n_degenerate"] > 0]
    if len(degenerate):
        out.append(
            H.Paragraph(
                f"Degenerate classifiers: {int(degenerate['n_degenerate'].sum())} run(s) in "
                f"{len(degenerate)} table cell(s) predicted one class for every test image at "
                f"the chosen threshold (MCC 0 by convention); such cells are marked "
                f"{DEGENERATE_MARK}.",
                warning=True,
            )
        )
    return out


def intro(reports: Sequence[MetricReport], results: pd.DataFrame) -> list[H.Paragraph]:
    data = reports[0].data
    runs = data.runs
    full = int((runs["regime"] == "full").sum()) if "regime" in runs else 0
    rules = sorted(
        {str(r) for r in results.get("threshold_rule", pd.Series(dtype=str)).dropna().unique()}
    )
    schemes = sorted(set(data.groups["scheme"]))
    names = [r.data.label for r in reports]
    labels = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    text = (
        f"{labels} on the test split. {len(runs)} runs ({full} full-data, "
        f"{len(runs) - full} few-shot) of {len(set(data.groups['task']))} task(s) under split "
        f"scheme(s) {', '.join(schemes)}, {len(data.models)} backbone(s) and "
        f"{len(data.strategies)} strategies. Threshold rule(s): {', '.join(rules) or 'unknown'}. "
        "Definitions: docs/METHODOLOGY.md, sections 6 and 7."
    )
    out = [H.Paragraph(text), *flag_paragraphs(data)]
    if len(data.tasks) > len(set(data.groups["task"])):
        out.append(
            H.Paragraph(
                'A task evaluated under several split schemes appears as "task (scheme)": its '
                "schemes are never averaged or paired together.",
                note=True,
            )
        )
    return out


def build_page(
    reports: Sequence[MetricReport],
    results: pd.DataFrame,
    run_versions: Sequence[dict[str, Any]] | None,
    cost: pd.DataFrame,
) -> H.Page:
    def per_metric(make: Any) -> dict[str, Sequence[H.Block]]:
        return {r.metric: make(r) for r in reports}

    sections = [H.Section("tables", "Results", per_metric=per_metric(results_blocks))]
    if any(r.centres for r in reports):
        sections.append(
            H.Section("centres", "Per test centre", per_metric=per_metric(centre_blocks))
        )
    sections += [
        H.Section("figures", "Figures", per_metric=per_metric(figure_blocks)),
        H.Section("statistics", "Statistics", per_metric=per_metric(stats_blocks)),
        H.Section(
            "provenance",
            "Provenance",
            shared=provenance_blocks(reports[0].data.runs, run_versions, cost),
        ),
    ]
    labels = [(r.metric, r.data.label) for r in reports]
    return H.Page(
        title=f"progbench report: {', '.join(label for _, label in labels)}",
        intro=intro(reports, results),
        metrics=labels,
        sections=sections,
    )
