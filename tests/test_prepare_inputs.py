"""`prepare table` on the inputs public releases come as (issue 21 §1): a latin-1 table, blank
outcomes, rows whose image is not in the download, several images per patient, ids that carry
the file's extension, mixed .jpg/.png, and several releases merged into one study.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from progbench.cli import app
from progbench.data.manifest import load_task
from progbench.data.prepare import PrepareSpec, prepare
from progbench.data.prepare.options import TableOptions, sources_spec, table_spec
from progbench.data.prepare.problems import SHOWN_PER_KIND, problems_file
from progbench.errors import ConfigError, PrepareError

HEADER = "patient,file,site,outcome\n"


def _png(path: Path, shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (12, 10), color=shade % 256).save(path)


def _release(
    root: Path,
    patients: int = 4,
    missing: tuple[str, ...] = (),
    encoding: str = "utf-8",
    exts: tuple[str, ...] = (".png",),
    prefix: str = "P",
) -> Path:
    """A release: images/<patient>_<k><ext> (2 per patient), table.csv naming each file."""
    lines = []
    for p in range(patients):
        for k in range(2):
            name = f"{prefix}{p}_{k}{exts[(p + k) % len(exts)]}"
            if name not in missing:
                _png(root / "images" / name, 10 * p + k)
            site = "Zürich" if p % 2 else "Genève"
            lines.append(f"{prefix}{p},{name},{site},{'Dead' if p % 3 == 0 else 'Alive'}\n")
    table = root / "table.csv"
    table.write_bytes((HEADER + "".join(lines)).encode(encoding))
    return table


def _opts(**kw) -> TableOptions:
    columns = {"id": "file", "patient": "patient", "center": "site", "path": "file"}
    columns.update(kw.pop("columns", {}))
    return TableOptions(columns=columns, outcomes=["death=outcome:Dead,Alive"], **kw)


def _rules(record: dict) -> dict[str, dict]:
    return {e["rule"]: e for e in record["rules"]}


# ------------------------------------------------------------------------------ encoding


def test_a_latin1_table_is_read_and_its_encoding_recorded(tmp_path: Path) -> None:
    table = _release(tmp_path / "r", encoding="latin-1")
    result = prepare(table_spec(table, tmp_path / "r" / "images", _opts()), tmp_path / "s")
    df = pd.read_csv(result.manifests["manifest.csv"], dtype=str)
    assert set(df["center"]) == {"Zürich", "Genève"}
    assert result.record["sources"][0]["encoding"] == "cp1252"  # utf-8 failed, cp1252 read it


def test_a_utf8_table_with_a_bom_keeps_its_first_column_name(tmp_path: Path) -> None:
    table = _release(tmp_path / "r", encoding="utf-8-sig")
    result = prepare(table_spec(table, tmp_path / "r" / "images", _opts()), tmp_path / "s")
    assert result.record["sources"][0]["encoding"] == "utf-8-sig"
    assert len(load_task(result.tasks["death"]).labels) == 8


def test_a_semicolon_table_is_sniffed_and_its_delimiter_recorded(tmp_path: Path) -> None:
    """European exports write ';' (a comma is the decimal separator): read without an option."""
    table = _release(tmp_path / "r", encoding="cp1252")
    text = table.read_bytes().decode("cp1252").replace(",", ";")
    table.write_bytes(text.encode("cp1252"))
    result = prepare(table_spec(table, tmp_path / "r" / "images", _opts()), tmp_path / "s")
    assert result.record["sources"][0]["delimiter"] == ";"
    assert len(load_task(result.tasks["death"]).labels) == 8
    ragged = text.replace("Alive\n", "Alive;\n", 1)  # a row with a field too many
    table.write_bytes(ragged.encode("cp1252"))
    with pytest.raises(PrepareError) as err:
        prepare(table_spec(table, tmp_path / "r" / "images", _opts()), tmp_path / "s2")
    assert "delimiter ';'" in str(err.value) and "--delimiter" in err.value.hint


def test_a_given_delimiter_wins_over_the_sniffed_one(tmp_path: Path) -> None:
    table = _release(tmp_path / "r")
    table.write_text(table.read_text().replace(",", "\t"))
    runner = CliRunner()
    args = ["prepare", "table", str(table), str(tmp_path / "r" / "images")]
    args += ["--id", "file", "--patient", "patient", "--center", "site", "--path", "file"]
    args += ["--outcome", "death=outcome:Dead,Alive"]
    ok = runner.invoke(app, [*args, "--out", str(tmp_path / "s"), "--delimiter", "\\t"])
    assert ok.exit_code == 0, ok.output
    record = json.loads((tmp_path / "s" / "prepare.json").read_text())
    assert record["sources"][0]["delimiter"] == "\t"
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "s2"), "--delimiter", ","])
    assert bad.exit_code != 0
    said = bad.output + str(bad.exception)
    assert "column 'file'" in said and "not found" in said


def test_a_wrong_encoding_names_the_file_the_byte_offset_and_the_option(tmp_path: Path) -> None:
    table = _release(tmp_path / "r", encoding="latin-1")
    offset = table.read_bytes().index(b"\xe8")  # the è of Genève
    with pytest.raises(PrepareError) as err:
        prepare(table_spec(table, tmp_path / "r", _opts(encoding="utf-8")), tmp_path / "s")
    msg = str(err.value)
    assert str(table) in msg and f"byte offset {offset} (line 2)" in msg and "0xe8" in msg
    assert "--encoding" in msg and "--header-row" not in msg
    with pytest.raises(ConfigError, match="'klingon' is not a text encoding"):
        table_spec(table, tmp_path / "r", _opts(encoding="klingon"))


# ------------------------------------------------------------------ rows without images


@pytest.mark.parametrize(
    "columns, root",
    [
        ({}, "images"),  # --path: a column of paths relative to the image root
        ({"path": None, "path_template": "images/{file}"}, "."),
    ],
)
def test_drop_unmatched_is_honoured_with_paths_and_templates(
    tmp_path: Path, columns: dict, root: str
) -> None:
    table = _release(tmp_path / "r", missing=("P1_0.png", "P2_1.png"))
    images = tmp_path / "r" / root
    with pytest.raises(PrepareError) as err:
        prepare(table_spec(table, images, _opts(columns=columns)), tmp_path / "s")
    msg = str(err.value)
    assert "2 problem(s): 2 missing image file" in msg
    assert "table.csv line 4, " in msg and "table.csv line 7, " in msg and "P1_0.png" in msg
    assert "--drop-unmatched" in msg
    spec = table_spec(table, images, _opts(columns=columns, rules={"unmatched": "drop"}))
    result = prepare(spec, tmp_path / "s")
    assert len(pd.read_csv(result.manifests["manifest.csv"])) == 6
    found = _rules(result.record)["find images"]
    assert found["dropped_ids"] == ["P1_0.png", "P2_1.png"]
    assert found["detail"]["unmatched_rows"] == 2 and found["detail"]["unmatched"] == "drop"
    assert found["after"] == {"rows": 6, "patients": 4, "images": 6}


def test_drop_unmatched_with_stem_matching(tmp_path: Path) -> None:
    table = _release(tmp_path / "r", missing=("P3_0.png",))
    opts = _opts(columns={"id": None, "path": None, "stem_match": "file"})
    with pytest.raises(
        PrepareError, match=r"line 8, column 'file': no image file matches 'P3_0.png'"
    ):
        prepare(table_spec(table, tmp_path / "r" / "images", opts), tmp_path / "s")
    opts.rules = {"unmatched": "drop"}
    result = prepare(table_spec(table, tmp_path / "r" / "images", opts), tmp_path / "s")
    assert _rules(result.record)["find images"]["detail"]["unmatched_rows"] == 1
    assert len(pd.read_csv(result.manifests["manifest.csv"])) == 7


# ----------------------------------------------------------------- file names as ids


def test_match_stem_accepts_values_that_carry_the_extension(tmp_path: Path) -> None:
    table = _release(tmp_path / "r", exts=(".png", ".jpg"))  # mixed .jpg and .png
    opts = _opts(columns={"id": None, "path": None, "stem_match": "file"})
    result = prepare(table_spec(table, tmp_path / "r" / "images", opts), tmp_path / "s")
    df = pd.read_csv(result.manifests["manifest.csv"], dtype=str)
    assert df["image_id"].tolist() == [f"P{p}_{k}" for p in range(4) for k in range(2)]
    assert {Path(p).suffix for p in df["path"]} == {".png", ".jpg"}
    assert result.record["scan"]["unused_files"] == 0


# ------------------------------------------------------------------- unused files


def test_unused_files_are_counted_with_a_path_column(tmp_path: Path) -> None:
    table = _release(tmp_path / "r")
    _png(tmp_path / "r" / "images" / "extra" / "Q9.png")  # in no row
    (tmp_path / "r" / "images" / "notes.txt").write_text("not an image")
    opts = _opts(rules={"exclude_ids": ["P0_0.png"]})
    result = prepare(table_spec(table, tmp_path / "r" / "images", opts), tmp_path / "s")
    assert result.record["scan"]["unused_files"] == 1
    assert result.record["scan"]["files_of_dropped_rows"] == 1  # P0_0.png: an excluded row's


# ------------------------------------------------------------- every problem visible


def test_a_long_list_of_one_kind_hides_no_other_kind(tmp_path: Path) -> None:
    n = SHOWN_PER_KIND + 5
    missing = tuple(f"P{p}_1.png" for p in range(n + 1) if p != 2)
    table = _release(tmp_path / "r", patients=n + 1, missing=missing)
    text = table.read_text().replace("P2,P2_0.png,Genève,Alive", "P2,P2_0.png,Genève,Dead")
    table.write_text(text)
    with pytest.raises(PrepareError) as err:
        prepare(table_spec(table, tmp_path / "r" / "images", _opts()), tmp_path / "s")
    msg = str(err.value)
    assert f"{n + 1} problem(s): {n} missing image file, 1 conflicting label" in msg
    assert "... and 5 more" in msg
    assert "patient 'P2' has images with different labels" in msg
    listing = problems_file(tmp_path / "s")
    assert str(listing) in msg and not (tmp_path / "s").exists()
    full = listing.read_text()
    assert all(name in full for name in missing) and "patient 'P2'" in full


def test_kinds_are_counted_duplicate_ids_and_undeclared_values(tmp_path: Path) -> None:
    table = _release(tmp_path / "r")
    text = table.read_text().replace("P1,P1_1.png", "P1,P0_0.png")  # P0's file, P1's row
    text = text.replace("P2,P2_0.png,Genève,Alive", "P2,P2_0.png,Genève,?")
    table.write_text(text)
    with pytest.raises(PrepareError) as err:
        prepare(table_spec(table, tmp_path / "r" / "images", _opts()), tmp_path / "s")
    msg = str(err.value)
    assert "1 duplicate id" in msg and "1 undeclared outcome value" in msg
    assert "duplicate id (1): make the ids unique" in msg


def test_a_row_repeated_cell_for_cell_is_kept_once_and_counted(tmp_path: Path) -> None:
    """An export's doubled line says nothing new; a repeated id with another value still fails."""
    table = _release(tmp_path / "r")
    lines = table.read_text().splitlines(keepends=True)
    table.write_text("".join([*lines, lines[3]]))  # P1_0 again, every cell equal
    result = prepare(table_spec(table, tmp_path / "r" / "images", _opts()), tmp_path / "s")
    rule = _rules(result.record)["drop repeated rows (every cell equal)"]
    assert rule["before"]["rows"] - rule["after"]["rows"] == 1
    assert rule["detail"]["rows"] == ["table.csv line 10"] and rule["dropped_ids"] == ["P1_0.png"]
    assert len(load_task(result.tasks["death"]).labels) == 8
    table.write_text("".join([*lines, lines[3].replace("Alive", "Dead")]))
    with pytest.raises(PrepareError, match="1 duplicate id"):
        prepare(table_spec(table, tmp_path / "r" / "images", _opts()), tmp_path / "s2")


