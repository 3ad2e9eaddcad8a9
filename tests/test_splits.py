"""Splits: no patient leakage in any scheme, LOCO centres, stratification, determinism, few-shot draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from progbench.data.fewshot import add_fewshot, parse_shots
from progbench.data.manifest import Task, load_task
from progbench.data.splits import make_splits, read_splits, write_splits
from progbench.errors import SplitError
from tests.helpers.cohorts import write_cohort


@pytest.fixture
def task(tmp_path: Path) -> Task:
    # Every 2nd patient has 2-3 images: leakage would show up quickly.
    m = write_cohort(tmp_path / "c", patients=90, centers=3, multi_image_every=2, seed=3)
    return load_task(manifest=m, outcome="severity", positive="1")


def _patients(task: Task, ids: list[str]) -> set[str]:
    df = task.manifest.frame.set_index("image_id")
    return set(df.loc[ids, "patient_id"])


@pytest.mark.parametrize("scheme", ["loco", "kfold", "holdout"])
def test_no_patient_in_two_parts(task: Task, scheme: str) -> None:
    splits = make_splits(task, scheme, folds=5, seed=1)
    all_ids = set(task.manifest.frame["image_id"])
    for f in splits.folds:
        tr, va, te = _patients(task, f.train), _patients(task, f.val), _patients(task, f.test)
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert set(f.train) | set(f.val) | set(f.test) == all_ids
        assert len(f.train) + len(f.val) + len(f.test) == len(all_ids)


def test_kfold_tests_partition_the_cohort(task: Task) -> None:
    splits = make_splits(task, "kfold", folds=5)
    tests = [i for f in splits.folds for i in f.test]
    assert sorted(tests) == sorted(task.manifest.frame["image_id"])


def test_loco_tests_one_centre_per_fold(task: Task) -> None:
    splits = make_splits(task, "loco")
    df = task.manifest.frame.set_index("image_id")
    assert [f.test_center for f in splits.folds] == ["C0", "C1", "C2"]
    for f in splits.folds:
        assert set(df.loc[f.test, "center"]) == {f.test_center}
        assert f.test_center not in set(df.loc[f.train + f.val, "center"])


def test_stratification(task: Task) -> None:
    overall = task.labels.mean()
    y = dict(zip(task.manifest.frame["image_id"], task.labels, strict=True))
    for f in make_splits(task, "kfold", folds=5).folds:
        for part in (f.test, f.val):
            assert abs(np.mean([y[i] for i in part]) - overall) < 0.2


def test_same_seed_same_splits_other_seed_differs(task: Task) -> None:
    a = make_splits(task, "kfold", seed=7).to_json()
    b = make_splits(task, "kfold", seed=7).to_json()
    c = make_splits(task, "kfold", seed=8).to_json()
    assert a == b and a != c


def test_single_class_test_part_fails(tmp_path: Path) -> None:
    m = write_cohort(tmp_path / "c", patients=30, centers=3)
    task = load_task(manifest=m, outcome="death", positive="1")
    # Make centre C2 all-negative for `death`.
    df = task.manifest.frame
    labels = task.labels.copy()
    labels[(df["center"] == "C2").to_numpy()] = 0
    labels[(df["center"] != "C2").to_numpy()] = np.arange((df["center"] != "C2").sum()) % 2
    task = Task(task.config, task.manifest, labels)
    with pytest.raises(SplitError, match=r"fold 2 \(test centre 'C2'\): the test part holds a single class"):
        make_splits(task, "loco")


def test_splits_json_round_trip(task: Task, tmp_path: Path) -> None:
    s = add_fewshot(make_splits(task, "kfold"), task, [2, 4], repeats=3)
    path = write_splits(s, tmp_path / "s.json")
    raw = json.loads(path.read_text())
    assert raw["scheme"] == "kfold" and raw["seed"] == 42
    assert {"fold", "train", "val", "test"} <= set(raw["folds"][0])
    assert read_splits(path) == s


def test_fewshot_counts_distinct_patients_and_untouched_parts(task: Task) -> None:
    base = make_splits(task, "kfold")
    s = add_fewshot(base, task, [2, 4, 8], repeats=4)
    y = dict(zip(task.manifest.frame["image_id"], task.labels, strict=True))
    pid = dict(zip(task.manifest.frame["image_id"], task.manifest.frame["patient_id"], strict=True))
    for f0, f in zip(base.folds, s.folds, strict=True):
        assert (f.train, f.val, f.test) == (f0.train, f0.val, f0.test)
        assert len(f.fewshot) == 3 * 4
        for d in f.fewshot:
            assert set(d.train) <= set(f.train)
            labels = [y[i] for i in d.train]
            assert labels.count(0) == d.shots and labels.count(1) == d.shots
            assert len({pid[i] for i in d.train}) == 2 * d.shots
        by_k = {}
        for d in f.fewshot:
            by_k.setdefault(d.shots, []).append(tuple(d.train))
        assert all(len(set(v)) > 1 for v in by_k.values())  # repeats differ


def test_fewshot_per_center(task: Task) -> None:
    s = add_fewshot(make_splits(task, "loco"), task, [2], repeats=2, per_center=True)
    df = task.manifest.frame.set_index("image_id")
    for f in s.folds:
        for d in f.fewshot:
            counts = df.loc[d.train].groupby(["center", "severity"]).size()
            assert (counts == 2).all() and len(counts) == 2 * 2  # 2 training centres x 2 classes


def test_fewshot_deterministic(task: Task) -> None:
    base = make_splits(task, "kfold")
    assert add_fewshot(base, task, [4], 3) == add_fewshot(base, task, [4], 3)


def test_fewshot_too_few_patients(task: Task) -> None:
    base = make_splits(task, "kfold")
    with pytest.raises(SplitError, match=r"cannot draw 64 positive images from distinct patients"):
        add_fewshot(base, task, [64], 1)


def test_parse_shots() -> None:
    assert parse_shots("8,2, 4") == [2, 4, 8]
    with pytest.raises(SplitError):
        parse_shots("2,x")
    with pytest.raises(SplitError):
        parse_shots("0,2")
