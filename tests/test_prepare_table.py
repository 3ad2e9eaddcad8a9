"""`progbench prepare table`: any clinical table and image folder, through a column map.

The cohorts here use column names and folder layouts progbench did not choose; every bad-input
case is checked by name, each naming the clinical table's row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from progbench.cli import app
from progbench.data.manifest import load_task
from progbench.data.prepare import prepare
from progbench.data.prepare.options import TableOptions, table_spec
from progbench.errors import ConfigError, PrepareError
from progbench.provenance import file_digest
from tests.helpers.rawdata import write_csv, write_dicom, write_xlsx

HEADER = ["Study Ref", "MRN", "Site", "Outcome (30d)", "File"]


def _hospital_export(root: Path, n: int = 8) -> Path:
    """A CSV export: one row per radiograph, files under scans/<site>/<MRN>/, own column names."""
    rows = []
    for i in range(n):
        mrn, site = f"00{i // 2}", ["North", "South"][(i // 2) % 2]
        rel = f"scans/{site.lower()}/{mrn}/img{i}.dcm"
        write_dicom(root / rel, mrn, study_date=f"2020030{1 + i % 2}", seed=i)
        rows.append([f"S{i:02d}", mrn, site, "Dead" if (i // 2) % 3 == 0 else "Alive", rel])
    return write_csv(root / "export_2021.csv", HEADER, rows)


def _options(**kw) -> TableOptions:
    columns = {"id": "Study Ref", "patient": "MRN", "center": "Site", "path": "File"}
    columns.update(kw.pop("columns", {}))
    return TableOptions(columns=columns, outcomes=["death=Outcome (30d):Dead,Alive"], **kw)


def _run(table: Path, images: Path, out: Path, **kw):
    return prepare(table_spec(table, images, _options(**kw)), out)


def test_csv_export_becomes_a_task_that_loads(tmp_path: Path) -> None:
    table = _hospital_export(tmp_path / "raw")
    result = _run(table, tmp_path / "raw", tmp_path / "study")
    df = pd.read_csv(tmp_path / "study" / "manifest.csv", dtype=str)
    assert list(df.columns[:5]) == ["image_id", "path", "patient_id", "center", "death"]
    assert df["image_id"].tolist() == [f"S{i:02d}" for i in range(8)]
    assert df.loc[0, "path"] == "../raw/scans/north/000/img0.dcm"  # in place, relative to DIR
    assert df["study_date"].tolist()[:2] == ["2020-03-01", "2020-03-02"]  # from StudyDate
    task = load_task(tmp_path / "study" / "tasks" / "death.yaml")
    assert task.config.positive == "Dead" and task.config.negative == ["Alive"]
    assert task.labels.tolist() == [int((i // 2) % 3 == 0) for i in range(8)]
    rec = json.loads((tmp_path / "study" / "prepare.json").read_text())
    assert rec["sources"][0]["sha256"] == file_digest(table)
    assert rec["spec"]["columns"]["outcomes"]["death"]["column"] == "Outcome (30d)"
    assert rec["outputs"][0]["tasks"]["death"]["patients"] == {"positive": 2, "negative": 2}
    assert rec == result.record


def test_xlsx_with_title_row_dicom_matching_and_rules(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    # Patient folders hold a CT series, a lateral and two frontal studies on different days.
    for k, pid in enumerate(["A1", "A2", "A3"]):
        base = raw / "dicom" / pid
        write_dicom(base / "ct" / "1.dcm", pid, "20200101", modality="CT", view=None)
        write_dicom(base / "s2" / "1.dcm", pid, "20200105", view="LATERAL")
        write_dicom(base / "s3" / "1.dcm", pid, f"2020011{k}", modality="DX", view="PA")
        write_dicom(base / "s4" / "1.dcm", pid, "20200103", view="AP", mono1=True)
    write_dicom(raw / "dicom" / "X9" / "s" / "1.dcm", "X9")  # a patient not in the table
    table = write_xlsx(
        raw / "clinical.xlsx",
        ["Patient Code", "ICU?"],
        [["A1", "yes"], ["A2", "no"], ["A3", None], ["A4", "yes"]],
        title="Clinical correlates, July 2020",
    )
    opts = TableOptions(
        header_row=1,
        dicom_match="PatientID=Patient Code",
        outcomes=["icu=ICU?:yes,no"],
        rules={"modalities": ["CR", "DX"], "views": ["PA", "AP"], "unmatched": "drop"},
        one_per_patient="earliest",
    )
    result = prepare(table_spec(table, raw / "dicom", opts), tmp_path / "study")
    df = pd.read_csv(result.manifests["manifest.csv"], dtype=str)
    # A3 has no outcome (dropped), A4 no image (unmatched, dropped); earliest frontal = s4.
    assert df["patient_id"].tolist() == ["A1", "A2"]
    assert df["image_id"].tolist() == ["A1/s4/1", "A2/s4/1"]
    assert df["view"].tolist() == ["AP", "AP"] and df["center"].tolist() == ["all", "all"]
    rules = {e["rule"]: e for e in result.record["rules"]}
    assert rules["drop rows with a missing outcome"]["dropped_ids"] == ["A3"]
    assert rules["find images"]["dropped_ids"] == ["A4"]
    # X9 is in no row: unused; A3's 4 files belong to a row dropped (no outcome) before.
    assert rules["find images"]["detail"]["unused_files"] == 1
    assert rules["find images"]["detail"]["files_of_dropped_rows"] == 4
    assert result.record["scan"]["unused_files"] == 1
    assert rules["keep modalities"]["before"]["images"] == 8
    assert rules["keep modalities"]["after"]["images"] == 6
    assert rules["keep views"]["after"]["images"] == 4
    assert rules["one image per patient"]["after"] == {"rows": 2, "patients": 2, "images": 2}
    assert load_task(result.tasks["icu"]).labels.tolist() == [1, 0]


def test_path_template_from_two_columns_and_box_columns(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    rows = []
    for i in range(4):
        write_dicom(raw / f"site{i % 2}" / f"p{i}.dcm", f"p{i}", seed=i)
        rows.append([f"p{i}", i % 2, i % 2, 1, 2, 30, 38])
    table = write_xlsx(raw / "t.xlsx", ["pid", "site", "y", "bx", "by", "bx1", "by1"], rows)
    opts = TableOptions(
        columns={"id": "pid", "center": "site", "path_template": "site{site}/{pid}.dcm"},
        outcomes=["y=y:1,0"],
        box_columns=["bx", "by", "bx1", "by1"],
        absolute_paths=True,
    )
    result = prepare(table_spec(table, raw, opts), tmp_path / "study")
    task = load_task(result.tasks["y"])
    assert task.manifest.has_boxes and task.manifest.boxes()[0] == (1.0, 2.0, 30.0, 38.0)
    assert Path(task.manifest.frame["path"].iloc[0]).is_absolute()


def test_stem_matching_gives_a_patient_all_its_files(tmp_path: Path) -> None:
    from PIL import Image

    raw = tmp_path / "raw"
    (raw / "png").mkdir(parents=True)
    for name in ("P1", "P1_2", "P1-3", "P2", "P10_1"):
        Image.new("L", (16, 12), 128).save(raw / "png" / f"{name}.png")
    table = write_csv(raw / "t.csv", ["code", "out"], [["P1", "a"], ["P2", "b"], ["P10", "a"]])
    opts = TableOptions(columns={"stem_match": "code"}, outcomes=["o=out:a,b"])
    result = prepare(table_spec(table, raw / "png", opts), tmp_path / "study")
    df = pd.read_csv(result.manifests["manifest.csv"], dtype=str)
    assert df.groupby("patient_id")["image_id"].apply(sorted).to_dict() == {
        "P1": ["P1", "P1-3", "P1_2"],
        "P10": ["P10_1"],
        "P2": ["P2"],
    }


def test_map_yaml_gives_the_same_study_as_options(tmp_path: Path) -> None:
    table = _hospital_export(tmp_path / "raw")
    map_file = tmp_path / "map.yaml"
    map_file.write_text(
        yaml.safe_dump(
            {
                "columns": {
                    "id": "Study Ref",
                    "patient": "MRN",
                    "center": "Site",
                    "path": "File",
                    "outcomes": {
                        "death": {
                            "column": "Outcome (30d)",
                            "positive": "Dead",
                            "negative": ["Alive"],
                        }
                    },
                }
            }
        )
    )
    a = table_spec(table, tmp_path / "raw", _options())
    b = table_spec(table, tmp_path / "raw", TableOptions(map_file=map_file))
    assert a == b
    map_file.write_text(map_file.read_text() + "rulez: {}\n")
    with pytest.raises(ConfigError, match="rulez"):
        table_spec(table, tmp_path / "raw", TableOptions(map_file=map_file))


def test_parquet_table(tmp_path: Path) -> None:
    table = _hospital_export(tmp_path / "raw")
    pq = table.with_suffix(".parquet")
    pd.read_csv(table, dtype=str).to_parquet(pq)
    result = _run(pq, tmp_path / "raw", tmp_path / "study")
    assert len(load_task(result.tasks["death"]).labels) == 8


def test_refuses_an_existing_manifest_unless_force(tmp_path: Path) -> None:
    table = _hospital_export(tmp_path / "raw")
    _run(table, tmp_path / "raw", tmp_path / "study")
    with pytest.raises(PrepareError, match=r"manifest\.csv exists"):
        _run(table, tmp_path / "raw", tmp_path / "study")
    spec = table_spec(table, tmp_path / "raw", _options())
    prepare(spec, tmp_path / "study", force=True)


# ------------------------------------------------------------------- bad input, by name


def _bad(tmp_path: Path, edit) -> str:
    """Edit the export's rows (a DataFrame), run prepare, return the error; nothing written."""
    table = _hospital_export(tmp_path / "raw")
    df = pd.read_csv(table, dtype=str)
    edit(df, tmp_path / "raw")
    df.to_csv(table, index=False)
    with pytest.raises(PrepareError) as err:
        _run(table, tmp_path / "raw", tmp_path / "study")
    assert not (tmp_path / "study").exists()
    return str(err.value)