# -------------------------------------------------------------- conflicting labels


def _conflict(tmp_path: Path) -> Path:
    table = _release(tmp_path / "r")
    table.write_text(
        table.read_text().replace("P1,P1_1.png,Zürich,Alive", "P1,P1_1.png,Zürich,Dead")
    )
    return table


def test_conflicting_labels_are_an_error_by_default(tmp_path: Path) -> None:
    table = _conflict(tmp_path)
    with pytest.raises(PrepareError) as err:
        prepare(table_spec(table, tmp_path / "r" / "images", _opts()), tmp_path / "s")
    msg = str(err.value)
    assert "1 conflicting label" in msg and "patient 'P1'" in msg
    assert "--conflicting-labels drop" in msg and "--per-image-labels" in msg


def test_conflicting_labels_drop_the_patient_counted(tmp_path: Path) -> None:
    table = _conflict(tmp_path)
    opts = _opts(rules={"conflicting_labels": "drop"})
    result = prepare(table_spec(table, tmp_path / "r" / "images", opts), tmp_path / "s")
    df = pd.read_csv(result.manifests["manifest.csv"], dtype=str)
    assert "P1" not in set(df["patient_id"]) and len(df) == 6
    rule = _rules(result.record)["drop patients with conflicting labels"]
    assert rule["detail"]["patients"] == ["P1"] and rule["detail"]["patients_dropped"] == 1
    assert rule["before"]["patients"] == 4 and rule["after"]["patients"] == 3


