"""Splits: no patient leakage in any scheme, LOCO centres, stratification, determinism, few-shot draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from progbench.data.fewshot import add_fewshot, parse_shots
from progbench.data.manifest import Task, load_task
from progbench.data.splits import (
    SPLITS_VERSION,
    Splits,
    held_counts,
    make_splits,
    read_splits,
    resolve_scheme,
    scheme_warnings,
    write_splits,
)
from progbench.data.summary import split_summary
from progbench.errors import SplitError
from progbench.runs import identity_diff
from progbench.train.plan import (
    SplitRequest,
    plan_runs,
    resolve_splits,
    select_draws,
    splits_path,
)
from tests.helpers.cli import cli
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
    with pytest.raises(
        SplitError, match=r"fold 2 \(test centre 'C2'\): the test part holds a single class"
    ):
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


# ------------------------------------------------- issue 21.2: splits that do what they say


def _relabelled(root: Path, positive, patients: int = 60, centers: int = 3) -> Task:
    """write_cohort's cohort with severity set per patient: positive(patient number, centre)."""
    m = write_cohort(root, patients=patients, centers=centers, multi_image_every=2, seed=5)
    df = pd.read_csv(m)
    number = df["patient_id"].str[1:].astype(int)
    df["severity"] = [int(positive(n, c)) for n, c in zip(number, df["center"], strict=True)]
    df.to_csv(m, index=False)
    return load_task(manifest=m, outcome="severity", positive="1")


def _class_patients(task: Task, ids: list[str]) -> tuple[int, int]:
    df = task.manifest.frame.set_index("image_id")
    per_patient = df.loc[ids].groupby("patient_id")["severity"].max().astype(int)
    return int((per_patient == 0).sum()), int((per_patient == 1).sum())


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.3, 0.4])
@pytest.mark.parametrize("scheme", ["kfold", "loco", "holdout"])
def test_val_fraction_is_the_share_of_training_patients(
    task: Task, scheme: str, fraction: float
) -> None:
    """Not the nearest 1/n: 0.4 used to hold half the patients (2 splits), 0.3 a third."""
    splits = make_splits(task, scheme, folds=5, val_fraction=fraction, seed=3)
    assert splits.version == SPLITS_VERSION
    for f in splits.folds:
        val, train = _class_patients(task, f.val), _class_patients(task, f.train)
        n = sum(val) + sum(train)
        assert abs(sum(val) / n - fraction) <= 0.5 / n + 1e-9  # the nearest whole patient
        for c in (0, 1):  # stratified: each class's share within one patient of the fraction
            assert abs(val[c] - fraction * (val[c] + train[c])) < 1 + 1e-9
            assert val[c] >= 1 and train[c] >= 1


def test_holdout_test_fraction_is_honoured(task: Task) -> None:
    (f,) = make_splits(task, "holdout", test_fraction=0.3, seed=1).folds
    n_test, n_all = len(_patients(task, f.test)), task.manifest.frame["patient_id"].nunique()
    assert abs(n_test / n_all - 0.3) <= 0.5 / n_all + 1e-9


def test_held_counts_round_to_the_nearest_patient_and_keep_both_classes() -> None:
    assert held_counts((50, 30), 0.3, keep=1) == [15, 9]
    assert held_counts((57, 3), 0.1, keep=1) == [5, 1]  # the small class still gets one
    assert held_counts((57, 1), 0.1, keep=1) == [6, 0]  # one patient cannot be split
    assert held_counts((40, 2), 0.45, keep=1) == [18, 1]  # and keeps one for training
    assert sum(held_counts((33, 17), 0.2, keep=1)) == 10


def test_validation_holds_a_rare_class_whenever_training_has_two(tmp_path: Path) -> None:
    """3 positive patients in 60, 3 folds: every training part holds 2 of them, so one goes to
    validation and one to training (the old 5-split rule left validation without a positive)."""
    task = _relabelled(tmp_path / "c", lambda n, c: n in (4, 17, 33), centers=1)
    splits = make_splits(task, "kfold", folds=3, seed=42)
    for f in splits.folds:
        assert _class_patients(task, f.val)[1] == 1
        assert _class_patients(task, f.train)[1] == 1
        assert _class_patients(task, f.test)[1] == 1


