"""build_report on a fake run tree: files, table values, statistics, self-contained HTML,
byte-identical rebuilds (also in another process) and updates when runs are added. The report
holds the two primary metrics (MCC and PR-AUC), each under its own folder."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sstats

from progbench.errors import ConfigError, RunError
from progbench.evaluate.registry import PRIMARY_METRICS
from progbench.report import MANIFEST, REPORT_HTML, build_report
from progbench.report.data import prepare
from progbench.report.tables import summary_table
from tests.helpers.runtree import REPORT_TREE, built_report, evaluated_tree

# Module fixtures build cohorts, trees or reports: on one xdist worker, so built once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_report_build")]

FIGURES = (
    "rq1-strategies-boxplot",
    "rq1-cnn-vs-fm",
    "rq2-efficiency",
    "appendix-ci",
    "rq3-fewshot",
    "extra-cd-full",
)
METRICS = PRIMARY_METRICS  # mcc, pr_auc: the default
SETTINGS = ("full", "fewshot-k2", "fewshot-k8")


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return evaluated_tree()[1]


@pytest.fixture(scope="module")
def report() -> Path:
    return built_report()


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _run_values(results: pd.DataFrame, metric: str = "mcc") -> pd.DataFrame:
    """Per-run test values straight from the results table, independent of progbench.report."""
    r = results[(results["level"] == "run") & (results["split"] == "test")]
    r = r[r["metric"] == metric].copy()
    r["value"] = r["value"].astype(float)
    return r


def test_writes_every_file_with_a_manifest(report: Path) -> None:
    files = _files(report)
    expected = {REPORT_HTML, MANIFEST, "provenance/runs.csv", "provenance/cost.csv"}
    for m in METRICS:
        expected |= {f"{m}/tables.md", f"{m}/stats/summary.json", f"{m}/stats/nemenyi-full.csv"}
        for key in SETTINGS:
            expected |= {f"{m}/tables/{key}.md", f"{m}/tables/{key}.csv"}
            expected |= {f"{m}/stats/wilcoxon-{key}.md", f"{m}/stats/wilcoxon-{key}.csv"}
            expected.add(f"{m}/stats/friedman-{key}.md")
        for name in FIGURES:
            expected |= {f"{m}/figures/{name}.png", f"{m}/figures/{name}.svg"}
    # No LOCO run in this tree: no per-centre table.
    assert set(files) == expected
    manifest = json.loads(files[MANIFEST])["files"]
    assert set(manifest) == expected - {MANIFEST}
    for rel, digest in manifest.items():
        assert hashlib.sha256(files[rel]).hexdigest() == digest, rel
    for m in METRICS:
        for name in FIGURES:
            assert files[f"{m}/figures/{name}.png"].startswith(b"\x89PNG\r\n\x1a\n")
            svg = ET.fromstring(files[f"{m}/figures/{name}.svg"])
            assert svg.tag.endswith("svg")
            # No date, no version stamp: the bytes depend on the table alone.
            assert b"<dc:date>" not in files[f"{m}/figures/{name}.svg"]
            assert b"Matplotlib v" not in files[f"{m}/figures/{name}.svg"]
    # Each metric's files hold that metric: the PR-AUC table is not the MCC one.
    assert files["mcc/tables/full.csv"] != files["pr_auc/tables/full.csv"]
    assert "PR-AUC" in files["pr_auc/tables.md"].decode()


@pytest.mark.parametrize("metric", METRICS)
def test_full_data_table_is_mean_and_std_over_folds(
    report: Path, results: pd.DataFrame, metric: str
) -> None:
    runs = _run_values(results, metric)
    runs = runs[runs["regime"] == "full"]
    ref = runs.groupby(["task", "backbone", "strategy"])["value"].agg(["mean", "std", "count"])
    table = pd.read_csv(report / metric / "tables" / "full.csv", dtype={"pooled_cell": str})
    assert len(table) == len(ref) == 2 * 3 * 3
    assert set(table["scheme"]) == {"kfold"}
    pooled = results[(results["level"] == "pooled") & (results["regime"] == "full")]
    pooled = pooled[(pooled["metric"] == metric) & (pooled["split"] == "test")]
    pooled = pooled.set_index(["task", "backbone", "strategy"])["value"]
    for row in table.itertuples(index=False):
        mean, std, count = ref.loc[(row.task, row.backbone, row.strategy)]
        assert count == REPORT_TREE.folds
        assert row.mean == pytest.approx(mean) and row.std == pytest.approx(std)
        assert row.cell == f"{100 * mean:.1f} ± {100 * std:.1f}"
        # Beside it the pooled value (no bootstrap in this tree, so no CI).
        assert row.pooled == pytest.approx(pooled.loc[(row.task, row.backbone, row.strategy)])
        assert row.pooled_cell == f"{100 * row.pooled:.1f}" and np.isnan(row.ci_low)
    if metric != "mcc":
        return
    # The best cell of each task is the largest mean, bold in the Markdown table.
    md = (report / metric / "tables" / "full.md").read_text(encoding="utf-8")
    for task, part in table.groupby("task"):
        best = part.loc[part["mean"].idxmax()]
        assert list(part["best"]) == [m == best["mean"] for m in part["mean"]]
        line = next(x for x in md.splitlines() if x.startswith(f"| {task} | {best.backbone} |"))
        assert f"**{best.cell}** ({best.pooled_cell})" in line
        assert md.count(f"| {task} |") == 3  # one row per backbone
    assert table["family"].tolist().count("CNN") == 6  # resnet18 x 2 tasks x 3 strategies
    assert set(table["family"]) == {"CNN", "FM", "unknown"}


def test_fewshot_table_is_mean_over_folds_of_mean_over_draws(
    report: Path, results: pd.DataFrame
) -> None:
    runs = _run_values(results)
    runs = runs[(runs["regime"] == "fewshot") & (runs["shots"].astype(float) == 8)]
    per_fold = runs.groupby(["strategy", "fold"])["value"].mean()
    ref = per_fold.groupby("strategy").agg(["mean", "std"])
    table = pd.read_csv(report / "mcc" / "tables" / "fewshot-k8.csv").set_index("strategy")
    assert set(table.index) == {"lp", "lora-r8"}
    for strategy, (mean, std) in ref.iterrows():
        assert table.loc[strategy, "mean"] == pytest.approx(mean)
        assert table.loc[strategy, "std"] == pytest.approx(std)
        assert table.loc[strategy, "shots"] == 8


def test_wilcoxon_pairs_runs_on_task_backbone_fold(report: Path, results: pd.DataFrame) -> None:
    runs = _run_values(results)
    wide = runs[runs["regime"] == "full"].pivot_table(
        index=["task", "backbone", "fold"], columns="strategy", values="value"
    )
    table = pd.read_csv(report / "mcc" / "stats" / "wilcoxon-full.csv")
    assert len(table) == 3
    assert (table["n_pairs"] == 2 * 3 * REPORT_TREE.folds).all()
    for row in table.itertuples(index=False):
        ref = sstats.wilcoxon(wide[row.a], wide[row.b], zero_method="wilcox")
        assert row.p == pytest.approx(ref.pvalue)
        assert row.wins_a == int((wide[row.a] > wide[row.b]).sum())
    holm = np.minimum(1.0, np.maximum.accumulate(np.sort(table["p"]) * [3, 2, 1]))
    assert sorted(table["p_holm"]) == pytest.approx(list(holm))
    # The tree separates fft's classes best: it beats linear probing on matched folds.
    fft_lp = table[(table["a"].isin(["fft", "lp"])) & (table["b"].isin(["fft", "lp"]))].iloc[0]
    fft_wins = fft_lp.wins_a if fft_lp.a == "fft" else fft_lp.wins_b
    assert fft_wins >= 15 and bool(fft_lp.significant)


def test_friedman_ranks_strategies_over_task_backbone_blocks(
    report: Path, results: pd.DataFrame
) -> None:
    summary = json.loads((report / "mcc" / "stats" / "summary.json").read_text(encoding="utf-8"))
    assert set(summary) == set(SETTINGS)
    f = summary["full"]["friedman"]
    assert f["n_blocks"] == 6
    runs = _run_values(results)
    means = (
        runs[runs["regime"] == "full"]
        .groupby(["task", "backbone", "strategy"])["value"]
        .mean()
        .unstack("strategy")
    )
    ranks = pd.DataFrame(sstats.rankdata(-means.to_numpy(), axis=1), columns=means.columns).mean()
    assert f["mean_ranks"] == pytest.approx(ranks.to_dict())
    assert f["p_chi2"] == pytest.approx(sstats.friedmanchisquare(*means.to_numpy().T).pvalue)
    # 6 blocks (< 10): the p used is the exact permutation p over (3!)^6 arrangements.
    assert f["p_method"] == "exact" and f["n_permutations"] == 6**6
    assert f["significant"] == (f["p"] < 0.05)
    md = (report / "mcc" / "stats" / "friedman-full.md").read_text(encoding="utf-8")
    assert "exact permutation p over all 46,656 arrangements" in md
    assert min(f["mean_ranks"], key=f["mean_ranks"].get) == "fft"
    # Two strategies per few-shot setting: no Friedman test, and the reason is recorded.
    assert summary["fewshot-k2"]["friedman"] is None
    assert "at least 3 strategies" in summary["fewshot-k2"]["friedman_note"]
    assert len(summary["fewshot-k2"]["wilcoxon"]) == 1


def test_html_is_self_contained(report: Path, results: pd.DataFrame) -> None:
    html = (report / REPORT_HTML).read_text(encoding="utf-8")
    # Nothing is fetched: no remote address, every image is inline.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert '<link rel="stylesheet"' not in html and "<script src" not in html
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == len(re.findall(r"<img ", html)) == len(FIGURES) * len(METRICS)
    pngs = {(report / m / "figures" / f"{n}.png").read_bytes() for n in FIGURES for m in METRICS}
    assert {base64.b64decode(x) for x in images} == pngs
    ids = ["runs"]
    for m in METRICS:
        ids += [f"{m}-table-full", f"{m}-table-fewshot-k2", f"{m}-wilcoxon-full"]
        ids.append(f"{m}-nemenyi-full")
    for table_id in ids:
        assert f'<table class="sortable" id="{table_id}">' in html
    # One metric at a time: a switch, and every metric's view but the first hidden.
    assert '<input type="radio" name="metric" value="mcc" checked>' in html
    assert '<input type="radio" name="metric" value="pr_auc">' in html
    # Results, figures and statistics (no LOCO run here: no per-centre section).
    assert html.count('<div class="metric-view" data-metric="mcc">') == 3
    assert html.count('<div class="metric-view" data-metric="pr_auc" hidden>') == 3
    assert 'id="centres"' not in html
    # Provenance: versions, weights, git SHA, and the cost per run and in total.
    sha = results["git_sha"].dropna().iloc[0]
    assert sha in html and ">random<" in html
    assert 'id="versions-report"' in html and 'id="cost"' in html
    assert html.count("<tr>") > 78  # the runs table alone has one row per run
    cost = pd.read_csv(report / "provenance" / "cost.csv")
    assert "scheme" in cost.columns
    total = cost[cost["backbone"] == "total"].iloc[0]
    run_rows = results[(results["level"] == "run") & (results["split"] == "test")]
    run_rows = run_rows.drop_duplicates("run_dir")
    assert total["runs"] == len(run_rows) == 78
    assert total["wall_time_h"] == pytest.approx(run_rows["wall_time_s"].astype(float).sum() / 3600)


@pytest.mark.slow
def test_rebuild_in_another_process_is_byte_identical(report: Path, tmp_path: Path) -> None:
    """The CLI, given the results table as a file, in a process with another hash seed."""
    table = tmp_path / "results.parquet"
    evaluated_tree()[1].to_parquet(table)
    out = tmp_path / "again"
    env = dict(os.environ, PYTHONHASHSEED="12345", COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "progbench.cli", "report", str(table), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"report: {out / REPORT_HTML}" in proc.stdout
    assert _files(out) == _files(report)


@pytest.mark.slow
def test_adding_and_removing_runs_updates_the_report(
    report: Path, results: pd.DataFrame, tmp_path: Path
) -> None:
    # Full-data runs of one task and two backbones (small, so it draws quickly).
    fewer = results[
        (results["task"] == "death")
        & (results["backbone"] != "fake-net")
        & (results["regime"] == "full")
    ]
    out = tmp_path / "report"
    shutil.copytree(report, out)
    (out / "notes.txt").write_text("mine", encoding="utf-8")  # not the report's: kept
    build_report(fewer, out, metrics="mcc")
    files = _files(out)
    assert not any("fewshot" in name for name in files)  # the previous build's files are gone
    assert "mcc/figures/rq3-fewshot.png" not in files
    assert not (out / "pr_auc").exists()  # and so are the folders they leave empty
    assert set(json.loads(files[MANIFEST])["files"]) == set(files) - {MANIFEST, "notes.txt"}
    assert "fake-net" not in files["mcc/tables/full.md"].decode()
    assert "severity" not in files["mcc/tables/full.md"].decode()
    # Adding the runs back gives the report of the whole table, byte for byte.
    build_report(results, out)
    files = _files(out)
    assert files.pop("notes.txt") == b"mine"
    assert files == _files(report)


def test_refuses_a_folder_that_holds_something_else(results: pd.DataFrame, tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigError, match="not empty"):
        build_report(results, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]


def test_rejects_unknown_metric_and_foreign_tables(results: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown metric 'accuracy'"):
        build_report(results, tmp_path / "a", metrics=["mcc", "accuracy"])
    with pytest.raises(RunError, match="lacks column"):
        build_report(results.drop(columns=["level"]), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_lower_is_better_metric_bolds_the_smallest(results: pd.DataFrame) -> None:
    data = prepare(results, "brier")
    assert not data.higher_is_better and data.label == "Brier score"
    long = summary_table(data, data.settings[0]).long
    for _, part in long.groupby("task"):
        assert list(part["best"]) == [m == part["mean"].min() for m in part["mean"]]


def test_backbones_with_several_weights_are_kept_apart(results: pd.DataFrame) -> None:
    other = results[results["backbone"] == "resnet18"].assign(weights="imagenet")
    data = prepare(pd.concat([results, other]), "mcc")
    assert {"resnet18 (random)", "resnet18 (imagenet)", "dinov2-s"} <= set(data.models)
    assert data.families["resnet18 (imagenet)"] == "CNN"
    folds = data.folds
    assert not folds.duplicated(["task", "model", "strategy", "regime", "shots", "fold"]).any()


def test_cd_diagram_axis_spans_the_ranks_shown() -> None:
    from progbench.evaluate.stats import friedman_nemenyi
    from progbench.report.figures import cd_figure

    # 5 blocks, 4 strategies; no strategy is always first or always last, so the mean ranks
    # stay inside (1, 4) and the axis must not run to 1 or to k.
    m = pd.DataFrame(
        [
            [0.9, 0.8, 0.7, 0.6],
            [0.7, 0.9, 0.6, 0.8],
            [0.8, 0.6, 0.9, 0.7],
            [0.6, 0.7, 0.8, 0.9],
            [0.9, 0.7, 0.8, 0.6],
        ],
        columns=["fft", "lp", "lora-r8", "bitfit"],
    )
    result = friedman_nemenyi(m)
    lo, hi = result.mean_ranks.min(), result.mean_ranks.max()
    assert 1 < lo < hi < 4
    ax = cd_figure(result, "t").axes[0]
    assert ax.spines["top"].get_bounds() == pytest.approx((lo, hi))
    ticks = ax.get_xticks()
    assert ticks[0] == pytest.approx(lo) and ticks[-1] == pytest.approx(hi)
    assert all(lo - 1e-9 <= t <= hi + 1e-9 for t in ticks)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == f"{lo:.2f}" and labels[-1] == f"{hi:.2f}"