def test_per_image_labels_keep_the_patient(tmp_path: Path) -> None:
    table = _conflict(tmp_path)
    opts = _opts(per_image_labels=True)
    result = prepare(table_spec(table, tmp_path / "r" / "images", opts), tmp_path / "s")
    task = load_task(result.tasks["death"])
    assert task.config.per_image_labels and len(task.labels) == 8


# ------------------------------------------------------------------ several sources


def test_two_releases_merged_with_the_source_as_centre(tmp_path: Path) -> None:
    t1 = _release(tmp_path / "r1", missing=("P0_1.png",))
    t2 = _release(tmp_path / "r2", prefix="Q", exts=(".jpg",))
    args = ["prepare", "table", str(t1), str(tmp_path / "r1" / "images")]
    args += [str(t2), str(tmp_path / "r2" / "images"), "--out", str(tmp_path / "s")]
    args += ["--source-name", "first,second", "--center-from-source", "--drop-unmatched"]
    args += ["--id", "file", "--patient", "patient", "--path", "file"]
    args += ["--outcome", "death=outcome:Dead,Alive"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "(table r1/table.csv, r2/table.csv)" in result.output  # the inputs, not the output
    df = pd.read_csv(tmp_path / "s" / "manifest.csv", dtype=str)
    assert df["source"].tolist() == ["first"] * 7 + ["second"] * 8
    assert df["center"].tolist() == df["source"].tolist()
    record = json.loads((tmp_path / "s" / "prepare.json").read_text())
    assert [s["name"] for s in record["sources"]] == ["first", "second"]
    assert record["outputs"][0]["sources"] == {
        "first": {"images": 7, "patients": 4},
        "second": {"images": 8, "patients": 4},
    }
    assert _rules(record)["find images"]["dropped_ids"] == ["P0_1.png"]


def test_sources_from_a_map_file(tmp_path: Path) -> None:
    _release(tmp_path / "r1", encoding="latin-1")
    _release(tmp_path / "r2", prefix="Q")
    data = {
        "sources": [
            {"table": "r1/table.csv", "images": "r1/images", "name": "A", "encoding": "latin-1"},
            {"table": "r2/table.csv", "images": "r2/images", "name": "B"},
        ],
        "columns": {"id": "file", "patient": "patient", "path": "file", "center_from_source": True},
    }
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(data))
    opts = TableOptions(map_file=tmp_path / "map.yaml", outcomes=["death=outcome:Dead,Alive"])
    result = prepare(sources_spec([], opts), tmp_path / "s")
    encodings = [(s["name"], s["encoding"]) for s in result.record["sources"]]
    assert encodings == [("A", "latin-1"), ("B", "utf-8-sig")]  # given; detected (utf-8)
    assert result.record["outputs"][0]["centres"] == {"A": 8, "B": 8}


