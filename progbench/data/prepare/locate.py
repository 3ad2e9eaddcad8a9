"""Find each table row's image(s): a path column, a path template, DICOM header matching, or
file names that start with the row's value. Images are referenced in place, never copied.

Result: one record per image with the table row it belongs to, its path, and what its header
says (modality, view, study date, size) when the file is a DICOM or a readable picture.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from progbench.data.images import is_dicom
from progbench.data.prepare.dicomscan import (
    Header,
    UnreadableFile,
    natural_key,
    read_header,
    scan_dicom,
    walk_files,
)
from progbench.data.prepare.schema import ColumnMap, Rules
from progbench.errors import ConfigError

STEM_SEPARATORS = "_-. "


@dataclass
class Located:
    """Images found for the table's rows, and what went wrong on the way."""

    images: pd.DataFrame  # columns: row, image_id, path, modality, view, date, height, width
    problems: list[str] = field(default_factory=list)
    unmatched: list[int] = field(default_factory=list)  # rows with no image file at all
    why_unmatched: dict[int, str] = field(default_factory=dict)  # row -> the problem, named
    # Image files under the image roots that no table row refers to (every mode), and files
    # that belong to rows an earlier rule dropped (excluded ids, missing outcomes).
    unused_files: int = 0
    files_of_dropped_rows: int = 0
    skipped_modality: int = 0  # files of other modalities not read (pruned series folders)
    other_modality_rows: list[int] = field(default_factory=list)  # only unscanned series


@dataclass(frozen=True)
class Roots:
    """Where a table's images are: its image root, and optionally only these folders in it."""

    images: Path
    folders: Sequence[Path] | None = None
    # Match values whose series were left unscanned (another modality, per NBIA metadata.csv):
    # a row with one of them and no scanned file has no image of the kept modalities, and is
    # not "unmatched".
    other_values: frozenset[str] = frozenset()

    def scan_roots(self) -> list[Path]:
        return list(self.folders) if self.folders is not None else [self.images]


def template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def locate_images(
    rows: pd.DataFrame,
    columns: Sequence[ColumnMap],
    rules: Rules,
    roots: Sequence[Roots],
    row_names: Sequence[str],
    all_rows: pd.DataFrame | None = None,
) -> Located:
    """`rows` holds the table cells as text plus `_source` (index into `roots` and `columns`).

    `columns` is each source's column map (its own column names: a row is read, and named in
    messages, by its source's map); every map finds images the same kind of way.
    `all_rows` are the tables' rows before any rule (default `rows`): a file that one of them
    refers to is not an unused file, but a file of a dropped row.
    """
    all_rows = rows if all_rows is None else all_rows
    if columns[0].one_image_per_row:
        found = _by_path(rows, columns, roots, row_names)
        _count_unreferenced(found, all_rows, columns, roots)
    else:
        found = _by_matching(rows, columns, rules, roots, row_names, all_rows)
    _add_row_values(found, rows, columns, rules, row_names)
    return found


def _by_path(
    rows: pd.DataFrame, maps: Sequence[ColumnMap], roots: Sequence[Roots], names: Sequence[str]
) -> Located:
    out = Located(images=pd.DataFrame())
    records = []
    for i, (_, row) in enumerate(rows.iterrows()):
        columns = maps[int(row["_source"])]
        where = (
            f"column {columns.path!r}"
            if columns.path is not None
            else f"path template {columns.path_template!r}"
        )
        path = row_path(row, maps, roots)
        if path is None:
            out.problems.append(f"{names[i]}, {where}: empty path")
            continue
        if not path.is_file():  # a row without its image: an error, or dropped and counted
            out.unmatched.append(i)
            out.why_unmatched[i] = f"{names[i]}, {where}: file not found: {path}"
            continue
        rec = {"row": i, "image_id": row[columns.id_column], "path": str(path)}
        rec |= _describe(path, f"{names[i]}, {where}", out.problems)
        records.append(rec)
    out.images = _frame(records)
    return out


def row_path(row: pd.Series, maps: Sequence[ColumnMap], roots: Sequence[Roots]) -> Path | None:
    """A row's image path (path column or template of its source; relative to its image root)."""
    columns = maps[int(row["_source"])]
    if columns.path is not None:
        text = row[columns.path]
    else:
        text = columns.path_template.format_map(row.to_dict())  # type: ignore[union-attr]
    if text == "":
        return None
    root = roots[int(row["_source"])].images
    return absolute(Path(text) if Path(text).is_absolute() else root / text)


