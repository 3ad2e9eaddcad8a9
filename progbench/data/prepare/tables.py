"""Read clinical tables (CSV, XLSX, Parquet) keeping the user's row numbers for messages."""

from __future__ import annotations

import difflib
import io
import math
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from progbench.data.prepare.schema import TableSource
from progbench.errors import PrepareError

EXCEL_SUFFIXES = (".xlsx", ".xlsm")
PARQUET_SUFFIXES = (".parquet", ".pq")
# Tried in order when no encoding is given: utf-8 (a BOM is dropped), then Windows' Western
# European code page, then latin-1 (which decodes any byte).
DETECTED_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
# Field delimiters sniffed from a CSV's header line when none is given: European exports
# (Excel with a comma decimal separator) write ';'.
DETECTED_DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class ClinicalTable:
    """One table as read: cells as pandas gives them, and how to name each row to the user."""

    frame: pd.DataFrame
    source: TableSource
    blank_rows: int  # fully empty rows skipped (their numbers are kept for the others)
    encoding: str | None = None  # a CSV's text encoding, as given or detected
    delimiter: str | None = None  # a CSV's field delimiter, as given or detected

    @property
    def path(self) -> Path:
        return self.source.table

    def row_name(self, i: int) -> str:
        """The row as the user sees it: CSV line, spreadsheet row (1-based, header counted)."""
        line = int(self.frame.index[i]) + self.source.header_row + 2
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            return f"{self.path.name} line {line}"
        if suffix in EXCEL_SUFFIXES:
            sheet = f" sheet {self.source.sheet!r}" if self.source.sheet is not None else ""
            return f"{self.path.name}{sheet} row {line}"
        return f"{self.path.name} row {int(self.frame.index[i])}"


def read_clinical_table(source: TableSource) -> ClinicalTable:
    """Read one table; every cell keeps its type (dates stay dates, ids keep leading zeros)."""
    path = source.table
    if not path.is_file():
        raise PrepareError(f"clinical table not found: {path}", "Check the path.")
    suffix = path.suffix.lower()
    encoding = delimiter = None
    try:
        if suffix == ".csv":
            text, encoding = decode_table(path, source.encoding)
            delimiter = source.delimiter or sniff_delimiter(text, source.header_row)
            # Text cells: ids like 007 keep their zeros; blank lines kept so line numbers hold.
            frame = pd.read_csv(
                io.StringIO(text),
                dtype=str,
                header=source.header_row,
                sep=delimiter,
                skip_blank_lines=False,
            )
        elif suffix in EXCEL_SUFFIXES:
            frame = pd.read_excel(
                path, sheet_name=source.sheet or 0, header=source.header_row, dtype=object
            )
        elif suffix in PARQUET_SUFFIXES:
            frame = pd.read_parquet(path)
        else:
            raise PrepareError(
                f"clinical table {path} has suffix {suffix!r}",
                "Give a .csv, .xlsx or .parquet file (save .xls files as .xlsx).",
            )
    except PrepareError:
        raise
    except pd.errors.ParserError as err:  # a row with more fields than the header
        raise PrepareError(
            f"cannot read clinical table {path} with delimiter {delimiter!r}: {err}",
            "Give the table's delimiter with --delimiter (detected from the header line), or "
            "fix the row named (a stray delimiter, or a cell with the delimiter not quoted).",
        ) from err
    except ValueError as err:  # pandas: unknown sheet, header row past the end...
        raise PrepareError(f"cannot read clinical table {path}: {err}", _sheet_hint(path)) from err
    except Exception as err:  # openpyxl/pyarrow raise many types for a malformed file
        raise PrepareError(f"cannot read clinical table {path}: {err}") from err
    frame.columns = [str(c) for c in frame.columns]
    empty = frame.isna().all(axis=1)
    return ClinicalTable(
        frame=frame[~empty],
        source=source,
        blank_rows=int(empty.sum()),
        encoding=encoding,
        delimiter=delimiter,
    )


def sniff_delimiter(text: str, header_row: int) -> str:
    """The delimiter of a CSV's header line: the candidate it holds most often (',' if none).

    Only the header is read: cells below may hold commas or semicolons in free text.
    """
    lines = text.splitlines()
    header = lines[header_row] if header_row < len(lines) else ""
    counts = {d: header.count(d) for d in DETECTED_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def decode_table(path: Path, encoding: str | None) -> tuple[str, str]:
    """A text table's content and its encoding: the one given, else the first that decodes."""
    data = path.read_bytes()
    if encoding is not None:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as err:
            bad = data[err.start : err.end].hex(" ")
            line = data.count(b"\n", 0, err.start) + 1
            raise PrepareError(
                f"cannot read clinical table {path} as {encoding!r} (--encoding): byte(s) "
                f"0x{bad} at byte offset {err.start} (line {line}) are not valid {encoding}",
                "Give the table's encoding with --encoding (e.g. --encoding cp1252 or latin-1 "
                "for a table saved by Excel on Windows), or leave --encoding out to detect it "
                f"(tried in order: {', '.join(DETECTED_ENCODINGS)}).",
            ) from err
    for candidate in DETECTED_ENCODINGS:
        try:
            return data.decode(candidate), candidate
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any byte")  # pragma: no cover


def _sheet_hint(path: Path) -> str:
    if path.suffix.lower() not in EXCEL_SUFFIXES:
        return "Check --header-row."
    try:
        sheets = pd.ExcelFile(path).sheet_names
    except Exception:
        return "Check --sheet and --header-row."
    return f"Sheets in this file: {', '.join(map(repr, sheets))}. Check --sheet and --header-row."


def require_columns(table: ClinicalTable, needed: dict[str, str]) -> None:
    """`needed` maps a column to what it is for; a missing one is an error naming the table."""
    missing = [(c, why) for c, why in needed.items() if c not in table.frame.columns]
    if not missing:
        return
    lines = []
    for col, why in missing:
        close = difflib.get_close_matches(col, list(table.frame.columns), n=2, cutoff=0.6)
        guess = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        lines.append(f"column {col!r} ({why}) not found{guess}")
    raise MissingColumnError(
        f"{table.path}: " + "; ".join(lines),
        f"Its columns are: {', '.join(map(repr, table.frame.columns))}.",
        table=table.path,
        columns=[c for c, _ in missing],
    )


class MissingColumnError(PrepareError):
    """A mapped column is not in a table; adapters add where the dataset is downloaded."""

    def __init__(self, message: str, hint: str, table: Path, columns: list[str]) -> None:
        super().__init__(message, hint)
        self.table = table
        self.columns = columns


def cell_text(v: object) -> str:
    """A cell as text: empty for NaN/None, 7 for 7.0, ISO date for dates, stripped."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return str(v).strip()