def test_sources_need_pairs_and_distinct_names(tmp_path: Path) -> None:
    table = _release(tmp_path / "r")
    args = ["prepare", "table", str(table), str(tmp_path / "r"), str(table)]
    args += ["--out", str(tmp_path / "s"), "--id", "file", "--path", "file"]
    args += ["--outcome", "death=outcome:Dead,Alive"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "come in pairs" in str(result.exception)
    pairs = [(table, tmp_path / "r" / "images")] * 2
    with pytest.raises(ConfigError, match="sources need distinct names"):
        sources_spec(pairs, _opts())
    with pytest.raises(ConfigError, match="--source-name given 1 time"):
        sources_spec(pairs, _opts(source_names=["x"]))
    with pytest.raises(ConfigError, match="no clinical table given"):
        sources_spec([], _opts())


def test_the_cli_honours_encoding_conflicting_labels_and_per_image_labels(
    tmp_path: Path,
) -> None:
    table = _conflict(tmp_path)
    table.write_bytes(table.read_text().encode("latin-1"))
    base = ["prepare", "table", str(table), str(tmp_path / "r" / "images"), "--id", "file"]
    base += ["--patient", "patient", "--path", "file", "--outcome", "death=outcome:Dead,Alive"]
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "a"), "--encoding", "utf-8"])
    assert r.exit_code != 0 and "byte offset" in str(r.exception)
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "b")])
    assert r.exit_code != 0 and "1 conflicting label" in str(r.exception)
    args = [*base, "--out", str(tmp_path / "c"), "--encoding", "latin-1"]
    r = CliRunner().invoke(app, [*args, "--conflicting-labels", "drop"])
    assert r.exit_code == 0, r.output
    assert "drop patients with conflicting labels (output manifest.csv)" in r.output
    record = json.loads((tmp_path / "c" / "prepare.json").read_text())
    assert record["sources"][0]["encoding"] == "latin-1"
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "d"), "--per-image-labels"])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load((tmp_path / "d" / "tasks" / "death.yaml").read_text())["per_image_labels"]


