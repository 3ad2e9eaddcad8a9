"""Run directories: spec validation, layout, writers, DONE, the reader and tree scans."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from progbench.errors import RunError
from progbench.evaluate.finish import finish_scored_run
from progbench.runs import (
    DONE_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    RunCost,
    RunSpec,
    append_train_log,
    is_done,
    iter_runs,
    mark_done,
    read_predictions_file,
    read_run,
    read_train_log,
    run_dir_for,
    validate_predictions,
    write_metrics,
    write_predictions,
    write_spec,
)


def spec(**kw: object) -> RunSpec:
    base: dict[str, object] = {
        "task": "covid-severity",
        "backbone": "resnet18",
        "weights": "random",
        "strategy": "lora",
        "regime": "full",
        "fold": 0,
        "scheme": "kfold",
    }
    return RunSpec.model_validate(base | kw)


def predictions(n: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "image_id": [f"img{i}" for i in range(n)],
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "split": ["val"] * (n // 2) + ["test"] * (n - n // 2),
            "y_true": np.tile([0, 1, 1, 0], n)[:n],
            "p_pos": rng.random(n),
        }
    )


# ------------------------------------------------------------------------------- spec and layout


def test_run_dir_layout_full_and_fewshot(tmp_path: Path) -> None:
    assert (
        run_dir_for(tmp_path, spec(fold=3))
        == tmp_path / "covid-severity/kfold/resnet18/lora/full/fold-3"
    )
    few = spec(regime="fewshot", shots=8, repeat=2, fold=1)
    assert (
        run_dir_for(tmp_path, few)
        == tmp_path / "covid-severity/kfold/resnet18/lora/fewshot/fold-1/shots-8/rep-2"
    )
    centre = spec(regime="fewshot-center", shots=2, repeat=0)
    assert run_dir_for(tmp_path, centre).parts[-4:] == (
        "fewshot-center",
        "fold-0",
        "shots-2",
        "rep-0",
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"regime": "fewshot"},  # shots and repeat missing
        {"regime": "full", "shots": 4, "repeat": 0},
        {"backbone": "google/vit"},  # would escape the tree
        {"task": ".."},
        {"fold": -1},
        {"scheme": "random"},
        {"unknown_key": 1},
        {"extra": {"f": object()}},
    ],
)
def test_runspec_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        spec(**bad)


def test_runspec_is_frozen_and_keyed() -> None:
    s = spec(extra={"lr": 1e-4})
    with pytest.raises(ValidationError):
        s.fold = 2  # type: ignore[misc]
    assert s.key() == spec(extra={"lr": 1e-4}).key() != spec(extra={"lr": 1e-3}).key()


# ------------------------------------------------------------------------------- predictions


def test_validate_names_missing_columns() -> None:
    df = predictions().drop(columns=["p_pos", "split"])
    with pytest.raises(RunError, match=r"lacks column\(s\) split, p_pos"):
        validate_predictions(df, "x.csv")


@pytest.mark.parametrize(
    ("column", "value", "want"),
    [
        ("y_true", 2, "0 or 1"),
        ("y_true", "yes", "0 or 1"),
        ("p_pos", 1.5, r"\[0, 1\]"),
        ("p_pos", float("nan"), r"\[0, 1\]"),
        ("p_pos", float("inf"), r"\[0, 1\]"),
        ("split", "train", "'val' or 'test'"),
        ("patient_id", "", "non-empty"),
    ],
)
def test_validate_names_row_column_and_value(column: str, value: object, want: str) -> None:
    df = predictions().astype({column: object})
    df.loc[4, column] = value
    with pytest.raises(RunError, match=rf"column '{column}' has bad values at row 5 .*{want}"):
        validate_predictions(df, "x")


def test_validate_rejects_duplicates_and_leakage() -> None:
    df = predictions()
    df.loc[1, "image_id"] = "img0"
    with pytest.raises(RunError, match="more than once"):
        validate_predictions(df)
    df = predictions()
    df.loc[df.index[-1], "patient_id"] = "p0"  # p0 is a val patient
    with pytest.raises(RunError, match="both val and test"):
        validate_predictions(df)


def test_hand_written_csv_keeps_text_ids(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "image_id,patient_id,split,y_true,p_pos\n007,001,test,1,0.25\n008,002,val,0.0,1\n"
    )
    df = read_predictions_file(path)
    assert df["image_id"].tolist() == ["007", "008"]
    assert df["y_true"].tolist() == [1, 0]
    assert df["p_pos"].tolist() == [0.25, 1.0]


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("x")
    with pytest.raises(RunError, match="unknown extension"):
        read_predictions_file(path)


# ------------------------------------------------------------------------------- writers, DONE, reader


def test_round_trip(tmp_path: Path) -> None:
    s = spec(extra={"lr": 1e-4})
    run_dir = run_dir_for(tmp_path, s)
    write_spec(run_dir, s)
    append_train_log(run_dir, {"epoch": 0, "loss": 0.7})
    append_train_log(run_dir, {"epoch": 1, "loss": 0.5})
    cost = RunCost(
        wall_time_s=12.5, peak_host_mb=300.0, trainable=10, total=1000, trainable_percent=1.0
    )
    metrics = finish_scored_run(run_dir, predictions(), "val-mcc", cost)
    assert is_done(run_dir)
    run = read_run(run_dir)
    assert run.spec == s
    assert run.cost == cost
    assert run.metrics == metrics
    assert run.metrics["test"]["threshold_rule"] == "val-mcc"
    pd.testing.assert_frame_equal(run.predictions, validate_predictions(predictions()))
    assert [r["epoch"] for r in read_train_log(run_dir)] == [0, 1]
    assert set(json.loads((run_dir / DONE_FILE).read_text())["digests"]) == {
        "spec.json",
        PREDICTIONS_FILE,
        METRICS_FILE,
    }


def test_incomplete_run_is_refused_with_clear_message(tmp_path: Path) -> None:
    run_dir = run_dir_for(tmp_path, spec())
    write_spec(run_dir, spec())
    write_predictions(run_dir, predictions())
    with pytest.raises(RunError, match="incomplete: it has no DONE marker") as info:
        read_run(run_dir)
    assert str(run_dir) in str(info.value)
    assert "rm -r" in (info.value.hint or "")


def test_mark_done_needs_all_files(tmp_path: Path) -> None:
    write_spec(tmp_path, spec())
    with pytest.raises(RunError, match=r"missing predictions\.parquet, metrics\.json"):
        mark_done(tmp_path)
    assert not is_done(tmp_path)


def test_finished_runs_are_never_overwritten(tmp_path: Path) -> None:
    write_spec(tmp_path, spec())
    finish_scored_run(tmp_path, predictions())
    for write in (
        lambda: write_spec(tmp_path, spec()),
        lambda: write_predictions(tmp_path, predictions()),
        lambda: write_metrics(tmp_path, {}),
        lambda: append_train_log(tmp_path, {"x": 1}),
        lambda: mark_done(tmp_path),
    ):
        with pytest.raises(RunError, match="is finished"):
            write()


def test_changed_after_done_is_detected(tmp_path: Path) -> None:
    write_spec(tmp_path, spec())
    finish_scored_run(tmp_path, predictions())
    df = predictions()
    df["p_pos"] = 1 - df["p_pos"]
    df.to_parquet(tmp_path / PREDICTIONS_FILE, index=False)
    with pytest.raises(RunError, match="changed after the run was marked DONE"):
        read_run(tmp_path)


def test_nan_metrics_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="NaN"):
        write_metrics(tmp_path, {"test": {"mcc": float("nan")}})


def test_torn_last_log_line_is_skipped(tmp_path: Path) -> None:
    append_train_log(tmp_path, {"epoch": 0})
    with open(tmp_path / "train_log.jsonl", "a") as fh:
        fh.write('{"epoch": 1, "lo')
    assert read_train_log(tmp_path) == [{"epoch": 0}]


def test_iter_runs_separates_done_and_incomplete(tmp_path: Path) -> None:
    finished = [spec(fold=0), spec(regime="fewshot", shots=2, repeat=0), spec(strategy="lp")]
    for s in finished:
        write_spec(run_dir_for(tmp_path, s), s)
        finish_scored_run(run_dir_for(tmp_path, s), predictions())
    half = run_dir_for(tmp_path, spec(fold=1))
    append_train_log(half, {"epoch": 0})
    (tmp_path / ".hidden.tmp").mkdir()
    (tmp_path / ".hidden.tmp" / DONE_FILE).write_text("{}")
    scan = iter_runs(tmp_path)
    assert scan.done == sorted(run_dir_for(tmp_path, s) for s in finished)
    assert scan.incomplete == [half]


def test_atomic_files_get_the_usual_mode(tmp_path: Path) -> None:
    """Published files are readable by others under the default umask, not mkstemp's 0600."""
    from progbench.atomic import _FILE_MODE, atomic_write_text

    atomic_write_text(tmp_path / "x.txt", "hi")
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == _FILE_MODE
    assert (tmp_path / "x.txt").read_text() == "hi"
