"""`progbench evaluate` on a hand-written predictions file, a run directory and a run tree."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from progbench.cli import main
from progbench.evaluate import RESULT_KEYS, evaluate_predictions
from progbench.runs import append_train_log, read_predictions_file
from tests.helpers.runs import BAD, GOOD, Y, build_run

HAND_WRITTEN = """image_id,patient_id,split,y_true,p_pos
a1,P1,val,1,0.9
a2,P1,val,1,0.7
b1,P2,val,0,0.2
c1,P3,val,0,0.6
d1,P4,test,1,0.8
d2,P4,test,1,0.55
e1,P5,test,0,0.4
f1,P6,test,1,0.3
g1,P7,test,0,0.1
"""


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("policy", ["fixed:0.5", "val-mcc", "val-youden"])
def test_hand_written_csv_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    path = tmp_path / "some_predictions.csv"
    path.write_text(HAND_WRITTEN)
    code, out, _ = run_cli(["evaluate", str(path), "--threshold", policy, "--json"], capsys)
    assert code == 0
    got = json.loads(out)
    assert list(got) == ["test", "val"]
    for split in ("test", "val"):
        assert list(got[split]) == [*RESULT_KEYS, "threshold_rule", "degenerate"]
    assert got == json.loads(json.dumps(evaluate_predictions(read_predictions_file(path), policy)))
    assert got["test"]["n"] == 5 and got["test"]["prevalence"] == pytest.approx(0.6)


def test_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.csv"
    path.write_text(HAND_WRITTEN)
    code, out, _ = run_cli(["evaluate", str(path)], capsys)
    assert code == 0 and "mcc" in out and "baseline" in out and "fixed:0.5" in out


def test_missing_column_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.csv"
    path.write_text("image_id,patient_id,split,y_true\na,b,test,1\n")
    code, out, err = run_cli(["evaluate", str(path), "--json"], capsys)
    assert code != 0 and out == ""
    assert "lacks column(s) p_pos" in " ".join(err.split())


def test_bad_value_names_row_column_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.csv"
    path.write_text("image_id,patient_id,split,y_true,p_pos\na,b,test,1,0.5\nc,d,test,1,1.7\n")
    code, _, err = run_cli(["evaluate", str(path)], capsys)
    assert code != 0
    assert "column 'p_pos' has bad values at row 2 ('1.7')" in " ".join(err.split())


def test_run_dir_and_incomplete_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = build_run(tmp_path, Y, GOOD)
    code, out, _ = run_cli(["evaluate", str(run), "--json"], capsys)
    assert code == 0 and json.loads(out)["test"]["mcc"] == 1.0
    half = tmp_path / "half"
    append_train_log(half, {"epoch": 0})
    code, out, err = run_cli(["evaluate", str(half)], capsys)
    assert code != 0 and "no DONE marker" in " ".join(err.split())


def test_tree_writes_results_and_warns_about_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_run(tmp_path, Y, GOOD, fold=0)
    build_run(tmp_path, Y, BAD, fold=1)
    half = tmp_path / "t" / "b" / "lora" / "full" / "fold-2"
    append_train_log(half, {"epoch": 0})
    code, out, err = run_cli(["evaluate", str(tmp_path), "--json", "--n-boot", "20"], capsys)
    assert code == 0
    got = json.loads(out)
    assert got["runs"] == 2 and got["incomplete"] == [str(half)]
    assert "fold-2" in err and "incomplete" in err
    [group] = got["groups"]
    assert group["metrics"]["mcc"]["mean"] == 0.0 and group["metrics"]["mcc"]["n_folds"] == 2
    results = pd.read_parquet(tmp_path / "results.parquet")
    assert len(pd.read_csv(tmp_path / "results.csv")) == len(results) > 0
    code, out, _ = run_cli(["evaluate", str(tmp_path), "--n-boot", "20"], capsys)  # table, refresh
    assert code == 0 and "MCC" in out and "results.parquet" in out