def test_a_class_too_small_is_one_message_with_one_hint(tmp_path: Path) -> None:
    """3 positive patients: 2 folds leave a training part with 1, 4 folds a test part with none;
    both errors give the same hint, and the --folds it names works."""
    task = _relabelled(tmp_path / "c", lambda n, c: n in (4, 17, 33), centers=1)
    hints = []
    for folds in (2, 4):
        with pytest.raises(SplitError) as err:
            make_splits(task, "kfold", folds=folds, seed=42)
        hints.append(err.value.hint)
        assert "val-fraction" not in str(err.value) and "fewer --folds" not in str(err.value)
    assert hints[0] == hints[1] and "Use --folds 3 (" in hints[0], hints
    make_splits(task, "kfold", folds=3, seed=42)
    # Two positive patients cannot be split at all: the hint says so, at any --folds.
    two = _relabelled(tmp_path / "d", lambda n, c: n in (4, 17), centers=1)
    with pytest.raises(
        SplitError, match=r"fold \d: the training part holds \d+ negative and 1 positive"
    ):
        make_splits(two, "kfold", folds=2, seed=42)
    for scheme in ("kfold", "holdout"):
        with pytest.raises(SplitError) as err:
            make_splits(two, scheme, folds=2, seed=42)
        assert "needs at least 3 per class" in str(err.value.hint)
        assert "Add positive patients" in str(err.value.hint) or "Add patients" in str(
            err.value.hint
        )


def test_loco_training_part_with_one_patient_of_a_class_names_the_fold(tmp_path: Path) -> None:
    # Positive patients: 0, 3, 6 in C0 and 1 in C1; testing on C0 trains on one positive.
    task = _relabelled(tmp_path / "c", lambda n, c: n in (0, 3, 6, 1))
    with pytest.raises(SplitError) as err:
        make_splits(task, "loco")
    assert "fold 0 (test centre 'C0'): the training part holds" in err.value.message
    assert "and 1 positive patients" in err.value.message
    assert (
        err.value.hint
        == "Use --scheme kfold: its training parts pool the patients of every centre."
    )


def test_auto_loco_warns_about_a_training_part_with_few_patients_of_a_class(
    tmp_path: Path, task: Task
) -> None:
    # C0 holds 8 positive patients, C1 2 and C2 2: testing on C0 trains on 4 positives.
    pos = {0, 3, 6, 9, 12, 15, 18, 21, 1, 4, 2, 5}
    small = _relabelled(tmp_path / "c", lambda n, c: n in pos)
    scheme, _ = resolve_scheme(small, "auto")
    assert scheme == "loco"
    (warning,) = scheme_warnings(small, "auto", "loco")
    assert "fold 0 (test centre 'C0') trains on 36 negative and 4 positive patients" in warning
    assert "--scheme kfold" in warning
    assert scheme_warnings(small, "loco", "loco") == []  # asked for by name: no warning
    assert scheme_warnings(task, "auto", "loco") == []  # every training part is large enough
    # `train` prints it under the scheme line (its note).
    _, _, note = resolve_splits(small, SplitRequest(), tmp_path / "runs")
    assert note.splitlines() == ["scheme auto: loco (3 centres)", f"warning: {warning}"]


def test_sweep_plan_and_run_say_when_auto_chose_a_thin_loco(tmp_path: Path) -> None:
    """A sweep's `scheme: auto` resolves per task as `train` does, with the same warning."""
    pos = {0, 3, 6, 9, 12, 15, 18, 21, 1, 4, 2, 5}
    small = _relabelled(tmp_path / "c", lambda n, c: n in pos)
    sweep = tmp_path / "s" / "study.yaml"
    sweep.parent.mkdir()
    task_yaml = small.manifest.source.parent / "tasks" / "severity.yaml"
    spec = {"name": "thin", "runs": "runs", "cache": "cache", "tasks": [str(task_yaml)]}
    spec |= {"backbones": ["tiny-resnet"], "strategies": ["lp"], "weights": "random"}
    sweep.write_text(yaml.safe_dump(spec | {"scheme": "auto"}))
    r = cli("sweep", "plan", sweep)
    assert r.code == 0, r.text
    text = " ".join(r.out.split())
    assert "note: task tiny-severity: scheme auto chose loco, but fold 0 (test centre 'C0')" in text
    sweep.write_text(yaml.safe_dump(spec | {"scheme": "kfold"}))
    assert "chose loco" not in cli("sweep", "plan", sweep).out