def test_missing_image_names_its_row(tmp_path: Path) -> None:
    def remove(df, raw):
        (raw / df.loc[3, "File"]).unlink()

    msg = _bad(tmp_path, remove)
    assert "export_2021.csv line 5, column 'File': file not found: " in msg
    assert "scans/south/001/img3.dcm" in msg and "path = column 'File'" in msg


def test_unmatched_row_names_its_row(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_dicom(raw / "d" / "a.dcm", "A")
    table = write_csv(raw / "t.csv", ["id", "y"], [["A", "1"], ["B", "0"]])
    opts = TableOptions(dicom_match="PatientID=id", outcomes=["y=y:1,0"])
    with pytest.raises(
        PrepareError, match=r"t\.csv line 3, column 'id': no image file matches 'B'"
    ):
        prepare(table_spec(table, raw / "d", opts), tmp_path / "study")


def test_unreadable_file_names_its_row(tmp_path: Path) -> None:
    def corrupt(df, raw):
        (raw / df.loc[5, "File"]).write_bytes(b"\x00not dicom" * 20)

    msg = _bad(tmp_path, corrupt)
    assert "export_2021.csv line 7, column 'File': cannot read DICOM header" in msg


def test_patient_in_two_centres(tmp_path: Path) -> None:
    def move(df, raw):
        df.loc[1, "Site"] = "South"  # patient 000's second image

    msg = _bad(tmp_path, move)
    assert "patient '000' appears in centres ['North', 'South']" in msg
    assert "(export_2021.csv line 2, export_2021.csv line 3)" in msg


def test_unknown_outcome_value(tmp_path: Path) -> None:
    def odd(df, raw):
        df.loc[6, "Outcome (30d)"] = "Transferred"

    msg = _bad(tmp_path, odd)
    assert (
        "export_2021.csv line 8, column 'Outcome (30d)': value 'Transferred' is not a declared "
        "value of outcome 'death'"
    ) in msg


def test_mixed_labels_per_patient(tmp_path: Path) -> None:
    def mix(df, raw):
        df.loc[0, "Outcome (30d)"] = "Alive"  # patient 000: Alive and Dead

    msg = _bad(tmp_path, mix)
    assert "patient '000' has images with different labels" in msg
    assert "export_2021.csv line 2 ('Alive'), export_2021.csv line 3 ('Dead')" in msg


def test_missing_column(tmp_path: Path) -> None:
    def rename(df, raw):
        df.columns = ["Centre" if c == "Site" else c for c in df.columns]

    msg = _bad(tmp_path, rename)
    assert "column 'Site' (centre) not found" in msg and "'Centre'" in msg


def test_missing_table_file(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match=r"clinical table not found: .*nope\.csv"):
        _run(tmp_path / "nope.csv", tmp_path, tmp_path / "study")


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    def many(df, raw):
        (raw / df.loc[2, "File"]).unlink()
        df.loc[4, "Outcome (30d)"] = "?"
        df.loc[1, "Site"] = "South"
        (raw / df.loc[7, "File"]).write_bytes(b"junk" * 50)

    msg = _bad(tmp_path, many)
    assert "4 problem(s)" in msg
    assert "line 4, column 'File': file not found" in msg  # the path column names its row
    assert "line 6, column 'Outcome (30d)'" in msg
    assert "appears in centres" in msg and "line 9, column 'File': cannot read" in msg
    assert "Manifest columns come from: image_id = 'Study Ref'" in msg


# ------------------------------------------------------------------------------ CLI


def test_cli_table_writes_the_study(tmp_path: Path) -> None:
    table = _hospital_export(tmp_path / "raw")
    args = ["prepare", "table", str(table), str(tmp_path / "raw"), "--out", str(tmp_path / "s")]
    args += ["--id", "Study Ref", "--patient", "MRN", "--center", "Site", "--path", "File"]
    args += ["--outcome", "death=Outcome (30d):Dead,Alive", "--one-per-patient", "first"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "one image per patient" in result.output and "death" in result.output
    assert len(load_task(tmp_path / "s" / "tasks" / "death.yaml").labels) == 4


def test_cli_reports_problems_and_exits_nonzero(tmp_path: Path) -> None:
    table = _hospital_export(tmp_path / "raw")
    args = ["prepare", "table", str(table), str(tmp_path / "raw"), "--out", str(tmp_path / "s")]
    args += ["--id", "Study Ref", "--path", "File", "--outcome", "death=Outcome (30d):Dead"]
    args += ["--center", "Hospital"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert isinstance(result.exception, PrepareError)
    assert "column 'Hospital' (centre) not found" in str(result.exception)


def test_relative_folders_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hospital_export(tmp_path / "raw")
    monkeypatch.chdir(tmp_path)
    args = ["prepare", "table", "raw/export_2021.csv", "raw", "--out", "study", "--id", "Study Ref"]
    args += ["--patient", "MRN", "--path", "File", "--outcome", "death=Outcome (30d):Dead,Alive"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(tmp_path / "study" / "manifest.csv", dtype=str)
    assert df.loc[0, "path"] == "../raw/scans/north/000/img0.dcm"
    assert len(load_task(tmp_path / "study" / "tasks" / "death.yaml").labels) == 8


def test_path_template_naming_an_unknown_column(tmp_path: Path) -> None:
    table = _hospital_export(tmp_path / "raw")
    columns = {"path": None, "path_template": "scans/{Sitee}/{MRN}.dcm"}
    with pytest.raises(PrepareError, match=r"column 'Sitee' \(path template\) not found"):
        _run(table, tmp_path / "raw", tmp_path / "study", columns=columns)
    with pytest.raises(ConfigError, match="malformed"):
        _run(
            table,
            tmp_path / "raw",
            tmp_path / "study",
            columns={"path": None, "path_template": "{MRN"},
        )
