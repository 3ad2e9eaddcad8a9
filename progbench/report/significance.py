"""Significance tests of a report, per setting (full data, each few-shot k).

- Wilcoxon signed-rank between every pair of strategies, paired on matched (task, scheme,
  backbone, fold): per-fold values in the full regime, per-fold means over draws in few-shot
  regimes; Holm correction over all the pairs of the setting.
- Friedman over blocks = (task, scheme, backbone) triples, one value per strategy (the mean over
  folds), then Nemenyi and the critical difference; blocks missing a strategy are left out.
  With fewer than 10 blocks the Friedman p is the exact (or Monte Carlo) permutation p-value,
  and the text says which p was used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from progbench.evaluate.stats import (
    DEFAULT_ALPHA,
    EXACT_BELOW_BLOCKS,
    FriedmanResult,
    friedman_nemenyi,
    pairwise_wilcoxon,
)
from progbench.report.data import ReportData, Setting
from progbench.report.tables import format_number, markdown_table


@dataclass(frozen=True)
class SettingStats:
    setting: Setting
    wilcoxon: pd.DataFrame  # progbench.evaluate.stats.WILCOXON_COLUMNS
    friedman: FriedmanResult | None
    friedman_note: str | None  # why Friedman was not run
    alpha: float


WILCOXON_BLOCKS = ["task", "scheme", "model", "fold"]


def friedman_matrix(data: ReportData, setting: Setting) -> pd.DataFrame:
    """Rows (task, scheme, backbone) blocks, columns strategies, values the mean over folds."""
    g = data.groups_in(setting)
    # One row per group (prepare refuses duplicates), so pivot raises rather than merges.
    wide = g.pivot(index=["task_label", "model"], columns="strategy", values="mean")
    wide = wide[[s for s in data.strategies if s in wide.columns]]
    wide.index = [f"{t} / {m}" for t, m in wide.index]
    return wide


def setting_stats(data: ReportData, setting: Setting, alpha: float = DEFAULT_ALPHA) -> SettingStats:
    folds = data.folds_in(setting)
    wilcoxon = pairwise_wilcoxon(folds, blocks=WILCOXON_BLOCKS, order=data.strategies, alpha=alpha)
    matrix = friedman_matrix(data, setting)
    complete = matrix.dropna(axis=0, how="any")
    result, note = None, None
    if matrix.shape[1] < 3:
        n = matrix.shape[1]
        compared = {
            0: "nothing to compare",
            1: "nothing to compare it with",
            2: "the Wilcoxon test compares the two",
        }[n]
        note = (
            f"not run: it needs at least 3 strategies, this setting has {n} "
            f"{'strategy' if n == 1 else 'strategies'} ({compared})"
        )
    elif len(complete) < 2:
        note = (
            f"not run: it needs at least 2 (task, backbone) blocks with every strategy, "
            f"this setting has {len(complete)}"
        )
    else:
        result = friedman_nemenyi(matrix, data.higher_is_better, alpha)
    return SettingStats(setting, wilcoxon, result, note, alpha)


WILCOXON_HEADER = [
    "a",
    "b",
    "pairs",
    "a wins",
    "b wins",
    "ties",
    "median a − b ×100",
    "W",
    "p",
    "p (Holm)",
    "significant",
]


def wilcoxon_markdown(st: SettingStats, data: ReportData) -> str:
    header = WILCOXON_HEADER
    rows = [
        [
            r.a,
            r.b,
            str(r.n_pairs),
            str(r.wins_a),
            str(r.wins_b),
            str(r.ties),
            format_number(100 * r.median_diff, 1) if r.n_pairs else "—",
            format_number(r.statistic, 1),
            format_number(r.p, 4),
            format_number(r.p_holm, 4),
            "yes" if r.significant else "no",
        ]
        for r in st.wilcoxon.itertuples(index=False)
    ]
    intro = (
        f"### {st.setting.title}: Wilcoxon signed-rank tests ({data.label})\n\n"
        f"Two-sided, paired on matched (task, scheme, backbone, fold); Holm-corrected over the "
        f"{len(rows)} pairs; significant at α = {st.alpha:g}.\n\n"
    )
    if not rows:
        return intro + "No pair of strategies to compare.\n"
    return intro + markdown_table(header, rows, [False, False, *[True] * 9])


def friedman_sentence(f: FriedmanResult) -> str:
    """The omnibus result in words: χ², the p used (and how it was obtained), the verdict."""
    p_text = f"p = {format_number(f.p, 4)} ({f.describe_p()}"
    if f.p_method != "chi-square":
        p_text += f", used with fewer than {EXACT_BELOW_BLOCKS} blocks; "
        p_text += f"chi-square approximation p = {format_number(f.p_chi2, 4)}"
    p_text += ")"
    verdict = (
        f"significant at α = {f.alpha:g}"
        if f.significant
        else f"not significant at α = {f.alpha:g}: the Nemenyi comparisons below are descriptive"
    )
    return (
        f"Friedman χ² = {f.statistic:.3f}, {p_text} over {f.n_blocks} (task, backbone) blocks "
        f"and {len(f.mean_ranks)} strategies: {verdict}. Mean ranks (1 = best) and Nemenyi "
        f"critical difference CD = {f.cd:.3f} at α = {f.alpha:g}."
    )


def friedman_markdown(st: SettingStats, data: ReportData) -> str:
    title = f"### {st.setting.title}: Friedman test and Nemenyi post-hoc ({data.label})\n\n"
    f = st.friedman
    if f is None:
        return title + f"Friedman test {st.friedman_note}.\n"
    lines = [title, friedman_sentence(f) + "\n\n"]
    lines.append(
        markdown_table(
            ["strategy", "mean rank"],
            [[s, f"{r:.3f}"] for s, r in f.mean_ranks.items()],
            [False, True],
        )
    )
    names = list(f.mean_ranks.index)
    lines.append("\nNemenyi p-values:\n\n")
    lines.append(
        markdown_table(
            ["", *names],
            [[a, *[format_number(f.nemenyi.loc[a, b], 4) for b in names]] for a in names],
            [False, *[True] * len(names)],
        )
    )
    return "".join(lines)


def stats_summary(stats: list[SettingStats]) -> dict[str, Any]:
    """JSON-ready summary of every setting's tests (NaN as null)."""

    def clean(x: Any) -> Any:
        return None if isinstance(x, float) and x != x else x

    out: dict[str, Any] = {}
    for st in stats:
        entry: dict[str, Any] = {
            "wilcoxon": [
                {k: clean(v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                for row in st.wilcoxon.to_dict(orient="records")
            ],
            "friedman": None,
            "friedman_note": st.friedman_note,
            "alpha": st.alpha,
        }
        f = st.friedman
        if f is not None:
            entry["friedman"] = {
                "statistic": clean(f.statistic),
                "p": clean(f.p),
                "p_method": f.p_method,
                "p_chi2": clean(f.p_chi2),
                "n_permutations": f.n_permutations,
                "significant": f.significant,
                "n_blocks": f.n_blocks,
                "blocks": f.blocks,
                "mean_ranks": {k: float(v) for k, v in f.mean_ranks.items()},
                "critical_difference": f.cd,
                "nemenyi": {
                    a: {b: float(f.nemenyi.loc[a, b]) for b in f.nemenyi.columns}
                    for a in f.nemenyi.index
                },
            }
        out[st.setting.key] = entry
    return out


def stats_json(stats: list[SettingStats]) -> str:
    return json.dumps(stats_summary(stats), indent=2, sort_keys=True, allow_nan=False) + "\n"