def test_two_sources_sharing_an_image_root_count_each_file_once(tmp_path: Path) -> None:
    _release(tmp_path / "r", patients=4)
    images = tmp_path / "r" / "images"
    df = pd.read_csv(tmp_path / "r" / "table.csv", dtype=str)
    df.iloc[:4].to_csv(tmp_path / "t1.csv", index=False)
    df.iloc[4:6].to_csv(tmp_path / "t2.csv", index=False)  # P3's two files are in no row
    opts = _opts(columns={"id": None, "path": None, "stem_match": "file"})
    result = prepare(
        sources_spec([(tmp_path / "t1.csv", images), (tmp_path / "t2.csv", images)], opts),
        tmp_path / "s",
    )
    assert result.record["scan"]["unused_files"] == 2
    assert len(pd.read_csv(result.manifests["manifest.csv"])) == 6


# ----------------------------------------------- several sources with their own columns


def _release_a(root: Path) -> Path:
    """Release A: a ';' table in cp1252, one row per image, `ImageFile` (sometimes with the
    extension), the hospital, SEVERE/MILD; files CXR/<ImageFile>.png."""
    lines = ["Codice paziente;ImageFile;Ospedale;Prognosi\n"]
    for p in range(3):
        for k in (1, 2):
            _png(root / "CXR" / f"A{p}-{k}.png", 10 * p + k)
            name = f"A{p}-{k}" + (".png" if k == 2 else "")
            outcome = "SEVERE" if p == 0 else "MILD"
            lines.append(f"A{p};{name};Ospedale di Città {p % 2};{outcome}\n")
    table = root / "clinical_data.csv"
    table.write_bytes("".join(lines).encode("cp1252"))
    return table