def _count_unreferenced(
    found: Located, all_rows: pd.DataFrame, columns: Sequence[ColumnMap], roots: Sequence[Roots]
) -> None:
    """Path modes: image files under the roots that no row (kept or dropped) refers to."""
    referenced = {p for _, row in all_rows.iterrows() if (p := row_path(row, columns, roots))}
    kept = set(found.images["path"])
    walked = {absolute(p) for root in roots for p in walk_files(root.scan_roots())}
    found.unused_files = len(walked - referenced)
    found.files_of_dropped_rows = len({p for p in walked & referenced if str(p) not in kept})


def _by_matching(
    rows: pd.DataFrame,
    maps: Sequence[ColumnMap],
    rules: Rules,
    roots: Sequence[Roots],
    names: Sequence[str],
    all_rows: pd.DataFrame,
) -> Located:
    out = Located(images=pd.DataFrame())
    records = []
    # A file counts once even when two sources share an image root: unused when no source's
    # row refers to it, a dropped row's file when only dropped rows do.
    seen: set[Path] = set()
    used: set[Path] = set()
    dropped: set[Path] = set()
    for s, root in enumerate(roots):
        columns = maps[s]
        col = columns.match_column or ""
        mine = [i for i in range(len(rows)) if int(rows["_source"].iloc[i]) == s]
        by_value = _rows_by_value(rows, mine, col, names, out.problems)
        dropped_values = set(all_rows.loc[all_rows["_source"] == s, col]) - set(by_value) - {""}
        if columns.dicom_match is not None:
            headers = _dicom_candidates(root, columns.dicom_match.tag, rules, out)
            keys = {p: [h.get(columns.dicom_match.tag)] for p, h in headers.items()}
            files: Mapping[Path, Header | None] = headers
        else:
            files = {absolute(p): None for p in walk_files(root.scan_roots())}
            keys = {p: [p.name, *stem_candidates(p.stem)] for p in files}
        matched: set[int] = set()
        for p, header in files.items():
            hits = sorted({r for k in keys[p] for r in by_value.get(k, [])})
            seen.add(p)
            if not hits:
                if any(k in dropped_values for k in keys[p]):
                    dropped.add(p)
                continue
            used.add(p)
            if len(hits) > 1:
                where = ", ".join(names[r] for r in hits)
                out.problems.append(f"{p}: matches more than one row ({where})")
                continue
            matched.add(hits[0])
            rec = {"row": hits[0], "image_id": _relative_id(p, root.images), "path": str(p)}
            label = f"{names[hits[0]]}, image {p}"
            rec |= _header_fields(header) if header else _describe(p, label, out.problems)
            records.append(rec)
        lost = [i for i in mine if i not in matched and rows[col].iloc[i] != ""]
        out.other_modality_rows += [i for i in lost if rows[col].iloc[i] in root.other_values]
        how = columns.dicom_match.tag if columns.dicom_match else "file name"
        for i in lost:
            if rows[col].iloc[i] not in root.other_values:
                out.unmatched.append(i)
                out.why_unmatched[i] = (
                    f"{names[i]}, column {col!r}: no image file matches "
                    f"{rows[col].iloc[i]!r} (by {how})"
                )
    out.unused_files = len(seen - used - dropped)
    out.files_of_dropped_rows = len(dropped - used)
    out.images = _frame(records)
    return out


def _rows_by_value(
    rows: pd.DataFrame, mine: list[int], col: str, names: Sequence[str], problems: list[str]
) -> dict[str, list[int]]:
    by_value: dict[str, list[int]] = {}
    for i in mine:
        value = rows[col].iloc[i]
        if value == "":
            problems.append(f"{names[i]}, column {col!r}: empty value (nothing to match)")
            continue
        by_value.setdefault(value, []).append(i)
    for value, hits in by_value.items():
        if len(hits) > 1:
            where = ", ".join(names[r] for r in hits)
            problems.append(
                f"column {col!r}: value {value!r} appears in more than one row ({where}); "
                "its images cannot be given to one row"
            )
    return {v: h[:1] for v, h in by_value.items()}


