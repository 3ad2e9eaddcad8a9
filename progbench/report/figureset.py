"""The figures of one metric's report: which to draw, their titles and captions, and their PNG
and SVG bytes (progbench.report.figures draws them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from matplotlib.figure import Figure

from progbench.report import figures as F
from progbench.report.data import ReportData
from progbench.report.significance import SettingStats

CD_PREFIX = "extra-cd-"


@dataclass(frozen=True)
class ReportFigure:
    name: str
    title: str
    caption: str
    png: bytes
    svg: bytes


@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    caption: str
    make: Callable[[], Figure | None]


def _study_specs(data: ReportData) -> list[FigureSpec]:
    label = data.label
    return [
        FigureSpec(
            "rq1-strategies-boxplot",
            f"{label} per strategy",
            f"Per-fold {label} of every backbone, one box per strategy and panel per task "
            "(full data).",
            lambda: F.boxplot_figure(data),
        ),
        FigureSpec(
            "rq1-cnn-vs-fm",
            f"{label}: CNN against foundation models",
            f"Mean {label} over folds of each backbone, CNN and foundation-model (FM) backbones "
            "side by side per strategy (full data); `unknown` = not in the backbone registry.",
            lambda: F.cnn_vs_fm_figure(data),
        ),
        FigureSpec(
            "rq2-efficiency",
            f"{label} against % trainable parameters",
            f"Mean {label} over folds against the share of trainable parameters (log scale); "
            "colour = strategy, marker = backbone (full data).",
            lambda: F.efficiency_figure(data),
        ),
        FigureSpec(
            "appendix-ci",
            f"{label} with its 95% confidence interval",
            f"{label} of all folds' test predictions pooled, per backbone and strategy, with its "
            "95% percentile CI from a bootstrap that resamples patients (full data; a point "
            "without bars: no bootstrap was drawn).",
            lambda: F.ci_figure(data),
        ),
    ]


def _fewshot_specs(data: ReportData) -> list[FigureSpec]:
    return [
        FigureSpec(
            f"rq3-{regime}",
            f"{data.label} against k ({regime})",
            f"Mean {data.label} over folds against k, images per class; bands = ± the std over "
            "few-shot draws (mean over folds of the within-fold std).",
            partial(F.fewshot_figure, data, regime),
        )
        for regime in sorted({s.regime for s in data.settings if s.is_fewshot})
    ]


def _cd_specs(data: ReportData, stats: Sequence[SettingStats]) -> list[FigureSpec]:
    out = []
    for st in stats:
        f = st.friedman
        if f is None:
            continue
        title = f"Critical difference diagram, {st.setting.title} ({data.label})"
        verdict = "" if f.significant else " The Friedman test did not reject equal ranks."
        out.append(
            FigureSpec(
                f"{CD_PREFIX}{st.setting.key}",
                title,
                f"Mean rank of each strategy over {f.n_blocks} (task, backbone) blocks "
                f"(1 = best); bars join strategies the Nemenyi test does not separate at "
                f"α = {st.alpha:g}; CD = {f.cd:.2f}.{verdict}",
                partial(F.cd_figure, f, title),
            )
        )
    return out


def report_figures(
    data: ReportData, stats: Sequence[SettingStats], notes: list[str]
) -> list[ReportFigure]:
    """Every figure that has data, rendered; the others are named in `notes`."""
    specs = [*_study_specs(data), *_fewshot_specs(data), *_cd_specs(data, stats)]
    out = []
    for spec in specs:
        fig = spec.make()
        if fig is None:
            notes.append(f"{data.label}: figure {spec.name} left out: the table has no data for it")
            continue
        png, svg = F.render(fig)
        out.append(ReportFigure(spec.name, spec.title, spec.caption, png, svg))
    return out