def _release_b(root: Path, icu: tuple[str, ...] = ("True", "False", "False", "True")) -> Path:
    """Release B: utf-8 with a BOM, one row per patient, `patient,icu_admission`, no file-name
    column; files images/<patient>_<n>.jpg|png, several per patient, and one no row names."""
    lines = ["patient,icu_admission\n"]
    for p, value in enumerate(icu):
        for n in range(1, 3 if p % 2 else 2):
            _png(root / "images" / f"B{p}_{n}{'.jpg' if n == 1 else '.png'}", 50 + p)
        lines.append(f"B{p},{value}\n")
    _png(root / "images" / "README_thumbnail.png")
    table = root / "metadata.csv"
    table.write_bytes("".join(lines).encode("utf-8-sig"))
    return table


def _two_releases(tmp_path: Path, b_columns: dict | None = None, **kw) -> Path:
    """A and B as a map file: B carries its own column map; returns the map file."""
    _release_a(tmp_path / "release-a")
    _release_b(tmp_path / "release-b", **kw)
    own = {
        "patient": "patient",
        "stem_match": "patient",
        "outcomes": {"severe": {"column": "icu_admission", "positive": True, "negative": [False]}},
    }
    data = {
        "sources": [
            {"table": "release-a/clinical_data.csv", "images": "release-a/CXR", "name": "A"},
            {
                "table": "release-b/metadata.csv",
                "images": "release-b/images",
                "name": "B",
                "columns": own if b_columns is None else b_columns,
            },
        ],
        "columns": {
            "patient": "Codice paziente",
            "stem_match": "ImageFile",
            "outcomes": {
                "severe": {"column": "Prognosi", "positive": "SEVERE", "negative": ["MILD"]}
            },
        },
    }
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_releases_with_their_own_columns_are_merged(tmp_path: Path) -> None:
    """Release A names files; release B has other columns, True/False, and files matched by
    the patient: one study, each source read with its own columns, outcomes translated."""
    map_file = _two_releases(tmp_path)
    args = ["prepare", "table", "--map", str(map_file), "--out", str(tmp_path / "s")]
    result = CliRunner().invoke(app, [*args, "--center-from-source"])
    assert result.exit_code == 0, result.output + str(result.exception)
    df = pd.read_csv(tmp_path / "s" / "manifest.csv", dtype=str)
    assert df["source"].tolist() == ["A"] * 6 + ["B"] * 6
    assert df["center"].tolist() == df["source"].tolist()
    b = df[df["source"] == "B"]
    assert b["image_id"].tolist() == ["B0_1", "B1_1", "B1_2", "B2_1", "B3_1", "B3_2"]
    assert b["patient_id"].tolist() == ["B0", "B1", "B1", "B2", "B3", "B3"]
    assert b["severe"].tolist() == ["SEVERE", "MILD", "MILD", "MILD", "SEVERE", "SEVERE"]
    assert set(df.loc[df["source"] == "A", "severe"]) == {"SEVERE", "MILD"}
    task = load_task(tmp_path / "s" / "tasks" / "severe.yaml")
    assert task.config.positive == "SEVERE" and task.config.negative == ["MILD"]
    assert task.labels.tolist() == [1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1]
    record = json.loads((tmp_path / "s" / "prepare.json").read_text())
    assert record["outputs"][0]["sources"] == {
        "A": {"images": 6, "patients": 3},
        "B": {"images": 6, "patients": 4},
    }
    assert record["scan"]["unused_files"] == 1  # B's README_thumbnail.png
    a_cols, b_cols = (s["columns"] for s in record["sources"])  # each effective map
    assert (a_cols["patient"], a_cols["stem_match"]) == ("Codice paziente", "ImageFile")
    assert (b_cols["patient"], b_cols["stem_match"]) == ("patient", "patient")
    assert b_cols["outcomes"]["severe"] == {
        "column": "icu_admission",
        "positive": "true",
        "negative": ["false"],
    }
    assert a_cols["center_from_source"] and b_cols["center_from_source"]  # the command line's


