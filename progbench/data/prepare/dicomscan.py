"""Read DICOM headers without pixel data, and walk image folders.

Only the header tags that `prepare` uses are parsed (pydicom `stop_before_pixels` and
`specific_tags`), so a folder of thousands of radiographs is scanned in seconds.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from progbench.data.images import is_dicom

HEADER_TAGS = (
    "SOPClassUID",
    "PatientID",
    "StudyDate",
    "StudyTime",
    "Modality",
    "ViewPosition",
    "SeriesDescription",
    "StudyDescription",
    "Rows",
    "Columns",
    "PhotometricInterpretation",
)
IMAGE_SUFFIXES = {".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
LATERAL_WORDS = {"LAT", "LATERAL", "LL", "RL", "LLAT", "RLAT"}
FRONTAL_WORDS = {"PA", "AP"}


@dataclass(frozen=True)
class Header:
    """The header tags of one DICOM file, as text ('' when absent)."""

    path: Path
    tags: dict[str, str]

    def get(self, keyword: str) -> str:
        return self.tags.get(keyword, "")

    def study_time(self) -> pd.Timestamp | None:
        """StudyDate (+ StudyTime), or None when the date is absent or malformed."""
        day, time = self.get("StudyDate"), self.get("StudyTime").split(".")[0]
        if not re.fullmatch(r"\d{8}", day):
            return None
        stamp = pd.to_datetime(day + time.ljust(6, "0")[:6], format="%Y%m%d%H%M%S", errors="coerce")
        return None if pd.isna(stamp) else stamp

    def view(self, from_description: bool) -> str:
        """ViewPosition; when empty and allowed, PA/AP/LATERAL read from SeriesDescription."""
        view = self.get("ViewPosition").upper()
        if view or not from_description:
            return view
        return view_from_text(self.get("SeriesDescription"))


def view_from_text(text: str) -> str:
    """'2.000000-AP-52829' -> AP; 'CHEST PA AND LATERAL' -> '' (both views: unknown)."""
    words = set(re.split(r"[^A-Z]+", text.upper()))
    lateral, frontal = words & LATERAL_WORDS, words & FRONTAL_WORDS
    if lateral and not frontal:
        return "LATERAL"
    if len(frontal) == 1 and not lateral:
        return next(iter(frontal))
    return ""


class UnreadableFile(Exception):
    """A file that is not a DICOM file pydicom can parse."""


def read_header(path: Path, extra: Iterable[str] = ()) -> Header:
    """Header of one file; raises UnreadableFile with the cause."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    tags = [*HEADER_TAGS, *extra]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on odd but readable headers
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
            except InvalidDicomError:
                # No 128-byte preamble: read it anyway, as the decoder does (force=True), but
                # only accept what has a SOP class (garbage "parses" into unknown elements).
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags, force=True)
                if "SOPClassUID" not in ds:
                    raise UnreadableFile("not a DICOM file") from None
    except UnreadableFile:
        raise
    except Exception as err:  # truncated or corrupt files raise many types
        raise UnreadableFile(f"{type(err).__name__}: {err}") from err
    values = {}
    for kw in tags:
        v = ds.get(kw)
        values[kw] = "" if v is None else str(v).strip()
    return Header(path=path, tags=values)


@dataclass
class Scan:
    """What a folder walk found."""

    headers: list[Header] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    skipped_modality: int = 0  # files not read: the rest of a series folder of another modality


def natural_key(path: Path | str) -> list[object]:
    """Sort 1-2.dcm before 1-10.dcm: digits compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def walk_files(roots: Iterable[Path]) -> list[Path]:
    """Every image-like file under the roots (by suffix, or DICOM magic), in natural order."""
    found: list[Path] = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs.sort(key=natural_key)
            for name in sorted(files, key=natural_key):
                if name.startswith("."):
                    continue
                p = Path(folder) / name
                if p.suffix.lower() in IMAGE_SUFFIXES or (not p.suffix and is_dicom(p)):
                    found.append(p)
    return found


def scan_dicom(
    roots: Iterable[Path],
    modalities: set[str] | None = None,
    prune_series_folders: bool = False,
    extra_tags: Iterable[str] = (),
) -> Scan:
    """Read the header of every DICOM file under the roots.

    `prune_series_folders` (TCIA/NBIA layouts, where a folder is one series and every file of a
    series has the series' Modality): when the first file of a folder is of a modality not in
    `modalities`, the folder's other files are not read (a CT series has hundreds of slices).
    """
    scan = Scan()
    extra = tuple(extra_tags)
    by_folder: dict[Path, list[Path]] = {}
    for p in walk_files(roots):
        if is_dicom(p):
            by_folder.setdefault(p.parent, []).append(p)
    for files in by_folder.values():
        for k, p in enumerate(files):
            try:
                header = read_header(p, extra)
            except UnreadableFile as err:
                scan.unreadable.append((p, str(err)))
                continue
            # The first file of a pruned folder is kept: its row is matched (not "unmatched"),
            # and the modality rule then drops it, counted.
            scan.headers.append(header)
            mod = header.get("Modality").upper()
            if prune_series_folders and modalities and k == 0 and mod not in modalities:
                scan.skipped_modality += len(files) - 1
                break
    return scan


@dataclass(frozen=True)
class NbiaSelection:
    """The series folders of an NBIA download to scan, from its metadata.csv."""

    folders: list[Path]  # series of a kept modality
    other_subjects: frozenset[str]  # Subject IDs with series of other modalities
    excluded_series: int


def nbia_series_folders(metadata_csv: Path, modalities: set[str]) -> NbiaSelection:
    """Series folders whose Modality is kept. `File Location` is relative to the metadata
    file's folder; `Subject ID` is the DICOM PatientID."""
    from progbench.errors import PrepareError

    df = pd.read_csv(metadata_csv, dtype=str)
    for col in ("Subject ID", "Modality", "File Location"):
        if col not in df.columns:
            raise PrepareError(
                f"{metadata_csv}: column {col!r} not found; this is not an NBIA metadata.csv",
                "Remove or rename the file to scan every folder instead.",
            )
    keep = df["Modality"].fillna("").str.upper().isin(modalities)
    base = metadata_csv.parent
    folders = {(base / loc.replace("\\", "/")).resolve() for loc in df.loc[keep, "File Location"]}
    return NbiaSelection(
        folders=sorted(folders, key=natural_key),
        other_subjects=frozenset(df.loc[~keep, "Subject ID"].fillna("").str.strip()),
        excluded_series=int((~keep).sum()),
    )
