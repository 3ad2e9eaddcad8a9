"""Acquisition metadata of every image of a manifest, read from the files' headers only (no
pixel data): the table the `metadata_shortcut` check learns from.

Fields (NaN or '' where a file does not hold them):

- numeric: width, height, aspect (width / height), bit_depth, file_size (bytes),
  pixel_spacing (DICOM PixelSpacing, row spacing in mm);
- categorical: format (file suffix), mode (Pillow mode, or DICOM PhotometricInterpretation),
  manufacturer, model (ManufacturerModelName), modality, view_position, body_part;
- file_name: tokens of the image's path as the manifest gives it (folders and file name, no
  suffix), split into letter runs and digit runs and lower-cased; a token counts only when at
  least MIN_TOKEN_SHARE of the images and two patients carry it, so per-image and per-patient
  ids (which grouped CV could never use) stay out. The filter reads no label.

Headers come from Pillow (`Image.open` reads no pixels) and pydicom (`stop_before_pixels`).
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from progbench.data.images import is_dicom
from progbench.data.manifest import Manifest

NUMERIC = ("width", "height", "aspect", "bit_depth", "file_size", "pixel_spacing")
CATEGORICAL = (
    "format",
    "mode",
    "manufacturer",
    "model",
    "modality",
    "view_position",
    "body_part",
)
FILE_NAME = "file_name"
TOKEN_PATTERN = r"[a-z]+|\d+"
MIN_TOKEN_SHARE = 0.02
HEADER_THREADS = 8
DICOM_TAGS = {
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "modality": "Modality",
    "view_position": "ViewPosition",
    "body_part": "BodyPartExamined",
}


@dataclass(frozen=True)
class Metadata:
    """One row per manifest row: the header fields, and the file-name tokens as 0/1 columns."""

    fields: pd.DataFrame  # NUMERIC and CATEGORICAL columns
    tokens: pd.DataFrame  # one 0/1 column per kept token (may have none)

    def columns_of(self, field: str) -> list[str]:
        return list(self.tokens.columns) if field == FILE_NAME else [field]

    def varying(self) -> list[str]:
        """The fields that take more than one value over the images (constant ones carry
        nothing); file_name when at least one token is kept."""
        out = [c for c in (*NUMERIC, *CATEGORICAL) if self.fields[c].nunique(dropna=False) > 1]
        if any(self.tokens[c].nunique() > 1 for c in self.tokens.columns):
            out.append(FILE_NAME)
        return out


def _bit_depth(mode: str) -> float:
    from PIL import ImageMode

    if mode == "1":
        return 1.0
    try:
        return float(np.dtype(ImageMode.getmode(mode).typestr).itemsize * 8)
    except (KeyError, TypeError):
        return math.nan


def _pillow_fields(path: Path) -> dict[str, Any]:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:  # lazy: the header only
                width, height = img.size
                mode = img.mode
    except (OSError, UnidentifiedImageError):
        return {}
    return {"width": width, "height": height, "mode": mode, "bit_depth": _bit_depth(mode)}


def _dicom_fields(path: Path) -> dict[str, Any]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, InvalidDicomError):
        return {}
    out: dict[str, Any] = {
        "width": ds.get("Columns"),
        "height": ds.get("Rows"),
        "bit_depth": ds.get("BitsStored"),
        "mode": str(ds.get("PhotometricInterpretation", "")),
    }
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if spacing:
        out["pixel_spacing"] = float(spacing[0])
    for name, tag in DICOM_TAGS.items():
        value = ds.get(tag)
        out[name] = "" if value is None else str(value).strip()
    return out


def image_fields(path: Path) -> dict[str, Any]:
    """The header fields of one file (a missing one: NaN or '')."""
    row: dict[str, Any] = dict.fromkeys(NUMERIC, math.nan) | dict.fromkeys(CATEGORICAL, "")
    row["format"] = path.suffix.lower().lstrip(".")
    try:
        row["file_size"] = float(os.stat(path).st_size)
    except OSError:
        return row
    row |= (_dicom_fields if is_dicom(path) else _pillow_fields)(path)
    for k in NUMERIC:
        row[k] = math.nan if row[k] is None or row[k] == "" else float(row[k])
    if row["width"] > 0 and row["height"] > 0:
        row["aspect"] = row["width"] / row["height"]
    return row


def name_tokens(paths: list[str], patients: np.ndarray) -> pd.DataFrame:
    """0/1 columns `token:<t>`: the tokens of the paths (suffix dropped) that at least
    MIN_TOKEN_SHARE of the images and two patients carry."""
    from sklearn.feature_extraction.text import CountVectorizer

    stems = [str(Path(p).with_suffix("")) for p in paths]
    min_df = max(2, math.ceil(MIN_TOKEN_SHARE * len(stems)))
    vec = CountVectorizer(binary=True, lowercase=True, token_pattern=TOKEN_PATTERN, min_df=min_df)
    try:
        matrix = vec.fit_transform(stems).toarray()
    except ValueError:  # no token passes min_df
        return pd.DataFrame(index=range(len(paths)))
    names = vec.get_feature_names_out()
    keep = [j for j in range(len(names)) if len(np.unique(patients[matrix[:, j] > 0])) >= 2]
    return pd.DataFrame(
        matrix[:, keep].astype(np.float64), columns=[f"token:{names[j]}" for j in keep]
    )


def read_metadata(manifest: Manifest) -> Metadata:
    """The acquisition metadata of every image of `manifest`, in its row order."""
    paths = manifest.image_paths()
    # Header reads wait on the disk far more than on the CPU: a few threads overlap them.
    with ThreadPoolExecutor(HEADER_THREADS) as pool:
        rows = list(pool.map(image_fields, paths))
    fields = pd.DataFrame(rows, columns=[*NUMERIC, *CATEGORICAL])
    patients = manifest.frame["patient_id"].astype(str).to_numpy()
    tokens = name_tokens(manifest.frame["path"].astype(str).tolist(), patients)
    return Metadata(fields, tokens)