def test_a_missing_override_column_is_named_with_its_source(tmp_path: Path) -> None:
    own = {"patient": "patient", "stem_match": "patient"}
    own["outcomes"] = {"severe": {"column": "icu_admision", "positive": "True"}}  # sic
    map_file = _two_releases(tmp_path, b_columns=own)
    with pytest.raises(PrepareError) as err:
        prepare(sources_spec([], TableOptions(map_file=map_file)), tmp_path / "s")
    msg = str(err.value)
    b_table = tmp_path / "release-b" / "metadata.csv"
    assert msg.startswith(f"{b_table}: column 'icu_admision' (outcome 'severe') not found")
    assert "did you mean 'icu_admission'" in msg and "Prognosi" not in msg
    assert err.value.table == b_table and err.value.columns == ["icu_admision"]


def test_an_outcome_value_outside_a_sources_values_is_reported_as_its_own(
    tmp_path: Path,
) -> None:
    """B declares True/False: 'maybe' and even A's SEVERE are B's undeclared values."""
    map_file = _two_releases(tmp_path, icu=("True", "maybe", "SEVERE", "False"))
    with pytest.raises(PrepareError) as err:
        prepare(sources_spec([], TableOptions(map_file=map_file)), tmp_path / "s")
    msg = str(err.value)
    assert "2 problem(s): 2 undeclared outcome value" in msg
    declared = "declared value of outcome 'severe' (positive 'true', negative ['false'])"
    assert f"metadata.csv line 3, column 'icu_admission': value 'maybe' is not a {declared}" in msg
    assert f"metadata.csv line 4, column 'icu_admission': value 'SEVERE' is not a {declared}" in msg
    assert "Source 'B': patient_id = 'patient'" in msg  # the legend names B's columns


def test_per_source_columns_round_trip_through_the_map_and_prepare_json(tmp_path: Path) -> None:
    """Only the keys a source gives are kept (`center: null` is not an unset `center`), and
    prepare.json's spec prepares the same study again."""
    own = {
        "patient": "patient",
        "stem_match": "patient",
        "center": None,
        "center_name": "Ospedale B",
        "outcomes": {"severe": {"column": "icu_admission", "positive": "True", "negative": None}},
    }
    map_file = _two_releases(tmp_path, b_columns=own)
    data = yaml.safe_load(map_file.read_text())
    data["columns"]["center"] = "Ospedale"
    map_file.write_text(yaml.safe_dump(data))
    spec = sources_spec([], TableOptions(map_file=map_file))
    assert spec.sources[1].model_dump(mode="json")["columns"] == own | {
        "outcomes": {"severe": {"column": "icu_admission", "positive": "True", "negative": None}}
    }
    first = prepare(spec, tmp_path / "s1")
    df = pd.read_csv(first.manifests["manifest.csv"], dtype=str)
    assert set(df.loc[df["source"] == "B", "center"]) == {"Ospedale B"}
    assert set(df.loc[df["source"] == "A", "center"]) == {
        "Ospedale di Città 0",
        "Ospedale di Città 1",
    }
    # negative: null in B: every value but True is negative, translated to MILD
    assert (
        df.loc[df["source"] == "B", "severe"].tolist() == ["SEVERE"] + ["MILD"] * 3 + ["SEVERE"] * 2
    )
    again = PrepareSpec.model_validate(first.record["spec"])
    assert again.source_columns() == spec.source_columns()
    second = prepare(again, tmp_path / "s2")
    assert (
        second.manifests["manifest.csv"].read_text() == first.manifests["manifest.csv"].read_text()
    )
    assert [s["columns"] for s in second.record["sources"]] == [
        s["columns"] for s in first.record["sources"]
    ]


def test_sources_must_find_images_the_same_kind_of_way(tmp_path: Path) -> None:
    own = {"path": "patient", "patient": "patient"}  # a path per row, the shared map matches
    map_file = _two_releases(tmp_path, b_columns=own)
    with pytest.raises(ConfigError) as err:
        sources_spec([], TableOptions(map_file=map_file))
    msg = str(err.value)
    assert "source 'B' finds its images by path but the shared columns by stem_match" in msg
    assert "the same kind of way" in msg
    bad = {"outcomes": {"death": {"column": "x"}}}
    with pytest.raises(ConfigError, match="outcome 'death' is not a shared outcome"):
        sources_spec([], TableOptions(map_file=_two_releases(tmp_path / "o", b_columns=bad)))
    with pytest.raises(ConfigError, match="center_from_source"):  # a shared-only key
        bad = {"center_from_source": True}
        sources_spec([], TableOptions(map_file=_two_releases(tmp_path / "k", b_columns=bad)))
    pairs = [(tmp_path / "release-a" / "clinical_data.csv", tmp_path / "release-a" / "CXR")]
    with pytest.raises(ConfigError, match=r"sources 'B' of .* have their own `columns`"):
        sources_spec(pairs, TableOptions(map_file=map_file))


