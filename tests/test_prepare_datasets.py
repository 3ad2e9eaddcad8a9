"""The four dataset adapters on miniature raw releases in each dataset's documented layout."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from progbench.cli import app
from progbench.data.datasets.aiforcovid import AfcOptions, prepare_aiforcovid
from progbench.data.datasets.cocross import CocrossOptions, prepare_cocross
from progbench.data.datasets.covid19_ar import CarOptions, prepare_covid19_ar
from progbench.data.datasets.stonybrook import prepare_stonybrook
from progbench.data.datasets.tcia import TciaOptions
from progbench.data.manifest import load_task
from progbench.data.prepare.boxes import expand_box
from progbench.errors import PrepareError
from tests.helpers.rawdata import nbia_series, nbia_study, write_csv, write_dicom, write_xlsx

# ------------------------------------------------------------------------------ AIforCOVID

AFC_HEADER = ["ImageFile", "Hospital", "Age", "Sex", "Prognosis", "Death"]


def _afc_release(raw: Path, table: str, folder: str, ids: list[str], header=AFC_HEADER) -> None:
    rows = []
    for k, iid in enumerate(ids):
        write_dicom(raw / folder / f"{iid}.dcm", iid, mono1=k % 3 == 0, rows=60, cols=80, seed=k)
        severe = k % 2 == 0
        rows.append(
            [iid, "ABC"[k % 3], 60 + k, "M", "SEVERE" if severe else "MILD", int(k % 4 == 0)]
        )
    write_xlsx(raw / table, header, [r[: len(header)] for r in rows])


def _afc(raw: Path) -> Path:
    _afc_release(raw, "AIforCOVID.xlsx", "imgs", [f"P_{i}" for i in range(1, 7)])
    _afc_release(raw, "AIforCOVID_r2.xlsx", "imgs_r2", ["P_1_16", "P_1_2", "P_2_7"])
    _afc_release(raw, "AIforCOVID_r3.xlsx", "imgs_r3", ["P_3_20", "P_3_5", "P_3_6"])
    return raw


def test_aiforcovid_three_releases(tmp_path: Path) -> None:
    raw = _afc(tmp_path / "AIforCOVID")
    result = prepare_aiforcovid(raw, tmp_path / "afc", AfcOptions())
    afc, afc_m = load_task(result.tasks["afc"]), load_task(result.tasks["afc-m"])
    assert result.tasks["afc"].name == "afc.yaml" and afc_m.config.name == "afc-m"
    df = afc.manifest.frame
    assert len(df) == 12 and df["image_id"].is_unique and (df["image_id"] == df["patient_id"]).all()
    assert sorted(df["center"].unique()) == ["A", "B", "C"]  # Hospital: LOCO centres
    assert df.set_index("image_id").loc["P_1_2", "path"] == "../AIforCOVID/imgs_r2/P_1_2.dcm"
    assert afc.config.positive == "SEVERE" and afc_m.config.positive == "1"
    assert afc.labels.tolist() == (df["severity"] == "SEVERE").astype(int).tolist()
    assert afc.manifest.source == afc_m.manifest.source  # one manifest, one image store
    rec = json.loads((tmp_path / "afc" / "prepare.json").read_text())
    assert rec["notes"]["releases"] == [
        "AIforCOVID.xlsx",
        "AIforCOVID_r2.xlsx",
        "AIforCOVID_r3.xlsx",
    ]
    assert "equalizeHist" in rec["notes"]["study"]["image_conversion"]
    assert "--equalize" in rec["notes"]["study"]["image_conversion"]
    assert set(rec["notes"]["choices"]) >= {"mortality", "rejects", "boxes"}
    assert rec["outputs"][0]["tasks"]["afc"]["images"] == {"positive": 7, "negative": 5}


def test_aiforcovid_image_missing_from_the_download_is_named_or_dropped(tmp_path: Path) -> None:
    raw = _afc(tmp_path / "raw")
    (raw / "imgs" / "P_4.dcm").unlink()
    with pytest.raises(PrepareError, match=r"1 missing image file") as err:
        prepare_aiforcovid(raw, tmp_path / "afc", AfcOptions())
    assert "AIforCOVID.xlsx row 5, path template" in str(err.value) and "P_4.dcm" in str(err.value)
    result = prepare_aiforcovid(raw, tmp_path / "afc", AfcOptions(drop_unmatched=True))
    assert len(load_task(result.tasks["afc"]).labels) == 11
    found = next(e for e in result.record["rules"] if e["rule"] == "find images")
    assert found["dropped_ids"] == ["P_4"] and found["detail"]["unmatched_rows"] == 1
    sources = result.record["outputs"][0]["sources"]  # three releases, each recorded
    assert sources == {
        "AIforCOVID": {"images": 5, "patients": 5},
        "AIforCOVID_r2": {"images": 3, "patients": 3},
        "AIforCOVID_r3": {"images": 3, "patients": 3},
    }


def test_aiforcovid_authors_rejects(tmp_path: Path) -> None:
    raw = _afc(tmp_path / "raw")
    result = prepare_aiforcovid(raw, tmp_path / "afc", AfcOptions(authors_rejects=True))
    assert len(load_task(result.tasks["afc"]).labels) == 10
    entry = next(e for e in result.record["rules"] if e["rule"] == "exclude ids")
    assert entry["dropped_ids"] == ["P_1_16", "P_3_20"]
    assert "P_3_391" in entry["listed_but_absent"]
    assert entry["before"]["rows"] == 12 and entry["after"]["rows"] == 10


def test_aiforcovid_lung_boxes(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _afc_release(raw, "AIforCOVID.xlsx", "imgs", ["P_1", "P_2", "P_3"])
    boxes = write_xlsx(
        raw / "box_data_AFC.xlsx",
        ["img", "dx", "sx", "all", "label", "img_path"],
        [
            ["P_1", "[10, 8, 50, 30]", "[12, 40, 50, 70]", "[10, 8, 50, 70]", "SEVERE", "x"],
            ["P_2", None, None, "[0, 0, 60, 80]", "MILD", "x"],  # < 2 lungs: the whole image
            ["P_3", "[5, 2, 20, 20]", "[5, 30, 20, 40]", "[5, 2, 20, 40]", "SEVERE", "x"],
        ],
    )
    result = prepare_aiforcovid(raw, tmp_path / "afc", AfcOptions(boxes=boxes))
    m = load_task(result.tasks["afc"]).manifest
    got = dict(zip(m.frame["image_id"], m.boxes(), strict=True))
    # P_1: x = columns 8..70, y = rows 10..50 (w 62, h 40); 5 %: 1 px a side -> 7..71, 9..51;
    # the 42 rows are padded by 22 (11 + 11) to 64, more than the image's 60: rows 0..60.
    assert got["P_1"] == (7.0, 0.0, 71.0, 60.0)
    assert got["P_2"] == (0.0, 0.0, 80.0, 60.0)
    # P_3: 38 x 15, no margin (5 % of 38 is 1 px: 0 a side); 23 more rows, 11 above would
    # leave the image, so they go below: rows 0..38, square.
    assert got["P_3"] == (2.0, 0.0, 40.0, 38.0)
    rec = result.record
    assert rec["files"]["boxes"]["sha256"] and rec["notes"]["boxes"]["margin_percent"] == 5.0


def test_expand_box_margin_square_and_clamp() -> None:
    # [min_row, min_col, max_row, max_col]; 5 %: floor(floor(side*5/100)/2) a side.
    assert expand_box((40, 60, 360, 200), 500, 400, 5, square=False) == (57, 32, 203, 368)
    # Square: 146 wide, 336 high -> 190 columns more, 95 a side; 95 > 57 shifts to the right.
    assert expand_box((40, 60, 360, 200), 500, 400, 5, square=True) == (0, 32, 336, 368)
    # An image too narrow for the square keeps its whole width.
    assert expand_box((40, 60, 360, 200), 300, 400, 5, square=True) == (0, 32, 300, 368)
    assert expand_box((0, 0, 10, 10), 10, 10, 0, square=True) == (0, 0, 10, 10)


def test_aiforcovid_box_outside_the_image_names_the_box_row(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _afc_release(raw, "AIforCOVID.xlsx", "imgs", ["P_1", "P_2"])
    boxes = write_xlsx(
        raw / "box_data_AFC.xlsx",
        ["img", "all"],
        [["P_1", "[0, 0, 256, 256]"], ["P_2", "not a box"]],
    )
    with pytest.raises(PrepareError) as err:
        prepare_aiforcovid(raw, tmp_path / "afc", AfcOptions(boxes=boxes))
    msg = str(err.value)
    assert "box_data_AFC.xlsx row 2, column 'all': box [0, 0, 256, 256] is not inside" in msg
    assert "box_data_AFC.xlsx row 3, column 'all': 'not a box' is not [min_row" in msg
    assert "image 'P_2' has no box" in msg


def test_aiforcovid_missing_mortality_column(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _afc_release(raw, "AIforCOVID.xlsx", "imgs", ["P_1", "P_2"], header=AFC_HEADER[:-1])
    with pytest.raises(PrepareError) as err:
        prepare_aiforcovid(raw, tmp_path / "afc", AfcOptions())
    msg = str(err.value)
    assert "AIforCOVID.xlsx: column 'Death' (outcome 'death') not found" in msg
    assert "--mortality" in msg and "--no-mortality" in msg and "aiforcovid.radiomica.it" in msg
    assert "progbench prepare table" in msg
    result = prepare_aiforcovid(raw, tmp_path / "afc", AfcOptions(no_mortality=True))
    assert set(result.tasks) == {"afc"}


def test_aiforcovid_mortality_column_override(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    header = [*AFC_HEADER[:-1], "Deceased"]
    _afc_release(raw, "AIforCOVID.xlsx", "imgs", ["P_1", "P_2", "P_3", "P_4"], header=header)
    result = prepare_aiforcovid(raw, tmp_path / "afc", AfcOptions(mortality="Deceased:1,0"))
    assert load_task(result.tasks["afc-m"]).labels.tolist() == [1, 0, 0, 0]


def test_aiforcovid_missing_files(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match=r"no release in .*AIforCOVID\.xlsx \+ imgs/") as err:
        prepare_aiforcovid(tmp_path, tmp_path / "afc", AfcOptions())
    assert "aiforcovid.radiomica.it" in str(err.value) and "prepare table" in str(err.value)
    raw = _afc(tmp_path / "raw")
    for f in (raw / "imgs_r2").iterdir():
        f.unlink()
    (raw / "imgs_r2").rmdir()
    with pytest.raises(PrepareError, match=r"DICOM folder of AIforCOVID_r2\.xlsx not found"):
        prepare_aiforcovid(raw, tmp_path / "afc", AfcOptions())


# ----------------------------------------------------------------------------- TCIA layouts

METADATA_COLUMNS = [
    "Series UID",
    "Collection",
    "Subject ID",
    "Study Description",
    "Study Date",
    "Series Description",
    "Modality",
    "Number of Images",
    "File Location",
]


def _tcia(raw: Path, collection: str, patients: dict[str, list[tuple]]) -> Path:
    """An NBIA download: manifest-<n>/<collection>/<pid>/<study>/<series>/1-<k>.dcm + metadata.

    Each series: (date YYYYMMDD, study description, series description, modality, view, files).
    """
    base = raw / "manifest-1594658036421"
    meta, k = [], 0
    for pid, series in patients.items():
        for n, (date, study, desc, modality, view, files) in enumerate(series, start=1):
            k += 1
            rel = Path(collection) / pid / nbia_study(pid, date, study, k) / nbia_series(n, desc, k)
            for j in range(1, files + 1):
                write_dicom(
                    base / rel / f"1-{j}.dcm", pid, date, modality, view, series_description=desc
                )
            meta.append(
                [
                    f"1.2.{k}",
                    collection,
                    pid,
                    study,
                    date,
                    desc,
                    modality,
                    files,
                    f"./{rel.as_posix()}",
                ]
            )
    write_csv(base / "metadata.csv", METADATA_COLUMNS, meta)
    return base


CAR_PATIENTS = {
    "COVID-19-AR-16406498": [
        ("20120222", "CT CHEST W CONTRAST", "MPR CORONALS", "CT", None, 3),
        ("20120220", "XR CHEST PA AND LATERAL", "PA", "CR", "PA", 1),
        ("20120220", "XR CHEST PA AND LATERAL", "LATERAL", "CR", "LL", 1),
        ("20120224", "XR CHEST AP PORTABLE", "AP", "DX", "AP", 1),
    ],
    "COVID-19-AR-16406502": [
        ("20120301", "XR CHEST AP PORTABLE", "AP", "CR", "", 1),  # view only in the description
        ("20120305", "XR CHEST AP PORTABLE", "AP", "CR", "AP", 1),
    ],
    "COVID-19-AR-16406503": [("20120101", "CT CHEST", "AXIAL", "CT", None, 2)],  # CT only
    "COVID-19-AR-16406504": [("20120101", "XR CHEST AP ONLY", "AP", "CR", "AP", 1)],
}
CAR_CLINICAL = "COVID_19_AR_ClinicalCorrelates_July202020.xlsx"


def _car(raw: Path, icu=("Y", "N", "Y", None)) -> Path:
    _tcia(raw, "COVID-19-AR", CAR_PATIENTS)
    rows = [[pid, 50, "M", "Y", v] for pid, v in zip(CAR_PATIENTS, icu, strict=True)]
    header = ["PATIENT_ID", "AGE", "SEX", "COVID TEST POSITIVE", "ICU Admit"]
    write_xlsx(raw / CAR_CLINICAL, header, rows, title="COVID-19-AR Clinical Correlates")
    return raw


@pytest.mark.parametrize("metadata", [True, False])
def test_covid19_ar_one_frontal_radiograph_per_patient(tmp_path: Path, metadata: bool) -> None:
    raw = _car(tmp_path / "raw")
    if not metadata:
        (raw / "manifest-1594658036421" / "metadata.csv").unlink()
    result = prepare_covid19_ar(raw, tmp_path / "car", CarOptions())
    task = load_task(result.tasks["car"])
    df = task.manifest.frame
    # 498: the earliest frontal is the PA of 02-20 (not the lateral, not the CT); 502: the AP of
    # 03-01, whose view is only in its SeriesDescription; 503 (CT only) and 504 (no ICU) drop.
    assert df["patient_id"].tolist() == ["COVID-19-AR-16406498", "COVID-19-AR-16406502"]
    assert df["view"].tolist() == ["PA", "AP"] and df["study_date"].tolist() == [
        "2012-02-20",
        "2012-03-01",
    ]
    assert "XR CHEST PA AND LATERAL" in df["path"].iloc[0] and "-PA-" in df["path"].iloc[0]
    assert task.config.name == "car" and task.config.positive == "Y"
    assert task.labels.tolist() == [1, 0]
    rules = {e["rule"]: e for e in result.record["rules"]}
    assert rules["drop rows with a missing outcome"]["dropped_ids"] == ["COVID-19-AR-16406504"]
    assert rules["keep modalities"]["after"]["patients"] == 2  # 503 had only CT
    assert rules["one image per patient"]["before"]["images"] == 4
    assert result.record["notes"]["icu"]["positive"] == "Y"
    assert ("metadata" in result.record["files"]) == metadata


def test_covid19_ar_unknown_icu_coding(tmp_path: Path) -> None:
    raw = _car(tmp_path / "raw", icu=("Admitted", "Home", "Home", "Admitted"))
    with pytest.raises(PrepareError, match=r"'ICU Admit' holds \['Admitted', 'Home'\]") as err:
        prepare_covid19_ar(raw, tmp_path / "car", CarOptions())
    assert "--icu" in (err.value.hint or "")
    opts = CarOptions(icu="ICU Admit:Admitted,Home")
    task = load_task(prepare_covid19_ar(raw, tmp_path / "car", opts).tasks["car"])
    assert task.labels.tolist() == [1, 0, 1]  # 498, 502, 504 (503 has only CT)


def test_covid19_ar_missing_clinical_file(tmp_path: Path) -> None:
    _tcia(tmp_path / "raw", "COVID-19-AR", CAR_PATIENTS)
    with pytest.raises(PrepareError) as err:
        prepare_covid19_ar(tmp_path / "raw", tmp_path / "car", CarOptions())
    msg = str(err.value)
    assert CAR_CLINICAL in msg and "Cancer Imaging Archive" in msg and "--clinical" in msg


SBU_CLINICAL = "deidentified_overlap_tcia.csv.cleaned.csv_20210806.csv"
SBU_PATIENTS = {
    "A670621": [
        ("19001224", "CHEST AP VIEWONLY", "AP", "CR", "AP", 1),
        ("19001222", "CHEST AP PORT", "AP", "DX", "AP", 1),
        ("19001223", "CT CHEST", "AXIAL", "CT", None, 2),
    ],
    "A408459": [
        ("19010102", "CHEST ROUTINE PA AP AND LATERAL", "PA", "CR", "PA", 1),
        ("19010102", "CHEST ROUTINE PA AP AND LATERAL", "LAT", "CR", "LATERAL", 1),
        ("19010105", "CHEST AP PORTABLE", "AP", "CR", "AP", 1),
    ],
    "A111111": [("19000101", "CHEST AP PORT", "AP", "CR", "AP", 1)],
}


def _sbu(raw: Path, extra_patient: bool = False) -> Path:
    _tcia(raw, "COVID-19-NY-SBU", SBU_PATIENTS)
    header = ["to_patient_id", "covid19_statuses", "age.splits", "is_icu", "last.status"]
    rows = [
        ["A670621", "positive", "(59,74]", True, "deceased"],
        ["A408459", "positive", "[18,59]", False, "discharged"],
        ["A111111", "positive", "(74,90]", False, ""],  # no outcome: dropped
    ]
    if extra_patient:
        rows.append(["A999999", "positive", "[18,59]", False, "discharged"])  # no images
    write_csv(raw / SBU_CLINICAL, header, rows)
    return raw


def test_stonybrook_ny_all_and_ny_small(tmp_path: Path) -> None:
    raw = _sbu(tmp_path / "raw")
    result = prepare_stonybrook(raw, tmp_path / "ny", TciaOptions())
    assert set(result.manifests) == {"manifest.csv", "manifest-ny-small.csv"}
    ny_all, small = load_task(result.tasks["ny-all"]), load_task(result.tasks["ny-small"])
    assert ny_all.manifest.source.name == "manifest.csv"
    assert small.manifest.source.name == "manifest-ny-small.csv"
    a = ny_all.manifest.frame
    # Every frontal CR/DX of the two labelled patients: 2 + 2 (the lateral and the CT drop).
    assert sorted(a["patient_id"].value_counts().items()) == [("A408459", 2), ("A670621", 2)]
    assert (a["view"] != "LATERAL").all()
    s = small.manifest.frame.set_index("patient_id")
    assert s.loc["A670621", "study_date"] == "1900-12-22" and s.loc["A408459", "view"] == "PA"
    assert set(s["image_id"]) <= set(a["image_id"])  # the same ids in both manifests
    assert ny_all.config.positive == "deceased" and small.labels.tolist() == [1, 0]
    assert ny_all.labels.sum() == 2  # the label is per patient, repeated on each image


def test_stonybrook_unmatched_patient_is_an_error_unless_dropped(tmp_path: Path) -> None:
    raw = _sbu(tmp_path / "raw", extra_patient=True)
    with pytest.raises(PrepareError) as err:
        prepare_stonybrook(raw, tmp_path / "ny", TciaOptions())
    assert f"{SBU_CLINICAL} line 5, column 'to_patient_id': no image file matches 'A999999'" in str(
        err.value
    )
    result = prepare_stonybrook(raw, tmp_path / "ny", TciaOptions(drop_unmatched=True))
    assert result.record["outputs"][1]["patients"] == 2


def test_stonybrook_missing_column_says_where_to_download(tmp_path: Path) -> None:
    raw = _sbu(tmp_path / "raw")
    df = pd.read_csv(raw / SBU_CLINICAL).rename(columns={"last.status": "status"})
    df.to_csv(raw / SBU_CLINICAL, index=False)
    with pytest.raises(PrepareError) as err:
        prepare_stonybrook(raw, tmp_path / "ny", TciaOptions())
    msg = str(err.value)
    assert "column 'last.status' (outcome 'status') not found" in msg
    assert "COVID-19-NY-SBU" in msg and "prepare table" in msg


# --------------------------------------------------------------------------------- CoCross


def _cocross(raw: Path, dicom: bool = False) -> Path:
    from PIL import Image

    files = {"P001": ["P001", "P001_2"], "P002": ["P002"], "P003": ["P003_1", "P003_2", "P003_3"]}
    for pid, stems in files.items():
        for k, stem in enumerate(stems):
            if dicom:
                write_dicom(raw / "imgs" / f"{stem}.dcm", pid, seed=k)
            else:
                (raw / "imgs").mkdir(parents=True, exist_ok=True)
                Image.new("L", (20, 16), 40 * k).save(raw / "imgs" / f"{stem}.jpeg")
    rows = [["P001", 70, "Death"], ["P002", 55, "Alive"], ["P003", 61, "Alive"]]
    write_xlsx(raw / "CoCross_clinical.xlsx", ["ID", "Age", "ICU Outcome"], rows)
    return raw


@pytest.mark.parametrize("dicom", [False, True])
def test_cocross_images_grouped_by_patient(tmp_path: Path, dicom: bool) -> None:
    raw = _cocross(tmp_path / "raw", dicom)
    result = prepare_cocross(raw, tmp_path / "cc", CocrossOptions())
    task = load_task(result.tasks["cc"])
    df = task.manifest.frame
    assert df["patient_id"].value_counts().to_dict() == {"P003": 3, "P001": 2, "P002": 1}
    assert task.config.positive == "Death" and task.labels.sum() == 2  # P001's two images
    assert result.record["notes"]["matching"] == ("dicom" if dicom else "stem")


def test_cocross_missing_images_and_ambiguous_tables(tmp_path: Path) -> None:
    raw = _cocross(tmp_path / "raw")
    with pytest.raises(PrepareError, match=r"image folder not found .*elsewhere/"):
        prepare_cocross(raw, tmp_path / "cc", CocrossOptions(images=raw / "elsewhere"))
    write_csv(raw / "other.csv", ["a"], [[1]])
    with pytest.raises(PrepareError, match="holds 2 tables"):
        prepare_cocross(raw, tmp_path / "cc", CocrossOptions())


# ------------------------------------------------------------------------------------- CLI


def test_cli_dataset_commands(tmp_path: Path) -> None:
    raw = _afc(tmp_path / "raw")
    runner = CliRunner()
    ok = runner.invoke(app, ["prepare", "aiforcovid", str(raw), "--out", str(tmp_path / "afc")])
    assert ok.exit_code == 0, ok.output
    assert "afc-m" in ok.output and (tmp_path / "afc" / "tasks" / "afc-m.yaml").is_file()
    again = runner.invoke(app, ["prepare", "aiforcovid", str(raw), "--out", str(tmp_path / "afc")])
    assert again.exit_code != 0 and "exists" in str(again.exception)
    bad = runner.invoke(app, ["prepare", "stonybrook", str(raw), "--out", str(tmp_path / "ny")])
    assert bad.exit_code != 0 and SBU_CLINICAL in str(bad.exception)
