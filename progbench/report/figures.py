"""Report figures (matplotlib, no pyplot state), named after their place in the reference study.

Ruffini et al. organise their results around three research questions; the figure names say
which one a figure answers:

- `rq1-strategies-boxplot`: the metric per strategy, one panel per task (RQ1: which strategy);
- `rq1-cnn-vs-fm`: CNN against foundation-model backbones per strategy and task (RQ1);
- `rq2-efficiency`: the metric against % trainable parameters, log x (RQ2: the efficiency trade-off);
- `rq3-<regime>`: few-shot curves, the metric against k with the spread over draws (RQ3);
- `appendix-ci`: the pooled value with its 95% patient-bootstrap CI per model and strategy, one
  panel per task, forest-plot style (the study's appendix figure);
- `extra-cd-<setting>`: critical-difference diagrams, which the study did not publish.

A task with several split schemes has one panel per scheme, titled `task (scheme)`.

Every figure is drawn under matplotlib's default style with fixed settings and saved without
dates or version stamps, so the same table gives byte-identical PNG and SVG files.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.style
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from progbench.evaluate.stats import FriedmanResult
from progbench.report.data import ReportData, Setting

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

DPI = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "8", "d", "H")
FAMILY_COLORS = {"CNN": "#1f77b4", "FM": "#d62728", "unknown": "#7f7f7f"}
FAMILY_ORDER = ("CNN", "FM", "unknown")
_RC: dict[RcKeyType, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "progbench-report",  # stable element ids in SVG
    "svg.fonttype": "path",  # text as paths: renders the same without the fonts installed
    "path.simplify": True,
}


@contextmanager
def figure_style() -> Iterator[None]:
    """Matplotlib's defaults plus ours, whatever the caller's rcParams hold."""
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        yield


def render(fig: Figure) -> tuple[bytes, bytes]:
    """PNG and SVG bytes, free of timestamps and version stamps."""
    with figure_style():
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png", dpi=DPI, metadata={"Software": None})
        # The SVG keeps the layout the PNG computed (same size in inches): one layout pass less.
        fig.set_layout_engine("none")
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return png.getvalue(), svg.getvalue()


def strategy_colors(strategies: list[str]) -> dict[str, tuple[float, float, float, float]]:
    cmap = matplotlib.colormaps["tab10" if len(strategies) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(strategies)}


def model_markers(models: list[str]) -> dict[str, str]:
    return {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(models)}


def _panels(n: int, width: float = 4.0, height: float = 3.2) -> tuple[Figure, list]:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols + 1.8, height * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legends(fig: Figure, data: ReportData, strategies: list[str], models: list[str]) -> None:
    colors = strategy_colors(data.strategies)
    markers = model_markers(data.models)
    handles: list[Artist] = [Patch(color=colors[s], label=s) for s in strategies]
    handles += [
        Line2D([], [], color="0.3", marker=markers[m], linestyle="none", label=m) for m in models
    ]
    fig.legend(handles=handles, loc="outside right center", frameon=False)


def _ylabel(data: ReportData, what: str) -> str:
    return f"{data.label} ({what})"


FULL = Setting.of("full", None)


def _percent_log_axis(ax: Axes, percents: np.ndarray) -> None:
    """A log x axis over whole decades, labelled at powers of ten only (`0.01`, `1`, `100`),
    slanted: minor-tick labels and 10^k mathtext overlapped on a narrow panel."""
    ax.set_xscale("log")
    low = 10.0 ** math.floor(math.log10(float(np.min(percents))))
    high = 10.0 ** math.ceil(math.log10(float(np.max(percents))))
    ax.set_xlim(low / 1.5, (high if high > low else low * 10) * 1.5)
    decades = round(math.log10(high / low)) if high > low else 1
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=min(decades + 2, 7)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0), numticks=min(decades + 2, 7)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=30)


def efficiency_figure(data: ReportData) -> Figure | None:
    """Mean metric over folds against % trainable parameters (log x), one panel per task."""
    g = data.groups_in(FULL)
    g = g[(g["trainable_percent"] > 0) & g["mean"].notna()]
    if g.empty:
        return None
    with figure_style():
        tasks = [t for t in data.tasks if t in set(g["task_label"])]
        fig, axes = _panels(len(tasks))
        colors, markers = strategy_colors(data.strategies), model_markers(data.models)
        for ax, task in zip(axes, tasks, strict=True):
            part = g[g["task_label"] == task]
            for row in part.itertuples(index=False):
                ax.scatter(
                    row.trainable_percent,
                    row.mean,
                    color=colors[row.strategy],
                    marker=markers[row.model],
                    s=36,
                    edgecolors="black",
                    linewidths=0.4,
                    zorder=3,
                )
            _percent_log_axis(ax, part["trainable_percent"].to_numpy())
            ax.set_title(task)
            ax.set_xlabel("% trainable parameters (log scale)")
            ax.set_ylabel(_ylabel(data, "mean over folds"))
        present = set(g["strategy"])
        _legends(
            fig,
            data,
            [s for s in data.strategies if s in present],
            [m for m in data.models if m in set(g["model"])],
        )
        fig.suptitle(f"Efficiency: {data.label} against trainable parameters (full data)")
    return fig


def boxplot_figure(data: ReportData) -> Figure | None:
    """Per-fold values of every backbone, one box per strategy, one panel per task."""
    folds = data.folds_in(FULL).dropna(subset=["value"])
    if folds.empty:
        return None
    with figure_style():
        tasks = [t for t in data.tasks if t in set(folds["task_label"])]
        fig, axes = _panels(len(tasks))
        colors = strategy_colors(data.strategies)
        for ax, task in zip(axes, tasks, strict=True):
            part = folds[folds["task_label"] == task]
            names = [s for s in data.strategies if s in set(part["strategy"])]
            boxes = ax.boxplot(
                [part.loc[part["strategy"] == s, "value"].to_numpy() for s in names],
                tick_labels=names,
                patch_artist=True,
                medianprops={"color": "black"},
            )
            for patch, s in zip(boxes["boxes"], names, strict=True):
                patch.set_facecolor(colors[s])
                patch.set_alpha(0.8)
            ax.set_title(task)
            ax.set_ylabel(_ylabel(data, "per fold, all backbones"))
            ax.tick_params(axis="x", labelrotation=30)
        fig.suptitle(f"{data.label} per strategy (full data)")
    return fig


def cnn_vs_fm_figure(data: ReportData) -> Figure | None:
    """Mean over folds of each backbone, grouped by strategy, CNN against FM, one panel per task."""
    g = data.groups_in(FULL).dropna(subset=["mean"])
    if g.empty:
        return None
    g = g.assign(family=g["model"].map(data.families))
    families = [f for f in FAMILY_ORDER if f in set(g["family"])]
    width = 0.8 / len(families)
    with figure_style():
        tasks = [t for t in data.tasks if t in set(g["task_label"])]
        fig, axes = _panels(len(tasks))
        for ax, task in zip(axes, tasks, strict=True):
            part = g[g["task_label"] == task]
            names = [s for s in data.strategies if s in set(part["strategy"])]
            for j, fam in enumerate(families):
                offset = (j - (len(families) - 1) / 2) * width
                values = [
                    part.loc[(part["strategy"] == s) & (part["family"] == fam), "mean"].to_numpy()
                    for s in names
                ]
                keep = [i for i, v in enumerate(values) if len(v)]
                if not keep:
                    continue
                positions = [i + offset for i in keep]
                boxes = ax.boxplot(
                    [values[i] for i in keep],
                    positions=positions,
                    widths=width * 0.85,
                    patch_artist=True,
                    manage_ticks=False,
                    medianprops={"color": "black"},
                    showfliers=False,
                )
                for patch in boxes["boxes"]:
                    patch.set_facecolor(FAMILY_COLORS[fam])
                    patch.set_alpha(0.35)
                for i, pos in zip(keep, positions, strict=True):
                    ax.scatter(
                        np.full(len(values[i]), pos),
                        values[i],
                        color=FAMILY_COLORS[fam],
                        s=14,
                        zorder=3,
                    )
            ax.set_xticks(range(len(names)), names, rotation=30)
            ax.set_title(task)
            ax.set_ylabel(_ylabel(data, "mean over folds, per backbone"))
        fig.legend(
            handles=[Patch(color=FAMILY_COLORS[f], alpha=0.6, label=f) for f in families],
            loc="outside right center",
            frameon=False,
        )
        fig.suptitle(f"{data.label}: CNN against foundation-model backbones (full data)")
    return fig


def fewshot_figure(data: ReportData, regime: str) -> Figure | None:
    """Mean over folds against k (log2 x) per backbone and strategy, band = ± spread over draws."""
    g = data.groups[(data.groups["regime"] == regime)].dropna(subset=["mean"])
    if g.empty:
        return None
    with figure_style():
        tasks = [t for t in data.tasks if t in set(g["task_label"])]
        fig, axes = _panels(len(tasks))
        colors, markers = strategy_colors(data.strategies), model_markers(data.models)
        for ax, task in zip(axes, tasks, strict=True):
            part = g[g["task_label"] == task]
            for (model, strategy), line in part.groupby(["model", "strategy"], sort=True):
                line = line.sort_values("shots")
                k = line["shots"].to_numpy(dtype=float)
                y = line["mean"].to_numpy(dtype=float)
                spread = line["repeat_std"].fillna(0.0).to_numpy(dtype=float)
                ax.plot(k, y, color=colors[strategy], marker=markers[model], markersize=5)
                ax.fill_between(
                    k, y - spread, y + spread, color=colors[strategy], alpha=0.12, linewidth=0
                )
            shots = sorted(set(part["shots"]))
            ax.set_xscale("log", base=2)
            ax.set_xticks(shots, [str(s) for s in shots])
            ax.minorticks_off()
            ax.set_title(task)
            ax.set_xlabel("k (training images per class)")
            ax.set_ylabel(_ylabel(data, "mean over folds"))
        _legends(
            fig,
            data,
            [s for s in data.strategies if s in set(g["strategy"])],
            [m for m in data.models if m in set(g["model"])],
        )
        name = "centre-wise few-shot" if regime == "fewshot-center" else "few-shot"
        fig.suptitle(f"{data.label} against k, {name} (bands: ± std over draws)")
    return fig


def ci_figure(data: ReportData) -> Figure | None:
    """Forest plot: the pooled value with its 95% patient-bootstrap CI per model and strategy,
    one panel per task (full data). Groups without a CI (no bootstrap) show the point alone."""
    g = data.groups_in(FULL).dropna(subset=["pooled"])
    if g.empty:
        return None
    models = [m for m in data.models if m in set(g["model"])]
    strategies = [s for s in data.strategies if s in set(g["strategy"])]
    step = len(strategies) + 1  # a blank row between models
    with figure_style():
        tasks = [t for t in data.tasks if t in set(g["task_label"])]
        fig, axes = _panels(len(tasks), width=4.2, height=0.9 + 0.2 * step * len(models))
        colors = strategy_colors(data.strategies)
        for ax, task in zip(axes, tasks, strict=True):
            part = g[g["task_label"] == task].set_index(["model", "strategy"])
            for (i, m), (j, s) in itertools.product(enumerate(models), enumerate(strategies)):
                if (m, s) not in part.index:
                    continue
                row = part.loc[(m, s)]
                x, low, high = float(row["pooled"]), float(row["ci_low"]), float(row["ci_high"])
                # A percentile interval need not contain the point estimate (few replicates,
                # skewed metrics): draw the part of each arm that exists.
                xerr = (
                    None
                    if math.isnan(low) or math.isnan(high)
                    else [[max(0.0, x - low)], [max(0.0, high - x)]]
                )
                ax.errorbar(
                    x, i * step + j, xerr=xerr, fmt="o", color=colors[s], markersize=4, capsize=2
                )
            ax.set_yticks([i * step + (len(strategies) - 1) / 2 for i in range(len(models))])
            ax.set_yticklabels(models)
            ax.set_ylim(len(models) * step - 1, -1)  # first model on top
            ax.grid(False, axis="y")
            ax.set_title(task)
            ax.set_xlabel(f"{data.label}, pooled over folds (95% CI)")
        fig.legend(
            handles=[Patch(color=colors[s], label=s) for s in strategies],
            loc="outside right center",
            frameon=False,
        )
        fig.suptitle(f"{data.label} with its 95% patient-bootstrap CI (full data)")
    return fig


def _rank_axis(ax: Axes, ranks: np.ndarray) -> None:
    """The rank axis spans exactly the mean ranks shown: its line runs from the best to the worst
    rank, ticks at both ends and at round values between them."""
    lo, hi = float(ranks.min()), float(ranks.max())
    ax.spines["top"].set_bounds(lo, hi)
    inner = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    gap = 0.12 * (hi - lo)  # keep round ticks clear of the end labels
    ticks = [lo, *[t for t in inner if lo + gap < t < hi - gap], hi] if hi > lo else [lo]
    ax.set_xticks(ticks, [f"{t:.2f}" for t in ticks])


def cd_figure(result: FriedmanResult, title: str) -> Figure:
    """Critical-difference diagram (scikit-posthocs): mean ranks, bars join strategies that the
    Nemenyi test does not separate; the CD is drawn above the axis."""
    import scikit_posthocs as sp

    k = len(result.mean_ranks)
    with figure_style():
        fig = Figure(figsize=(6.4, 1.2 + 0.35 * k), layout="constrained")
        ax = fig.subplots()
        ax.grid(False)
        artists = sp.critical_difference_diagram(
            ranks=result.mean_ranks,
            sig_matrix=result.nemenyi,
            alpha=result.alpha,
            ax=ax,
            label_fmt_left="{label} ({rank:.2f})",
            label_fmt_right="({rank:.2f}) {label}",
        )
        # scikit-posthocs draws each crossbar through a Python set of names, whose order
        # changes with the hash seed; sorting the points keeps the SVG path identical.
        for bar in artists.get("crossbars", []):
            for line in bar if isinstance(bar, list) else [bar]:
                xs, ys = line.get_data()
                order = np.argsort(np.asarray(xs, dtype=float), kind="stable")
                line.set_data(np.asarray(xs)[order], np.asarray(ys)[order])
        _rank_axis(ax, result.mean_ranks.to_numpy(dtype=float))
        # The CD bar goes above the rank axis and its tick labels (scikit-posthocs would draw
        # it across them).
        best = float(result.mean_ranks.iloc[0])
        bottom = ax.get_ylim()[0]
        ax.plot([best, best + result.cd], [1.6, 1.6], color="black", linewidth=1.5)
        for x in (best, best + result.cd):
            ax.plot([x, x], [1.45, 1.75], color="black", linewidth=1.5)
        ax.text(best + result.cd / 2, 1.9, f"CD = {result.cd:.2f}", ha="center", va="bottom")
        ax.set_ylim(bottom, 2.8)
        ax.set_title(title)
    return fig