def test_a_copy_that_would_overwrite_a_column_the_source_reads_is_refused(tmp_path: Path) -> None:
    """B's patient goes under the shared patient name 'ImageFile', which B matches files by."""
    own = {"patient": "patient", "stem_match": "ImageFile"}
    map_file = _two_releases(tmp_path, b_columns=own)
    data = yaml.safe_load(map_file.read_text())
    data["columns"]["patient"] = "ImageFile"
    data["columns"]["stem_match"] = "Codice paziente"
    map_file.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="source 'B' reads column 'ImageFile' as its"):
        sources_spec([], TableOptions(map_file=map_file))


def test_sources_may_mix_a_path_column_and_a_path_template(tmp_path: Path) -> None:
    _release(tmp_path / "r1")
    _release(tmp_path / "r2", prefix="Q")
    data = {
        "sources": [
            {"table": "r1/table.csv", "images": "r1/images", "name": "A"},
            {
                "table": "r2/table.csv",
                "images": "r2",
                "name": "B",
                "columns": {"path_template": "images/{file}", "date": None},
            },
        ],
        "columns": {"id": "file", "patient": "patient", "path": "file", "center": "site"},
    }
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(data))
    opts = TableOptions(map_file=tmp_path / "map.yaml", outcomes=["death=outcome:Dead,Alive"])
    result = prepare(sources_spec([], opts), tmp_path / "s")
    df = pd.read_csv(result.manifests["manifest.csv"], dtype=str)
    assert df.groupby("source").size().to_dict() == {"A": 8, "B": 8}
    assert result.record["scan"]["unused_files"] == 0
    (tmp_path / "r2" / "images" / "Q1_0.png").unlink()
    with pytest.raises(PrepareError, match=r"path template 'images/\{file\}': file not found"):
        prepare(sources_spec([], opts), tmp_path / "s2")


def test_sources_may_mix_file_name_and_dicom_matching(tmp_path: Path) -> None:
    """A matches PNG files by name; B matches DICOMs by PatientID, with its dates and views."""
    from tests.helpers.rawdata import write_dicom

    _release(tmp_path / "r1")
    for p in range(2):
        write_dicom(tmp_path / "r2" / "dicom" / f"s{p}" / "1.dcm", f"MRN{p}", study_date="20200302")
    (tmp_path / "r2" / "b.csv").write_text("MRN,status\nMRN0,Dead\nMRN1,Alive\n")
    data = {
        "sources": [
            {"table": "r1/table.csv", "images": "r1/images", "name": "A"},
            {
                "table": "r2/b.csv",
                "images": "r2/dicom",
                "name": "B",
                "columns": {
                    "patient": "MRN",
                    "dicom_match": {"tag": "PatientID", "column": "MRN"},
                    "outcomes": {"death": {"column": "status"}},
                },
            },
        ],
        "columns": {"patient": "patient", "stem_match": "file", "center_from_source": True},
    }
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(data))
    opts = TableOptions(map_file=tmp_path / "map.yaml", outcomes=["death=outcome:Dead,Alive"])
    result = prepare(sources_spec([], opts), tmp_path / "s")
    df = pd.read_csv(result.manifests["manifest.csv"], dtype=str)
    b = df[df["source"] == "B"]
    assert b["patient_id"].tolist() == ["MRN0", "MRN1"] and b["death"].tolist() == ["Dead", "Alive"]
    assert set(b["study_date"]) == {"2020-03-02"} and set(b["view"]) == {"AP"}
    assert df.loc[df["source"] == "A", "study_date"].isna().all()