def test_splits_command_table_and_warning(tmp_path: Path) -> None:
    pos = {0, 3, 6, 9, 12, 15, 18, 21, 1, 4, 2, 5}
    task = _relabelled(tmp_path / "c", lambda n, c: n in pos)
    out = tmp_path / "s.json"
    r = cli("splits", task.manifest.source.parent / "tasks" / "severity.yaml",
            "--val-fraction", "0.3", "--out", out)  # fmt: skip
    assert r.code == 0, r.text
    assert "warning: scheme auto chose loco, but fold 0 (test centre 'C0')" in r.out, r.out
    for column in ("train neg", "train pos", "val neg", "val pos", "test neg", "test pos"):
        assert column in r.out
    splits = read_splits(out)
    rows = split_summary(task, splits)
    for f, row in zip(splits.folds, rows, strict=True):
        (val_neg, val_pos) = _class_patients(task, f.val)
        assert row[4].endswith(f"/{val_neg}") and row[5].endswith(f"/{val_pos}")
        n_val, n_train = len(_patients(task, f.val)), len(_patients(task, f.train))
        assert row[8] == f"{100 * n_val / (n_val + n_train):.1f}%" and row[8] in r.out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--scheme", "loco", "--folds", "3"), "--folds 3 applies to the kfold scheme"),
        (("--per-center",), "--per-center apply to few-shot draws"),
        (("--repeats", "2"), "--repeats apply to few-shot draws"),
    ],
)
def test_splits_command_refuses_options_it_would_not_use(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    m = write_cohort(tmp_path / "c", patients=30)
    r = cli("splits", m.parent / "tasks" / "severity.yaml", *args, "--out", tmp_path / "s.json")
    assert r.code != 0 and named in r.err, r.text
    assert not (tmp_path / "s.json").exists()


# ------------------------------------------- splits files: version, draws, options, the note


def test_splits_version_is_in_the_file_name_and_the_run_identity(
    task: Task, tmp_path: Path
) -> None:
    """Runs made under the old validation rule are refused by name, not mixed with new ones."""
    path = splits_path(task, SplitRequest(), "kfold", tmp_path)
    assert path.name == f"splits-kfold-5folds-val0.2-seed42-v{SPLITS_VERSION}.json"
    new = make_splits(task, "kfold")
    old = new.model_copy(update={"version": 1})
    raw = new.to_json()
    del raw["version"]  # a file written before versions existed
    assert Splits.model_validate(raw).version == 1
    assert "version" not in old.parameters() and new.parameters()["version"] == SPLITS_VERSION
    identity = {"backbone": "b", "weights": "random", "strategy": "lp"}
    (a, *_), (b, *_) = (plan_runs(task, s, SplitRequest(), path, identity, {}) for s in (old, new))
    assert f"split.version: unset there, {SPLITS_VERSION} now" in identity_diff(a.spec, b.spec)


def test_a_splits_file_runs_its_draws_and_refuses_contradicting_options(
    task: Task, tmp_path: Path
) -> None:
    path = write_splits(
        add_fewshot(make_splits(task, "kfold", folds=3), task, [2, 4], 3), tmp_path / "s.json"
    )
    splits, _, note = resolve_splits(task, SplitRequest(splits_file=path), tmp_path)
    assert note == f"scheme kfold (from {path})"  # once, not "scheme scheme"
    every = select_draws(splits, SplitRequest(splits_file=path), path)
    assert all(len(d) == 2 * 3 for d in every.values())
    first = select_draws(splits, SplitRequest(splits_file=path, repeats=1), path)
    assert {(d.shots, d.repeat) for d in first[0]} == {(2, 0), (4, 0)}
    with pytest.raises(SplitError, match=r"holds no few-shot draw for k=2 repeat\(s\) 3"):
        select_draws(splits, SplitRequest(splits_file=path, repeats=4), path)
    given = SplitRequest(splits_file=path, val_fraction=0.3, folds=4, seed=1, scheme="loco")
    with pytest.raises(SplitError) as err:
        resolve_splits(task, given, tmp_path)
    for part in ("--val-fraction 0.3 (the file: 0.2)", "--folds 4 (the file: 3)",
                 "--seed 1 (the file: 42)", "--scheme loco (the file: kfold)"):  # fmt: skip
        assert part in err.value.message
    same = SplitRequest(splits_file=path, folds=3, scheme="kfold")  # agreeing: fine
    assert resolve_splits(task, same, tmp_path)[0] == splits


def test_a_splits_file_with_a_single_class_part_is_refused(task: Task, tmp_path: Path) -> None:
    from progbench.data.splitcheck import check_splits

    splits = make_splits(task, "kfold", folds=3)
    y = dict(zip(task.manifest.frame["image_id"], task.labels, strict=True))
    f = splits.folds[0]
    moved = [i for i in f.val if y[i] == 1]  # the validation positives go to training
    edited = f.model_copy(
        update={"val": [i for i in f.val if y[i] == 0], "train": sorted(f.train + moved)}
    )
    bad = splits.model_copy(update={"folds": [edited, *splits.folds[1:]]})
    check_splits(splits, task, "s.json")  # the splits as made are fine
    with pytest.raises(SplitError, match=r"fold 0, val: a single class \(\d+ negative, 0 positive"):
        check_splits(bad, task, "s.json")


def test_a_version_1_splits_file_is_used_as_it_is_and_named(task: Task, tmp_path: Path) -> None:
    raw = make_splits(task, "kfold", folds=3).to_json()
    del raw["version"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(raw))
    splits, _, note = resolve_splits(task, SplitRequest(splits_file=path), tmp_path)
    assert splits.version == 1 and "version" not in splits.parameters()
    assert note.startswith(f"scheme kfold (from {path}); made by an older progbench (splits ")
