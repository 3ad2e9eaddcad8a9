"""Manifest and task validation: every error names file, row, column and value."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from progbench.data.manifest import load_manifest, load_task
from progbench.errors import ConfigError, ManifestError


def _rewrite(manifest: Path, edit) -> Path:
    df = pd.read_csv(manifest, dtype=str)
    df = edit(df)
    df.to_csv(manifest, index=False)
    return manifest


def test_valid_cohort_loads(cohort: Path) -> None:
    task = load_task(cohort.parent / "tasks" / "severity.yaml")
    assert len(task.labels) == len(task.manifest.frame)
    assert set(task.labels) == {0, 1}


def test_task_from_options_equals_yaml(cohort: Path) -> None:
    a = load_task(cohort.parent / "tasks" / "severity.yaml")
    b = load_task(manifest=cohort, outcome="severity", positive="1")
    assert (a.labels == b.labels).all()


def test_duplicate_image_id(cohort: Path) -> None:
    def dup(df):
        df.loc[5, "image_id"] = df.loc[4, "image_id"]
        return df

    _rewrite(cohort, dup)
    with pytest.raises(ManifestError, match=r"image_id.*appears more than once.*line 6.*line 7"):
        load_manifest(cohort)


def test_missing_file_names_row(cohort: Path) -> None:
    def missing(df):
        df.loc[2, "path"] = "images/nope.png"
        return df

    _rewrite(cohort, missing)
    with pytest.raises(ManifestError, match=r"line 4, column 'path': file not found: .*nope.png"):
        load_manifest(cohort)


def test_unreadable_file(cohort: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import progbench.data.manifest as m

    target = str(cohort.parent / "images" / "P001-0.png")
    real = m.os.access
    monkeypatch.setattr(m.os, "access", lambda p, mode: str(p) != target and real(p, mode))
    with pytest.raises(ManifestError, match=r"column 'path': file not readable: .*P001-0.png"):
        load_manifest(cohort)


def test_nan_outcome(cohort: Path) -> None:
    def nan(df):
        df.loc[3, "severity"] = None
        return df

    _rewrite(cohort, nan)
    with pytest.raises(ManifestError, match=r"line 5, column 'severity': missing value"):
        load_task(manifest=cohort, outcome="severity", positive="1")


def test_unknown_outcome_value_with_declared_negatives(cohort: Path) -> None:
    def odd(df):
        df.loc[7, "severity"] = "maybe"
        return df

    _rewrite(cohort, odd)
    with pytest.raises(ManifestError, match="more than two values"):
        load_task(manifest=cohort, outcome="severity", positive="1")
    with pytest.raises(ManifestError, match=r"line 9, column 'severity': unknown value 'maybe'"):
        load_task(manifest=cohort, outcome="severity", positive="1", negative=["0"])


def test_positive_value_never_seen(cohort: Path) -> None:
    with pytest.raises(ManifestError, match="positive value 'yes' never occurs"):
        load_task(manifest=cohort, outcome="severity", positive="yes")


def test_numeric_outcomes_compare_as_text(cohort: Path, tmp_path: Path) -> None:
    df = pd.read_csv(cohort)
    df["severity"] = df["severity"].astype(float)  # 1.0 / 0.0 in a parquet file
    pq = cohort.parent / "manifest.parquet"
    df.to_parquet(pq)
    task = load_task(manifest=pq, outcome="severity", positive="1")
    assert task.labels.sum() == (df["severity"] == 1).sum()


def test_patient_in_two_centres(cohort: Path) -> None:
    def move(df):
        p0 = df.index[df["patient_id"] == "P000"]
        df.loc[p0[-1], "center"] = "C1"
        return df

    _rewrite(cohort, move)
    with pytest.raises(ManifestError, match=r"patient 'P000' appears in centres \['C0', 'C1'\]"):
        load_manifest(cohort)


def test_missing_column(cohort: Path) -> None:
    _rewrite(cohort, lambda df: df.drop(columns=["patient_id"]))
    with pytest.raises(ManifestError, match=r"missing column.*patient_id"):
        load_manifest(cohort)


def test_missing_outcome_column(cohort: Path) -> None:
    with pytest.raises(ManifestError, match="outcome column 'mortality' not found"):
        load_task(manifest=cohort, outcome="mortality", positive="1")


def test_empty_manifest(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text("image_id,path,patient_id,center,severity\n")
    with pytest.raises(ManifestError, match="is empty"):
        load_manifest(p)


def test_every_problem_is_listed_at_once(cohort: Path) -> None:
    def many(df):
        df.loc[1, "path"] = "images/a.png"
        df.loc[2, "path"] = "images/b.png"
        df.loc[3, "patient_id"] = ""
        return df

    _rewrite(cohort, many)
    with pytest.raises(ManifestError) as info:
        load_manifest(cohort)
    msg = str(info.value)
    assert (
        "3 problem(s)" in msg and "a.png" in msg and "b.png" in msg and "'patient_id': empty" in msg
    )


def test_manifest_passed_as_task_is_explained(cohort: Path) -> None:
    with pytest.raises(ConfigError, match="is a manifest, not a task"):
        load_task(cohort)


def test_bad_task_yaml_key(cohort: Path) -> None:
    bad = cohort.parent / "tasks" / "bad.yaml"
    bad.write_text("name: x\nmanifest: ../manifest.csv\noutcome: severity\npositve: 1\n")
    with pytest.raises(ConfigError, match="positve"):
        load_task(bad)


def test_foreign_manifest_with_absolute_paths_and_extra_columns(
    tmp_path: Path, cohort: Path
) -> None:
    """A manifest progbench did not write: absolute paths, other column order, extra columns."""
    df = pd.read_csv(cohort)
    df["path"] = [str((cohort.parent / p).resolve()) for p in df["path"]]
    df["scanner"] = "X"
    df = df[["severity", "scanner", "center", "patient_id", "path", "image_id", "death"]]
    other = tmp_path / "elsewhere" / "table.csv"
    other.parent.mkdir()
    df.to_csv(other, index=False)
    task = load_task(manifest=other, outcome="death", positive="1")
    assert task.labels.sum() == df["death"].sum()


def test_a_patient_with_two_outcome_labels_is_named_with_its_rows(
    tmp_path: Path, cohort: Path
) -> None:
    df = pd.read_csv(cohort)
    multi = df["patient_id"].value_counts()
    patient = multi.index[multi > 1][0]
    rows = df.index[df["patient_id"] == patient]
    df.loc[rows[0], "severity"] = 1 - df.loc[rows[1], "severity"]
    df.to_csv(cohort, index=False)
    with pytest.raises(ManifestError) as err:
        load_task(manifest=cohort, outcome="severity", positive="1")
    assert repr(patient) in err.value.message
    assert f"line {rows[0] + 2}" in err.value.message and f"line {rows[1] + 2}" in err.value.message
    assert "per_image_labels" in (err.value.hint or "")
    # Declared per image, the same table is a valid task.
    task_yaml = tmp_path / "task.yaml"
    task_yaml.write_text(
        f"name: t\nmanifest: {cohort}\noutcome: severity\npositive: 1\nper_image_labels: true\n"
    )
    assert len(load_task(task_yaml).labels) == len(df)


@pytest.mark.parametrize("missing", ["gone.csv", "sub"])
def test_a_task_whose_manifest_is_missing_names_the_yaml_and_its_key(
    tmp_path: Path, missing: str
) -> None:
    (tmp_path / "sub").mkdir()
    task = tmp_path / "tasks" / "severity.yaml"
    task.parent.mkdir()
    task.write_text(f"name: s\nmanifest: ../{missing}\noutcome: severity\npositive: severe\n")
    with pytest.raises(ConfigError) as err:
        load_task(task)
    assert str(task) in err.value.message and "`manifest` key" in err.value.message
    assert str((tmp_path / missing).resolve()) in err.value.message
    assert ".csv" not in (err.value.hint or "") and "manifest:" in (err.value.hint or "")
