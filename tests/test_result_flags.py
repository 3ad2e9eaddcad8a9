"""Results that say what they are (issue 21, section 3): random weights and degenerate
classifiers (one predicted class on a test set) flagged in metrics.json, the results table, the
CLI summaries and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from progbench.evaluate import evaluate_predictions
from progbench.evaluate.results import evaluate_tree, result_warnings, summarise
from tests.helpers.runs import GOOD, Y, build_run
from tests.test_evaluate_cli import run_cli

CONSTANT = [0.3] * len(Y)  # every test row below 0.5: one predicted class


def _preds(p_test: list[float]) -> pd.DataFrame:
    n = len(p_test)
    return pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(4 + n)],
            "patient_id": [f"p{i}" for i in range(4 + n)],
            "split": ["val"] * 4 + ["test"] * n,
            "y_true": [0, 1, 0, 1, *Y[:n]],
            "p_pos": [0.2, 0.8, 0.3, 0.9, *p_test],
        }
    )


def test_a_split_predicted_one_class_is_degenerate() -> None:
    out = evaluate_predictions(_preds(CONSTANT))
    assert out["test"]["degenerate"] is True and out["test"]["mcc"] == 0.0
    assert out["val"]["degenerate"] is False
    assert evaluate_predictions(_preds(GOOD))["test"]["degenerate"] is False


def test_metrics_json_and_results_table_flag_degenerate_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    bad = build_run(root, Y, CONSTANT, fold=0)
    build_run(root, Y, GOOD, fold=1)
    build_run(root, Y, GOOD, fold=2)
    assert json.loads((bad / "metrics.json").read_text())["metrics"]["test"]["degenerate"] is True
    results = evaluate_tree(root, n_boot=0).results
    test = results[(results["split"] == "test") & (results["metric"] == "mcc")]
    per_run = test[test["level"] == "run"].set_index("fold")["n_degenerate"]
    assert per_run.to_dict() == {0: 1, 1: 0, 2: 0}
    agg = test[test["level"] == "aggregate-mean"]
    assert agg["n_degenerate"].tolist() == [1] and agg["n_runs"].tolist() == [3]
    (group,) = summarise(results)
    assert group["n_degenerate"] == 1 and group["n_runs"] == 3
    warnings = result_warnings([group])
    assert any("degenerate classifier: 1 of 3 run(s)" in w for w in warnings)
    assert any(w.startswith("random weights: b ") for w in warnings)  # build_run: random


def test_few_shot_aggregates_count_per_fold_and_repeat(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    build_run(root, Y, CONSTANT, fold=0, shots=2, repeat=0)
    build_run(root, Y, GOOD, fold=0, shots=2, repeat=1)
    build_run(root, Y, GOOD, fold=1, shots=2, repeat=0)
    build_run(root, Y, GOOD, fold=1, shots=2, repeat=1)
    r = evaluate_tree(root, n_boot=0).results
    mcc = r[(r["metric"] == "mcc") & (r["split"] == "test")]
    fold_mean = mcc[mcc["level"] == "fold-mean"].set_index("fold")["n_degenerate"]
    assert fold_mean.to_dict() == {0: 1, 1: 0}
    pooled = mcc[mcc["level"] == "pooled"].set_index("repeat")["n_degenerate"]
    assert pooled.to_dict() == {0: 1, 1: 0}
    assert mcc[mcc["level"] == "aggregate-mean"]["n_degenerate"].tolist() == [1]


def test_no_warning_for_pretrained_non_degenerate_groups() -> None:
    group = {"task": "t", "backbone": "b", "weights": "pretrained", "strategy": "lp"}
    assert result_warnings([group | {"regime": "full", "n_degenerate": 0}]) == []


def test_evaluate_cli_says_random_and_degenerate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "runs"
    build_run(root, Y, CONSTANT, fold=0)
    build_run(root, Y, CONSTANT, fold=1)
    code, out, _ = run_cli(["evaluate", str(root), "--n-boot", "0"], capsys)
    assert code == 0
    assert "b (random)" in out and "2 (2 one-class)" in out
    assert "random weights: b ran with --weights random" in " ".join(out.split())
    assert "degenerate classifier: 2 of 2 run(s)" in " ".join(out.split())
    code, out, _ = run_cli(["evaluate", str(root), "--n-boot", "0", "--json"], capsys)
    got = json.loads(out)
    assert got["groups"][0]["n_degenerate"] == 2 and len(got["warnings"]) == 2
    one = next(root.rglob("predictions.parquet"))
    code, out, _ = run_cli(["evaluate", str(one)], capsys)
    assert "one class predicted" in out and "degenerate classifier: every test row" in out


def test_many_degenerate_groups_are_counted_not_listed() -> None:
    groups = [
        {"task": "t", "backbone": "b", "weights": "x", "strategy": f"s{i}", "regime": "full",
         "n_degenerate": 1, "n_runs": 3}
        for i in range(8)
    ]  # fmt: skip
    warnings = result_warnings(groups)
    assert len(warnings) == 6 and warnings[-1].startswith("degenerate classifier: 3 more group(s)")
