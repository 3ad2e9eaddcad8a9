"""Several sources, each with its own column map: their rows put under the shared column names.

A source's `columns:` (columnmap.SourceColumns) override the shared map for that source only.
Before the rules run, each source's rows are normalised: a column the source names differently
is copied under the shared name (its own column stays, so messages and image finding read the
source's own names), the centre is filled where sources give it differently, and an outcome's
source values are translated to the shared ones (its positive to the shared positive, its
negatives to the shared negative of the same name, else the first). A value the source does not
declare is kept as it is, and marked so the undeclared-value check reports it by the source's
row, column and declared values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from progbench.data.manifest import normalise_value
from progbench.data.prepare import rules as R
from progbench.data.prepare.columnmap import ColumnMap, OutcomeSpec, copied_columns
from progbench.data.prepare.schema import PrepareSpec


def undeclared_column(outcome: str) -> str:
    """The marker column of rows whose value of `outcome` their source does not declare."""
    return f"_undeclared {outcome}"


def pipeline_spec(spec: PrepareSpec) -> PrepareSpec:
    """The spec the rules run with: the shared map, with the centre column the rows now have."""
    target = spec.center_target()
    if target is None or target == spec.columns.center:
        return spec
    return spec.model_copy(update={"columns": spec.columns.model_copy(update={"center": target})})


def normalise(rows: pd.DataFrame, spec: PrepareSpec, maps: Sequence[ColumnMap]) -> pd.DataFrame:
    """`rows` (all sources, cells as text, `_source`) with each source's values under the
    shared column names, outcome values translated, and undeclared values marked."""
    original = rows
    rows = rows.copy()
    target = spec.center_target()
    sources = rows["_source"].to_numpy(dtype=int)
    marks = {name: np.zeros(len(rows), dtype=bool) for name in spec.columns.outcomes}
    for s, (source, own) in enumerate(zip(spec.sources, maps, strict=True)):
        mine = sources == s
        if not mine.any():
            continue
        for shared_col, (col, _) in copied_columns(spec.columns, own, target, source.label).items():
            if shared_col not in rows.columns:
                rows[shared_col] = ""
            values = original.loc[mine, col].to_numpy() if col is not None else own.center_name
            rows.loc[mine, shared_col] = values
        for name, shared in spec.columns.outcomes.items():
            mine_rows = original.loc[mine]
            ours = own.outcomes[name]
            marks[name][mine] = R.undeclared_values(mine_rows, ours)
            translate = translation(ours, shared)
            if translate is not None:
                rows.loc[mine, shared.column] = mine_rows[ours.column].map(translate).to_numpy()
    for name, mask in marks.items():
        rows[undeclared_column(name)] = mask
    return rows


def translation(own: OutcomeSpec, shared: OutcomeSpec) -> Callable[[str], str] | None:
    """A source's outcome value -> the shared value; None when the source declares the same."""
    pos = normalise_value(own.positive)
    neg = None if own.negative is None else [normalise_value(v) for v in own.negative]
    shared_neg = None if shared.negative is None else [normalise_value(v) for v in shared.negative]
    if pos == normalise_value(shared.positive) and neg == shared_neg:
        return None

    def translate(value: str) -> str:
        v = normalise_value(value)
        if v == "":
            return value
        if v == pos:
            return shared.positive
        if neg is not None and v not in neg:
            return value  # undeclared: kept, and reported as the source's
        if shared.negative is None:
            return value  # every other value is negative in the shared map too
        if shared_neg is not None and v in shared_neg:
            return shared.negative[shared_neg.index(v)]
        return shared.negative[0]

    return translate


def source_legend(spec: PrepareSpec, maps: Sequence[ColumnMap]) -> list[str]:
    """For each source with its own columns: where its manifest columns come from."""
    lines = []
    for source, own in zip(spec.sources, maps, strict=True):
        if source.columns is None:
            continue
        parts = [f"patient_id = {own.patient_column!r}", f"path = {image_way(own)}"]
        if spec.center_target() is not None:
            parts.insert(
                1, f"center = {own.center!r}" if own.center else f"center = {own.center_name!r}"
            )
        for name, o in own.outcomes.items():
            parts.append(f"{name} = {o.column!r} ({o.positive} positive)")
        lines.append(f"Source {source.label!r}: " + ", ".join(parts) + ".")
    return lines


def image_way(c: ColumnMap) -> str:
    if c.path is not None:
        return f"column {c.path!r}"
    if c.path_template is not None:
        return f"template {c.path_template!r}"
    if c.dicom_match is not None:
        return f"DICOM {c.dicom_match.tag} = column {c.dicom_match.column!r}"
    return f"file names starting with column {c.stem_match!r}"
