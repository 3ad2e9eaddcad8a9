"""Lung boxes from a box table (the AIforCOVID authors' box_data_*.xlsx) to manifest box columns.

The table holds skimage `regionprops.bbox` lists, `[min_row, min_col, max_row, max_col]` with
exclusive ends, as strings. The manifest wants (x0, y0, x1, y1) in pixels, x = column. Like the
authors' loader (`get_box`), the box is widened by a margin, then its shorter side is padded to
a square with real neighbouring pixels; unlike it, each edge is clamped to the image on its own
(`get_box` shrinks both margins when one edge would leave the image).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from progbench.data.prepare.dicomscan import IMAGE_SUFFIXES
from progbench.data.prepare.schema import BoxFile, TableSource
from progbench.data.prepare.tables import cell_text, read_clinical_table, require_columns

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class RawBox:
    """A box as the box table gives it, and the table row it came from (for messages)."""

    rc: Box  # min_row, min_col, max_row, max_col
    row_name: str


def read_box_table(spec: BoxFile) -> tuple[dict[str, RawBox], list[str]]:
    """Boxes by image id, and one problem per bad row (unparsable box, duplicate id)."""
    table = read_clinical_table(
        TableSource(table=spec.path, images=spec.path.parent, sheet=spec.sheet)
    )
    require_columns(table, {spec.id_column: "image id", spec.box_column: "lung box"})
    boxes: dict[str, RawBox] = {}
    problems: list[str] = []
    for i in range(len(table.frame)):
        name = table.row_name(i)
        image_id = _image_id(cell_text(table.frame[spec.id_column].iloc[i]))
        text = cell_text(table.frame[spec.box_column].iloc[i])
        rc = parse_box(text)
        if rc is None:
            problems.append(
                f"{name}, column {spec.box_column!r}: {text!r} is not "
                "[min_row, min_col, max_row, max_col]"
            )
        elif image_id in boxes:
            problems.append(
                f"{name}, column {spec.id_column!r}: image {image_id!r} already has a box "
                f"({boxes[image_id].row_name})"
            )
        else:
            boxes[image_id] = RawBox(rc=rc, row_name=name)
    return boxes, problems


def _image_id(text: str) -> str:
    """'P_12.dcm' and 'P_12' both name image P_12."""
    p = Path(text)
    return p.stem if p.suffix.lower() in IMAGE_SUFFIXES else text


def parse_box(text: str) -> Box | None:
    """'[10, 20, 200, 180]' -> (10, 20, 200, 180); None for anything else."""
    try:
        value = ast.literal_eval(text)  # literals only: never eval() a spreadsheet cell
    except (ValueError, SyntaxError):
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    if not all(isinstance(v, (int, float)) and float(v).is_integer() for v in value):
        return None
    return tuple(int(v) for v in value)  # type: ignore[return-value]


def box_problem(rc: Box, width: float, height: float) -> str | None:
    r0, c0, r1, c1 = rc
    if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
        return (
            f"box {list(rc)} is not inside the image (width {width:g}, height {height:g}); "
            "boxes must be in pixels of the original image"
        )
    return None


def expand_box(rc: Box, width: int, height: int, margin_percent: float, square: bool) -> Box:
    """(x0, y0, x1, y1) from [min_row, min_col, max_row, max_col]: margin, then square pad."""
    r0, c0, r1, c1 = rc
    # The authors' integer arithmetic: margin_percent of the side in total, half per side.
    mw = int((c1 - c0) * margin_percent // 100) // 2
    mh = int((r1 - r0) * margin_percent // 100) // 2
    x0, x1 = max(c0 - mw, 0), min(c1 + mw, width)
    y0, y1 = max(r0 - mh, 0), min(r1 + mh, height)
    if square:
        w, h = x1 - x0, y1 - y0
        if w < h:
            x0, x1 = _pad(x0, x1, h - w, width)
        elif h < w:
            y0, y1 = _pad(y0, y1, w - h, height)
    return x0, y0, x1, y1


def _pad(lo: int, hi: int, d: int, limit: int) -> tuple[int, int]:
    """Widen [lo, hi) by d: floor(d/2) before, the rest after; what would leave the image goes
    to the other side, and an image too small for the square keeps the whole side."""
    lo, hi = lo - d // 2, hi + (d - d // 2)
    if lo < 0:
        hi, lo = hi - lo, 0
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return max(lo, 0), hi


def boxes_frame(
    images: pd.DataFrame, boxes: dict[str, RawBox], spec: BoxFile, image_names: list[str]
) -> tuple[pd.DataFrame, list[str], int]:
    """box_x0..box_y1 per image (NaN: no crop), problems, and how many images had no box."""
    cols: dict[str, list[float]] = {k: [] for k in ("box_x0", "box_y0", "box_x1", "box_y1")}
    problems: list[str] = []
    missing = 0
    for k, image_id in enumerate(images["image_id"]):
        raw = boxes.get(image_id)
        w, h = images["width"].iloc[k], images["height"].iloc[k]
        box: tuple[float, ...] = (float("nan"),) * 4
        if raw is None:
            missing += 1
            if spec.missing == "error":
                problems.append(
                    f"{image_names[k]}: image {image_id!r} has no box in {spec.path.name}"
                )
        elif pd.isna(w) or pd.isna(h):
            problems.append(f"{raw.row_name}: the size of image {image_id!r} is unknown")
        elif (why := box_problem(raw.rc, w, h)) is not None:
            problems.append(f"{raw.row_name}, column {spec.box_column!r}: {why}")
        else:
            box = expand_box(raw.rc, int(w), int(h), spec.margin_percent, spec.square)
        for col, v in zip(cols, box, strict=True):
            cols[col].append(v)
    return pd.DataFrame(cols, index=images.index), problems, missing