def _dicom_candidates(root: Roots, tag: str, rules: Rules, out: Located) -> dict[Path, Header]:
    mods = {m.upper() for m in rules.modalities} if rules.modalities else None
    prune = root.folders is None and mods is not None and rules.prune_series_folders
    scan = scan_dicom(root.scan_roots(), mods, prune_series_folders=prune, extra_tags=[tag])
    for p, why in scan.unreadable:
        out.problems.append(f"image folder {root.images}: cannot read DICOM header of {p}: {why}")
    out.skipped_modality += scan.skipped_modality
    return {absolute(h.path): h for h in scan.headers}


def stem_candidates(stem: str) -> list[str]:
    """'P12_2' -> ['P12_2', 'P12']: the stem and each prefix that ends before a separator.

    Matching also tries the file's whole name, so values that carry the extension
    ('P12_2.png') match too.
    """
    keys = [stem]
    keys += [stem[:k] for k in range(1, len(stem)) if stem[k] in STEM_SEPARATORS]
    return keys


def absolute(path: Path) -> Path:
    """Absolute without resolving symlinks: a linked image keeps the path the user gave."""
    return Path(os.path.abspath(path))


def _relative_id(path: Path, root: Path) -> str:
    try:
        rel = absolute(path).relative_to(absolute(root))
    except ValueError:
        rel = Path(path.name)
    return rel.with_suffix("").as_posix()


def _describe(path: Path, label: str, problems: list[str]) -> dict[str, object]:
    """Header fields of a DICOM, size of a picture; an unreadable file is a problem."""
    if is_dicom(path):
        try:
            return _header_fields(read_header(path))
        except UnreadableFile as err:
            problems.append(f"{label}: cannot read DICOM header of {path}: {err}")
            return {}
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, UnidentifiedImageError) as err:
        problems.append(f"{label}: cannot read image {path}: {err}")
        return {}
    return {"height": height, "width": width}


def _header_fields(h: Header) -> dict[str, object]:
    size = {}
    if h.get("Rows").isdigit() and h.get("Columns").isdigit():
        size = {"height": int(h.get("Rows")), "width": int(h.get("Columns"))}
    return {"modality": h.get("Modality").upper(), "_header": h, "date": h.study_time(), **size}


IMAGE_COLUMNS = ("row", "image_id", "path", "modality", "view", "date", "height", "width")


def _frame(records: list[dict[str, object]]) -> pd.DataFrame:
    # File order: table row, then natural path order (split digits compare as numbers).
    records.sort(key=lambda r: (r["row"], natural_key(str(r["path"]))))
    records = [{"modality": "", **r} for r in records]  # pictures have no modality
    return pd.DataFrame.from_records(records, columns=[*IMAGE_COLUMNS, "_header"])


def _add_row_values(
    found: Located,
    rows: pd.DataFrame,
    maps: Sequence[ColumnMap],
    rules: Rules,
    names: Sequence[str],
) -> None:
    """Views and dates: from the source's columns when mapped, else from the DICOM header."""
    df = found.images
    headers = df.pop("_header")
    image_rows = df["row"].to_numpy(dtype=int)
    sources = rows["_source"].to_numpy(dtype=int)[image_rows]
    of = [maps[s] for s in sources]  # each image's source's map
    df["view"] = [
        rows[m.view].iloc[r].upper()
        if m.view is not None
        else (h.view(rules.view_from_description) if isinstance(h, Header) else "")
        for m, r, h in zip(of, image_rows, headers, strict=True)
    ]
    df["date"] = pd.to_datetime(df["date"])
    by_column = [m.date is not None for m in of]
    if any(by_column):
        text = pd.Series(
            [rows[m.date].iloc[r] if m.date else "" for m, r in zip(of, image_rows, strict=True)],
            dtype=str,
        )
        dates = pd.to_datetime(text, errors="coerce", format="mixed")
        for k in (dates.isna() & (text != "")).to_numpy().nonzero()[0]:
            r = int(image_rows[k])
            found.problems.append(
                f"{names[r]}, column {of[k].date!r}: {text.iloc[k]!r} is not a date"
            )
        df["date"] = df["date"].where(~pd.Series(by_column, index=df.index), dates.to_numpy())


def check_template(columns: ColumnMap) -> None:
    """A malformed template (unbalanced braces) is an error before any table is read; its
    fields are checked as columns with the others (ColumnMap.needed_columns)."""
    if columns.path_template is None:
        return
    try:
        template_fields(columns.path_template)
    except ValueError as err:
        raise ConfigError(f"path template {columns.path_template!r} is malformed: {err}") from err
