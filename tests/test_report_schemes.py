"""A run tree as a study grows it: kfold and LOCO runs of one task side by side, full-data and
few-shot runs, two weights of one backbone. The report keeps every scheme, regime and weights
apart, gives pooled CIs beside the means, breaks LOCO results down per held-out centre and
never ends in a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sstats

from progbench.errors import ProgbenchError, RunError
from progbench.report import REPORT_HTML, build_report
from tests.helpers.runtree import TreeSpec, evaluated_tree

# Module fixtures build stores or full reports: slow, and on one xdist worker (built once).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_report_schemes")]

CENTRES = ("north", "south", "east")
TREE = TreeSpec(
    tasks=("death",),
    backbones=("resnet18",),
    strategies=("fft", "lp", "lora-r8"),
    folds=2,
    shots=(4,),
    repeats=2,
    fewshot_tasks=("death",),
    fewshot_backbones=("resnet18",),
    schemes=("kfold", "loco"),
    centers=CENTRES,
    weights={"resnet18": ("random", "imagenet")},
    n_test=16,
    n_val=6,
)
N_BOOT = 5  # enough for a CI; the values are checked against the results table, not a truth
MODELS = ("resnet18 (imagenet)", "resnet18 (random)")
TASKS = ("death (kfold)", "death (loco)")


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return evaluated_tree(TREE, n_boot=N_BOOT)[1]


@pytest.fixture(scope="module")
def report(results: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("schemes") / "report"
    build_report(results, out)
    return out


def _runs(results: pd.DataFrame, metric: str = "mcc") -> pd.DataFrame:
    r = results[(results["level"] == "run") & (results["split"] == "test")]
    r = r[r["metric"] == metric].copy()
    r["value"] = r["value"].astype(float)
    r["model"] = r["backbone"] + " (" + r["weights"] + ")"
    return r


def test_tree_holds_both_schemes_and_loco_runs_name_their_centre(results: pd.DataFrame) -> None:
    runs = _runs(results)
    assert set(runs["scheme"]) == {"kfold", "loco"}
    assert set(runs["weights"]) == {"random", "imagenet"}
    assert set(runs["regime"]) == {"full", "fewshot"}
    loco = runs[runs["scheme"] == "loco"]
    assert set(loco["test_center"]) == set(CENTRES)
    # Fold i of the LOCO split held out centre i; kfold and aggregate rows have no centre.
    assert all(CENTRES[f] == c for f, c in zip(loco["fold"], loco["test_center"], strict=True))
    assert runs.loc[runs["scheme"] == "kfold", "test_center"].isna().all()
    assert results.loc[results["level"] != "run", "test_center"].isna().all()
    assert loco["run_dir"].str.contains("death/loco/resnet18/", regex=False).all()


def test_tables_keep_schemes_and_weights_apart(report: Path, results: pd.DataFrame) -> None:
    runs = _runs(results)
    full = runs[runs["regime"] == "full"]
    ref = full.groupby(["scheme", "model", "strategy"])["value"].agg(["mean", "std", "count"])
    table = pd.read_csv(report / "mcc" / "tables" / "full.csv")
    assert len(table) == len(ref) == 2 * 2 * 3
    for row in table.itertuples(index=False):
        mean, std, count = ref.loc[(row.scheme, row.backbone, row.strategy)]
        assert count == (len(CENTRES) if row.scheme == "loco" else TREE.folds)
        assert row.mean == pytest.approx(mean) and row.std == pytest.approx(std)
    md = (report / "mcc" / "tables" / "full.md").read_text(encoding="utf-8")
    for task in TASKS:
        for model in MODELS:
            assert md.count(f"| {task} | {model} |") == 1
    # The best mean is bold once per (task, scheme), not once per task.
    assert sum("**" in line for line in md.splitlines() if line.startswith("| death")) >= 2


def test_pooled_values_and_cis_sit_beside_the_means(report: Path, results: pd.DataFrame) -> None:
    pooled = results[(results["level"] == "pooled") & (results["regime"] == "full")]
    pooled = pooled[(pooled["metric"] == "pr_auc") & (pooled["split"] == "test")]
    pooled = pooled.assign(model=pooled["backbone"] + " (" + pooled["weights"] + ")")
    ref = pooled.set_index(["scheme", "model", "strategy"])
    table = pd.read_csv(report / "pr_auc" / "tables" / "full.csv", dtype={"pooled_cell": str})
    md = (report / "pr_auc" / "tables" / "full.md").read_text(encoding="utf-8")
    for row in table.itertuples(index=False):
        want = ref.loc[(row.scheme, row.backbone, row.strategy)]
        assert (row.pooled, row.ci_low, row.ci_high) == pytest.approx(
            (want["value"], want["ci_low"], want["ci_high"])
        )
        assert row.ci_low <= row.pooled <= row.ci_high
        text = f"{100 * row.pooled:.1f} [{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]"
        assert row.pooled_cell == text and f"({text})" in md
    few = pd.read_csv(report / "pr_auc" / "tables" / "fewshot-k4.csv")
    assert few["ci_low"].notna().all()  # few-shot: the CI of the mean over draws (pooled-mean)


def test_per_centre_table_gives_each_held_out_centre(report: Path, results: pd.DataFrame) -> None:
    runs = _runs(results)
    loco = runs[runs["scheme"] == "loco"]
    full = pd.read_csv(report / "mcc" / "centres" / "full.csv")
    assert set(full["scheme"]) == {"loco"}  # kfold folds hold no centre out
    assert len(full) == 2 * 3 * len(CENTRES)
    ref = loco[loco["regime"] == "full"].set_index(["model", "strategy", "test_center"])["value"]
    for row in full.itertuples(index=False):
        assert row.value == pytest.approx(ref.loc[(row.backbone, row.strategy, row.test_center)])
    # Few-shot: the mean over the draws of the fold that held the centre out.
    few = pd.read_csv(report / "mcc" / "centres" / "fewshot-k4.csv")
    draws = loco[loco["regime"] == "fewshot"].groupby(["model", "strategy", "test_center"])
    means = draws["value"].mean()
    assert len(few) == len(means) == 2 * 2 * len(CENTRES)
    for row in few.itertuples(index=False):
        assert row.value == pytest.approx(means.loc[(row.backbone, row.strategy, row.test_center)])
    md = (report / "mcc" / "centres" / "full.md").read_text(encoding="utf-8")
    assert "| task | backbone | strategy | east | north | south |" in md
    html = (report / REPORT_HTML).read_text(encoding="utf-8")
    assert '<section id="centres">' in html and 'id="mcc-centres-full"' in html
    assert '<th scope="col">north</th>' in html


def test_tests_pair_and_block_within_a_scheme(report: Path, results: pd.DataFrame) -> None:
    runs = _runs(results)
    wide = runs[runs["regime"] == "full"].pivot_table(
        index=["scheme", "model", "fold"], columns="strategy", values="value"
    )
    wilcoxon = pd.read_csv(report / "mcc" / "stats" / "wilcoxon-full.csv")
    # 2 models x (2 kfold folds + 3 LOCO centres) matched units per pair of strategies.
    assert (wilcoxon["n_pairs"] == 2 * (TREE.folds + len(CENTRES))).all()
    for row in wilcoxon.itertuples(index=False):
        ref = sstats.wilcoxon(wide[row.a], wide[row.b], zero_method="wilcox")
        assert row.p == pytest.approx(ref.pvalue)
    summary = json.loads((report / "mcc" / "stats" / "summary.json").read_text(encoding="utf-8"))
    f = summary["full"]["friedman"]
    assert sorted(f["blocks"]) == sorted(f"{t} / {m}" for t in TASKS for m in MODELS)
    assert f["p_method"] == "exact" and f["n_permutations"] == 6**4
    few = summary["fewshot-k4"]["wilcoxon"]
    assert [r["n_pairs"] for r in few] == [2 * (TREE.folds + len(CENTRES))]


def test_figures_have_a_panel_per_task_and_scheme(report: Path) -> None:
    html = (report / REPORT_HTML).read_text(encoding="utf-8")
    for metric in ("mcc", "pr_auc"):
        for name in ("appendix-ci", "rq1-strategies-boxplot", "rq3-fewshot", "extra-cd-full"):
            assert (report / metric / "figures" / f"{name}.png").is_file()
            assert f'id="fig-{metric}-{name}"' in html
        svg = (report / metric / "figures" / "appendix-ci.svg").read_bytes()
        assert svg.startswith(b"<?xml")


def _duplicated(results: pd.DataFrame) -> pd.DataFrame:
    """The table of two evaluations pasted together: every run appears twice."""
    runs = results[results["level"] == "run"]
    return pd.concat([results, runs.assign(run_dir="copy/" + runs["run_dir"])])


def test_bad_tables_give_one_line_errors(results: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="2 per-fold rows for task=death, scheme=") as err:
        build_report(_duplicated(results), tmp_path / "a")
    assert "copy/" in str(err.value)  # the run folders are named
    assert "\n" not in err.value.message
    no_scheme = results.drop(columns=["scheme"])
    with pytest.raises(ProgbenchError, match="lacks column"):
        build_report(no_scheme, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_table_without_centres_or_cis_still_reports(
    results: pd.DataFrame, tmp_path: Path
) -> None:
    """A table of an older progbench (no test_center column) and without bootstrap CIs."""
    old = results.drop(columns=["test_center"]).assign(ci_low=np.nan, ci_high=np.nan)
    old = old[(old["regime"] == "full") & (old["weights"] == "random")]
    out = build_report(old, tmp_path / "r", metrics="mcc").out_dir
    assert not (out / "mcc" / "centres").exists()
    table = pd.read_csv(out / "mcc" / "tables" / "full.csv")
    assert table["ci_low"].isna().all() and table["pooled"].notna().all()


def test_ci_figure_draws_each_pooled_value_and_its_ci(results: pd.DataFrame) -> None:
    from matplotlib.container import ErrorbarContainer

    from progbench.report.data import prepare
    from progbench.report.figures import ci_figure

    data = prepare(results, "mcc")
    fig = ci_figure(data)
    assert fig is not None
    groups = data.groups[data.groups["regime"] == "full"]
    panels = [ax for ax in fig.axes if ax.get_title() in TASKS]
    assert sorted(ax.get_title() for ax in panels) == sorted(TASKS)
    for ax in panels:
        want = groups[groups["task_label"] == ax.get_title()]
        drawn = []
        for c in ax.containers:
            assert isinstance(c, ErrorbarContainer)
            (x,), _ = c.lines[0].get_data()
            (segment,) = c.lines[2][0].get_segments()
            drawn.append((float(x), float(segment[0][0]), float(segment[1][0])))
        expected = list(zip(want["pooled"], want["ci_low"], want["ci_high"], strict=True))
        np.testing.assert_allclose(sorted(drawn), sorted(expected))
        assert [t.get_text() for t in ax.get_yticklabels()] == list(MODELS)


def test_a_run_row_without_a_fold_is_named(results: pd.DataFrame, tmp_path: Path) -> None:
    bad = results.copy()
    bad["fold"] = bad["fold"].astype("Float64")
    rows = (bad["level"] == "run") & (bad["split"] == "test") & (bad["metric"] == "mcc")
    bad.loc[bad.index[rows][0], "fold"] = pd.NA
    with pytest.raises(RunError, match="1 run row\\(s\\) without a whole fold number"):
        build_report(bad, tmp_path / "r", metrics="mcc")
