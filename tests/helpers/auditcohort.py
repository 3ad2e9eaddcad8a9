"""Cohorts for the audit's tests: noise images whose label may be carried by a planted
acquisition shortcut (image geometry, file names) or by the pixels themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image

Shortcut = Literal["none", "geometry", "name", "uid", "pixels", "dicom"]
# Two scanners' UID roots (GE-like and a generic one): the issue's artefact, a scanner UID in
# the file names that tracks the label.
SCANNER_UIDS = ("1.2.840.10008.5.1", "1.2.840.113619.2.55")


def write_audit_cohort(
    root: Path,
    shortcut: Shortcut = "none",
    patients: int = 80,
    centers: int = 2,
    seed: int = 0,
    size: int = 32,
) -> Path:
    """A cohort of uniform-noise PNGs; returns its task file.

    The label is independent of the centre and of a patient's number of images (40% positive
    in every (centre, one or two images) stratum), and the noise carries nothing, unless
    `shortcut` plants it: `geometry`, positives are wider (size + 8); `name`, positives' files
    are named `scanb_...` and negatives' `scana_...`; `uid`, file names start with the UID
    of the image under its scanner's root (SCANNER_UIDS, positives on the second); `pixels`, positives have a dark top half;
    `dicom`, every image is a DICOM file whose Manufacturer is VendorB for positives, VendorA
    for negatives.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    strata: dict[tuple[int, bool], list[int]] = {}
    for p in range(patients):
        strata.setdefault((p % centers, (p // centers) % 4 == 0), []).append(p)
    labels = np.zeros(patients, dtype=int)
    for members in strata.values():
        n_pos = round(0.4 * len(members))
        labels[rng.permutation(members)[:n_pos]] = 1
    rows = []
    for p in range(patients):
        y = int(labels[p])
        for j in range(1 + ((p // centers) % 4 == 0)):
            iid = f"P{p:03d}-{j}"
            width = size + 8 if (shortcut == "geometry" and y) else size
            arr = rng.integers(0, 256, size=(size, width), dtype=np.uint8)
            if shortcut == "pixels":
                arr[: size // 2] //= 1 + 3 * y  # a dark top half
            prefix = ("scanb" if y else "scana") + "_" if shortcut == "name" else ""
            if shortcut == "uid":
                prefix = f"{SCANNER_UIDS[y]}.{p}{j}_"
            if shortcut == "dicom":
                rel = f"images/{iid}.dcm"
                _write_dicom(root / rel, arr, "VendorB" if y else "VendorA")
            else:
                rel = f"images/{prefix}{iid}.png"
                Image.fromarray(arr).save(root / rel)
            rows.append(
                {
                    "image_id": iid,
                    "path": rel,
                    "patient_id": f"P{p:03d}",
                    "center": f"C{p % centers}",
                    "label": y,
                }
            )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "tasks").mkdir(exist_ok=True)
    task = root / "tasks" / "label.yaml"
    task.write_text("name: noise-label\nmanifest: ../manifest.csv\noutcome: label\npositive: 1\n")
    return task


def _write_dicom(path: Path, arr: np.ndarray, manufacturer: str) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.ViewPosition = "PA"
    ds.Manufacturer = manufacturer
    ds.PixelSpacing = [0.2, 0.2]
    ds.set_pixel_data(arr, "MONOCHROME2", 8)
    ds.save_as(path, enforce_file_format=True)
