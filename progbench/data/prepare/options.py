"""`prepare table`'s PrepareSpec: a map YAML (optional) with command-line options on top."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progbench.config import parse_model, read_yaml
from progbench.data.prepare.columnmap import IMAGE_WAYS
from progbench.data.prepare.schema import (
    MapFile,
    PrepareSpec,
    parse_column_value,
    parse_outcome_option,
)
from progbench.errors import ConfigError

TABLE_KEYS = (
    "sheet",
    "header_row",
    "encoding",
    "delimiter",
)  # per source; a command-line value sets all


@dataclass
class TableOptions:
    """The command line of `prepare table`; None (or empty) means 'not given here'."""

    map_file: Path | None = None
    sheet: str | None = None
    header_row: int | None = None
    encoding: str | None = None
    delimiter: str | None = None
    source_names: list[str] = field(default_factory=list)  # one per table, in order
    columns: dict[str, Any] = field(default_factory=dict)  # id, patient, center, ...
    dicom_match: str | None = None  # TAG=COLUMN
    outcomes: list[str] = field(default_factory=list)  # NAME=COLUMN:POSITIVE[,NEGATIVE...]
    box_columns: list[str] = field(default_factory=list)  # X0,Y0,X1,Y1
    rules: dict[str, Any] = field(default_factory=dict)
    one_per_patient: str | None = None
    per_image_labels: bool | None = None
    absolute_paths: bool | None = None


def table_spec(table: Path, images: Path, options: TableOptions) -> PrepareSpec:
    """One table and its image root (see sources_spec)."""
    return sources_spec([(table, images)], options)


def sources_spec(pairs: Sequence[tuple[Path, Path]], options: TableOptions) -> PrepareSpec:
    """One output, manifest.csv, with one task per outcome (named like the outcome).

    `pairs` are (table, image root) from the command line; none: the map file's `sources`.
    """
    data = read_yaml(options.map_file) if options.map_file else {}
    data.setdefault("columns", {})
    data["columns"].setdefault("outcomes", {})
    _override_columns(data["columns"], options)
    data["rules"] = {**data.get("rules", {}), **options.rules}
    for key in (*TABLE_KEYS, "one_per_patient", "per_image_labels", "absolute_paths"):
        if getattr(options, key) is not None:
            data[key] = getattr(options, key)
    where = "the command-line options"
    if options.map_file:
        where = f"{options.map_file} with the command-line options"
    m: MapFile = parse_model(MapFile, data, where)
    spec = {
        "sources": _sources(pairs, m, options),
        "columns": m.columns.model_dump(),
        "rules": m.rules.model_dump(),
        "outputs": [
            {
                "manifest": "manifest.csv",
                "tasks": {name: name for name in m.columns.outcomes},
                "one_per_patient": m.one_per_patient,
                "per_image_labels": m.per_image_labels,
            }
        ],
        "absolute_paths": m.absolute_paths,
    }
    return parse_model(PrepareSpec, spec, where)


def _sources(
    pairs: Sequence[tuple[Path, Path]], m: MapFile, options: TableOptions
) -> list[dict[str, Any]]:
    """Each source with the table options; command-line values apply to every table."""
    defaults = {
        "sheet": _sheet(m.sheet),
        "header_row": m.header_row,
        "encoding": m.encoding,
        "delimiter": m.delimiter,
    }
    if pairs:
        own = [s.label for s in m.sources or [] if s.columns is not None]
        if own:
            raise ConfigError(
                f"tables given on the command line replace the map's `sources`, but sources "
                f"{', '.join(map(repr, own))} of {options.map_file} have their own `columns`",
                "Leave TABLE IMAGES out to use the map's sources, or remove their `columns`.",
            )
        sources = [{"table": t, "images": i, **defaults} for t, i in pairs]
    elif m.sources:
        base = options.map_file.parent if options.map_file else Path()
        sources = []
        for s in m.sources:
            given = s.model_dump(exclude_unset=True)
            for key in ("table", "images"):
                given[key] = given[key] if given[key].is_absolute() else base / given[key]
            given |= {k: getattr(options, k) for k in TABLE_KEYS if getattr(options, k) is not None}
            sources.append({**defaults, **given})
    else:
        raise ConfigError(
            "no clinical table given",
            "Give TABLE IMAGES (one pair per source) or a map file (--map) with `sources:`.",
        )
    if options.source_names:
        if len(options.source_names) != len(sources):
            raise ConfigError(
                f"--source-name given {len(options.source_names)} time(s) for "
                f"{len(sources)} table(s)",
                "Give one --source-name per table, in the order of the tables.",
            )
        for source, name in zip(sources, options.source_names, strict=True):
            source["name"] = name
    return sources


def _sheet(sheet: str | int | None) -> str | int | None:
    return int(sheet) if isinstance(sheet, str) and sheet.isdigit() else sheet


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
            raise ConfigError(
                f"--box-columns needs four columns X0,Y0,X1,Y1, got {options.box_columns}"
            )
        columns["boxes"] = dict(zip(("x0", "y0", "x1", "y1"), options.box_columns, strict=True))
