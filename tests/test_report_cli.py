"""`progbench report RUNS --out DIR` on a run tree that grows: the report follows the runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from progbench.cli import main
from progbench.report import MANIFEST, REPORT_HTML
from tests.helpers.runtree import TreeSpec, evaluated_tree, write_run_tree

# Module fixtures build cohorts, trees or reports: on one xdist worker, so built once.
pytestmark = pytest.mark.xdist_group("test_report_cli")

# Full-data runs only (1 task x 2 folds), so evaluation and drawing take seconds.
SMALL = TreeSpec(
    tasks=("death",),
    backbones=("resnet18", "dinov2-s"),
    strategies=("fft", "lp", "lora-r8"),
    folds=2,
    fewshot_tasks=(),
    n_test=16,
    n_val=6,
)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _digests(out: Path) -> dict[str, str]:
    return json.loads((out / MANIFEST).read_text(encoding="utf-8"))["files"]


@pytest.mark.slow
def test_report_follows_the_run_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs, out = tmp_path / "runs", tmp_path / "report"
    write_run_tree(runs, SMALL)
    args = ["report", str(runs), "--out", str(out), "--n-boot", "5"]
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    assert f"report: {out / REPORT_HTML}" in stdout.replace("\n", "")
    first = _digests(out)
    # The default metrics, MCC and PR-AUC, each in its own folder.
    assert {rel.split("/")[0] for rel in first} == {"mcc", "pr_auc", "provenance", REPORT_HTML}
    table = pd.read_csv(out / "mcc" / "tables" / "full.csv")
    assert sorted(set(table["backbone"])) == ["dinov2-s", "resnet18"]
    # The runs' own library versions reach the provenance section (read from spec.json).
    html = (out / REPORT_HTML).read_text(encoding="utf-8")
    assert 'id="versions-runs"' in html and "set 1 (12 runs)" in html

    # A sweep goes on: one more backbone. The same command updates the report in place.
    added = write_run_tree(
        runs, TreeSpec(**{**SMALL.__dict__, "backbones": (*SMALL.backbones, "fake-net")})
    )
    assert len(added) == 3 * SMALL.folds
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    table = pd.read_csv(out / "mcc" / "tables" / "full.csv")
    assert sorted(set(table["backbone"])) == ["dinov2-s", "fake-net", "resnet18"]
    second = _digests(out)
    assert set(second) == set(first)
    assert second["mcc/tables/full.csv"] != first["mcc/tables/full.csv"]
    assert second[REPORT_HTML] != first[REPORT_HTML]
    assert "fake-net" in (out / "provenance" / "runs.csv").read_text(encoding="utf-8")


def test_report_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        ["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")], capsys
    )
    assert code != 0 and "not a directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(
        ["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")], capsys
    )
    assert code != 0 and "no finished runs" in err
    code, _, err = run_cli(
        ["report", str(tmp_path), "--out", str(tmp_path / "r"), "--metric", "mcc,acc"], capsys
    )
    assert code != 0 and "unknown metric 'acc'" in err and "mcc" in err
    assert "Traceback" not in err
    bad = tmp_path / "results.txt"
    bad.write_text("x", encoding="utf-8")
    code, _, err = run_cli(["report", str(bad), "--out", str(tmp_path / "r")], capsys)
    assert code != 0 and "unknown extension" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_metric_option_is_repeatable_and_comma_separated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "results.csv"
    evaluated_tree(SMALL)[1].query("backbone == 'resnet18'").to_csv(table, index=False)
    out = tmp_path / "report"
    args = ["report", str(table), "--out", str(out), "--metric", "auroc", "--metric", "mcc,auroc"]
    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    assert {rel.split("/")[0] for rel in _digests(out)} == {
        "auroc",
        "mcc",
        "provenance",
        REPORT_HTML,
    }
    html = (out / REPORT_HTML).read_text(encoding="utf-8")
    # In the order given, without repeats; the first is the one shown first.
    assert html.index('value="auroc" checked') < html.index('value="mcc"')
    assert "<title>progbench report: AUROC, MCC</title>" in html


@pytest.mark.slow
def test_the_runs_table_shows_each_runs_feature_variant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from progbench.evaluate.finish import finish_scored_run
    from progbench.runs import iter_runs, read_run, write_spec

    runs, out = tmp_path / "runs", tmp_path / "report"
    tree = TreeSpec(**{**SMALL.__dict__, "backbones": ("dinov2-s",), "strategies": ("lp",)})
    write_run_tree(runs, tree)
    done = sorted(iter_runs(runs).done)
    run = read_run(done[0])  # rewritten as the LP writes a run that picked cls4+avg
    (done[0] / "DONE").unlink()
    write_spec(done[0], run.spec.model_copy(update={"extra": {"variant": "cls4+avg"}}))
    finish_scored_run(done[0], run.predictions, cost=run.cost)
    args = ["report", str(runs), "--out", str(out), "--n-boot", "5"]
    assert run_cli(args, capsys)[0] == 0
    table = pd.read_csv(out / "provenance" / "runs.csv")
    assert list(table.columns).index("variant") == list(table.columns).index("strategy") + 1
    by_dir = dict(zip(table["run_dir"], table["variant"], strict=True))
    assert by_dir[str(done[0].relative_to(runs))] == "cls4+avg"
    assert pd.isna(by_dir[str(done[1].relative_to(runs))])  # recorded none
    html = (out / REPORT_HTML).read_text(encoding="utf-8")
    assert "cls4+avg" in html
    first = _digests(out)
    assert run_cli(args, capsys)[0] == 0
    assert _digests(out) == first  # byte-identical on rerun
