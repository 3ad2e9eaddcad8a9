"""Miniature raw releases for the prepare tests: DICOM files with real header tags, written with
pydicom 3 as progbench.data.synth does, and spreadsheets written with openpyxl."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def write_dicom(
    path: Path,
    patient_id: str,
    study_date: str = "20200301",
    modality: str = "CR",
    view: str | None = "AP",
    mono1: bool = False,
    rows: int = 40,
    cols: int = 32,
    series_description: str = "",
    seed: int = 0,
) -> Path:
    """A small radiograph (or CT slice) with the tags prepare reads."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ComputedRadiographyImageStorage,
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    sop_class = {
        "CR": ComputedRadiographyImageStorage,
        "DX": DigitalXRayImageStorageForPresentation,
    }.get(modality, CT_STORAGE)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 4095, size=(rows, cols), dtype=np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.Modality = modality
    ds.SeriesDescription = series_description
    if view is not None:
        ds.ViewPosition = view
    ds.set_pixel_data(pixels, "MONOCHROME1" if mono1 else "MONOCHROME2", 12)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_xlsx(
    path: Path,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    title: str | None = None,
    sheet: str = "Sheet1",
) -> Path:
    """A spreadsheet: an optional title row above the header, as TCIA's clinical files have."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    if title is not None:
        ws.append([title])
    ws.append(list(header))
    for r in rows:
        ws.append(list(r))
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def nbia_study(patient: str, date: str, description: str, k: int) -> str:
    """NBIA study folder name: MM-DD-YYYY-NA-<StudyDescription>-<5 digits>."""
    return f"{date[4:6]}-{date[6:8]}-{date[:4]}-NA-{description}-{10000 + k}"


def nbia_series(number: int, description: str, k: int) -> str:
    return f"{number}.000000-{description}-{20000 + k}"
