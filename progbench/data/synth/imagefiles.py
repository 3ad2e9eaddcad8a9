"""The image files of a synthetic cohort: PNG or DICOM, with the encodings archives use
(docs/SYNTHETIC_COHORT.md, "File encodings"). Encoding choices are drawn from the study's `rng`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, display: np.ndarray, rng: np.random.Generator) -> None:
    # Mostly 8-bit; one in four 16-bit holding 12-bit data, as many archives export it.
    if rng.random() < 0.25:
        arr = np.rint(display * 4095).astype(np.uint16)
    else:
        arr = np.rint(display * 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def write_dicom(
    path: Path,
    display: np.ndarray,
    rng: np.random.Generator,
    pid: str,
    image_id: str,
    day: date,
    view: str,
    seed: int,
) -> None:
    """A CR DICOM with varied encodings: BitsStored 12 or 16, MONOCHROME1 or 2, optional
    rescale and window. UIDs are derived from the seed so that files are reproducible."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        UID,
        ComputedRadiographyImageStorage,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    bits = 12 if rng.random() < 0.6 else 16
    top = 2**bits - 1
    stored = np.rint(display * top).astype(np.uint16)
    mono1 = rng.random() < 0.35
    if mono1:
        stored = (top - stored).astype(np.uint16)  # MONOCHROME1: low values display white
    rescale = rng.random() < 0.4
    slope, intercept = (0.5, -1024.0) if rescale else (1.0, 0.0)

    def uid(kind: str) -> UID:
        return generate_uid(entropy_srcs=["progbench-synth", str(seed), image_id, kind])

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid("sop")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.PatientID = pid
    ds.PatientName = f"SYNTH^{pid}"
    ds.StudyDate = day.strftime("%Y%m%d")
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.set_pixel_data(
        stored, "MONOCHROME1" if mono1 else "MONOCHROME2", bits, generate_instance_uid=False
    )
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if rng.random() < 0.5:
        # A window over the central 99 % of values, in modality (rescaled) units.
        lo, hi = np.percentile(stored, [0.5, 99.5]) * slope + intercept
        ds.WindowCenter = round(float((lo + hi) / 2), 1)
        ds.WindowWidth = round(float(max(hi - lo, 2.0)), 1)
    ds.save_as(path, enforce_file_format=True)
