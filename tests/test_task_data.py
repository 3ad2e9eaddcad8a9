"""One task name, one data set, per runs tree (progbench.runs.taskdata): a task prepared again
from other data under the same name is refused by `train` and `sweep run` before any store is
built, naming the task, both manifests and what differs in words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from progbench.data.manifest import load_task
from progbench.errors import ConfigError
from progbench.runs.taskdata import TaskData, claim_task, describe_differences, record_path
from tests.helpers.cli import cli, task_of
from tests.helpers.cohorts import write_cohort
from tests.helpers.sweeps import write_sweep


@pytest.fixture
def two_cohorts(tmp_path: Path) -> tuple[Path, Path]:
    """The same cohort twice; B has 2 images fewer and 3 labels flipped (patients kept whole)."""
    a = task_of(write_cohort(tmp_path / "a", patients=12, size=8))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    manifest = tmp_path / "b" / "manifest.csv"
    df = pd.read_csv(manifest, dtype=str)
    single = df.groupby("patient_id")["image_id"].transform("count") == 1
    drop = df.index[single][:2]
    flip = df.index[single][2:5]
    df.loc[flip, "severity"] = ["1" if v == "0" else "0" for v in df.loc[flip, "severity"]]
    df.drop(index=drop).to_csv(manifest, index=False)
    return a, task_of(manifest)


def test_differences_are_said_in_words(two_cohorts: tuple[Path, Path]) -> None:
    a, b = (TaskData.of(load_task(p)) for p in two_cohorts)
    n = len(a.images)
    diff = describe_differences(a, b)
    assert diff[0] == f"manifest A has {n} images, B has {n - 2}"
    assert diff[1].startswith("2 image id(s) only in A (e.g. ")
    assert diff[2].startswith("labels differ for 3 image(s)")
    assert describe_differences(a, a) == []


def test_train_refuses_a_task_name_with_other_data_before_any_store(
    tmp_path: Path, two_cohorts: tuple[Path, Path]
) -> None:
    a, b = two_cohorts
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    claim_task(load_task(a), runs)  # as the first train of task A did
    claim_task(load_task(a), runs)  # the same data again: accepted
    r = cli("train", b, "--backbone", "tiny-resnet", "--weights", "random", "--runs", runs,
            "--cache-dir", cache)  # fmt: skip
    assert r.code != 0
    assert "task 'tiny-severity' already has runs in" in r.err
    assert str(a.parent.parent / "manifest.csv") in r.err
    assert str(b.parent.parent / "manifest.csv") in r.err
    assert "labels differ for 3 image(s)" in r.err and "only in A" in r.err
    assert not cache.exists() and not list(runs.rglob("splits-*.json"))


def test_sweep_run_refuses_it_too(tmp_path: Path, two_cohorts: tuple[Path, Path]) -> None:
    a, b = two_cohorts
    path = write_sweep(tmp_path / "study", tasks=[str(b)], strategies=["lp"], fewshot=None)
    claim_task(load_task(a), tmp_path / "study" / "runs")
    r = cli("sweep", "run", path)
    assert r.code != 0 and "task 'tiny-severity' already has runs" in r.err, r.err
    assert not (tmp_path / "study" / "cache").exists()


def test_a_broken_record_is_named(tmp_path: Path, two_cohorts: tuple[Path, Path]) -> None:
    path = record_path(tmp_path / "runs", "tiny-severity")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is not a task record"):
        claim_task(load_task(two_cohorts[0]), tmp_path / "runs")
