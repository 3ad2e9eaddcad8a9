"""`prepare table`'s PrepareSpec: a map YAML (optional) with command-line options on top."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progbench.config import parse_model, read_yaml
from progbench.data.prepare.schema import (
    MapFile,
    PrepareSpec,
    parse_column_value,
    parse_outcome_option,
)

IMAGE_WAYS = ("path", "path_template", "dicom_match", "stem_match")


@dataclass
class TableOptions:
    """The command line of `prepare table`; None (or empty) means 'not given here'."""

    map_file: Path | None = None
    sheet: str | None = None
    header_row: int | None = None
    columns: dict[str, str | None] = field(default_factory=dict)  # id, patient, center, ...
    dicom_match: str | None = None  # TAG=COLUMN
    outcomes: list[str] = field(default_factory=list)  # NAME=COLUMN:POSITIVE[,NEGATIVE...]
    box_columns: list[str] = field(default_factory=list)  # X0,Y0,X1,Y1
    rules: dict[str, Any] = field(default_factory=dict)
    one_per_patient: str | None = None
    absolute_paths: bool | None = None


def table_spec(table: Path, images: Path, options: TableOptions) -> PrepareSpec:
    """One output, manifest.csv, with one task per outcome (named like the outcome)."""
    data = read_yaml(options.map_file) if options.map_file else {}
    data.setdefault("columns", {})
    data["columns"].setdefault("outcomes", {})
    _override_columns(data["columns"], options)
    data["rules"] = {**data.get("rules", {}), **options.rules}
    for key in ("sheet", "header_row", "one_per_patient", "absolute_paths"):
        if getattr(options, key) is not None:
            data[key] = getattr(options, key)
    where = "the command-line options"
    if options.map_file:
        where = f"{options.map_file} with the command-line options"
    m: MapFile = parse_model(MapFile, data, where)
    sheet = int(m.sheet) if isinstance(m.sheet, str) and m.sheet.isdigit() else m.sheet
    spec = {
        "sources": [{"table": table, "images": images, "sheet": sheet, "header_row": m.header_row}],
        "columns": m.columns.model_dump(),
        "rules": m.rules.model_dump(),
        "outputs": [
            {
                "manifest": "manifest.csv",
                "tasks": {name: name for name in m.columns.outcomes},
                "one_per_patient": m.one_per_patient,
            }
        ],
        "absolute_paths": m.absolute_paths,
    }
    return parse_model(PrepareSpec, spec, where)


def _override_columns(columns: dict[str, Any], options: TableOptions) -> None:
    given = {k: v for k, v in options.columns.items() if v is not None}
    if options.dicom_match:
        tag, col = parse_column_value(options.dicom_match, "--dicom-match")
        given["dicom_match"] = {"tag": tag, "column": col}
    if any(way in given for way in IMAGE_WAYS):
        for way in IMAGE_WAYS:  # a way given here replaces the map file's
            columns.pop(way, None)
    columns.update(given)
    for text in options.outcomes:
        name, spec = parse_outcome_option(text)
        columns["outcomes"][name] = spec.model_dump()
    if options.box_columns:
        if len(options.box_columns) != 4:
            from progbench.errors import ConfigError

            raise ConfigError(
                f"--box-columns needs four columns X0,Y0,X1,Y1, got {options.box_columns}"
            )
        columns["boxes"] = dict(zip(("x0", "y0", "x1", "y1"), options.box_columns, strict=True))
