"""Selection rules. Each one is a pure function of the tables, and is logged with the counts
(table rows, images, patients) before and after it, so prepare.json shows where rows went."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from progbench.data.manifest import normalise_value
from progbench.data.prepare.schema import UNKNOWN_VIEW, OnePerPatient, OutcomeSpec

MAX_RECORDED_IDS = 200  # ids listed per rule in prepare.json; the count is always exact


@dataclass
class RuleLog:
    """The rules applied so far, in order, with their counts."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        rule: str,
        detail: Any,
        before: dict[str, int],
        after: dict[str, int],
        dropped_ids: Sequence[str] = (),
        **extra: Any,
    ) -> None:
        entry: dict[str, Any] = {"rule": rule, "detail": detail, "before": before, "after": after}
        if dropped_ids:
            ids = sorted(set(dropped_ids))
            entry["dropped_ids"] = ids[:MAX_RECORDED_IDS]
            if len(ids) > MAX_RECORDED_IDS:
                entry["dropped_ids_not_listed"] = len(ids) - MAX_RECORDED_IDS
        entry.update(extra)
        self.entries.append(entry)


def tally(
    rows: pd.DataFrame, patient_col: str, images: pd.DataFrame | None = None
) -> dict[str, int]:
    """Counts of table rows, patients and (once located) images."""
    out = {"rows": len(rows), "patients": int(rows[patient_col].nunique())}
    if images is not None:
        kept = images["row"].unique()
        out = {
            "rows": len(kept),
            "patients": int(rows[patient_col].iloc[kept].nunique()) if len(kept) else 0,
            "images": len(images),
        }
    return out


def excluded(rows: pd.DataFrame, id_col: str, ids: Sequence[str]) -> np.ndarray:
    """Mask of rows whose id is listed."""
    return rows[id_col].isin({str(i) for i in ids}).to_numpy()


def missing_outcome(rows: pd.DataFrame, outcome: OutcomeSpec) -> np.ndarray:
    """Mask of rows whose outcome cell is empty (NaN, blank)."""
    return (rows[outcome.column].map(normalise_value) == "").to_numpy()


def undeclared_values(rows: pd.DataFrame, outcome: OutcomeSpec) -> np.ndarray:
    """Mask of rows whose non-empty outcome value is neither the positive nor a negative."""
    if outcome.negative is None:
        return np.zeros(len(rows), dtype=bool)
    declared = {normalise_value(v) for v in [outcome.positive, *outcome.negative]}
    values = rows[outcome.column].map(normalise_value)
    return ((values != "") & ~values.isin(declared)).to_numpy()


def by_modality(images: pd.DataFrame, modalities: Sequence[str]) -> pd.DataFrame:
    keep = images["modality"].isin({m.upper() for m in modalities})
    return images[keep].reset_index(drop=True)


def by_view(images: pd.DataFrame, views: Sequence[str]) -> pd.DataFrame:
    wanted = {v.upper() for v in views if v.lower() != UNKNOWN_VIEW}
    keep = images["view"].isin(wanted)
    if any(v.lower() == UNKNOWN_VIEW for v in views):
        keep |= images["view"] == ""
    return images[keep].reset_index(drop=True)


def one_per_patient(images: pd.DataFrame, patients: pd.Series, how: OnePerPatient) -> pd.DataFrame:
    """One image per patient: by study date (unknown dates last), then file order.

    `images` is in file order (table row, then natural path order); `first` keeps that order.
    """
    df = images.assign(_patient=patients.iloc[images["row"]].to_numpy(), _order=range(len(images)))
    if how == "earliest":
        df = df.sort_values(["date", "_order"], na_position="last", kind="stable")
    elif how == "latest":
        df = df.sort_values(["date", "_order"], ascending=[False, True], na_position="last")
    first = df.drop_duplicates("_patient", keep="first").sort_values("_order")
    return first.drop(columns=["_patient", "_order"]).reset_index(drop=True)


def conflicting_patients(
    images: pd.DataFrame, rows: pd.DataFrame, patient_col: str, outcomes: Sequence[OutcomeSpec]
) -> list[str]:
    """Patients whose images carry different labels (positive or not) of any of `outcomes`."""
    r = images["row"].to_numpy(dtype=int)
    patients = rows[patient_col].iloc[r].to_numpy()
    mixed: set[str] = set()
    for o in outcomes:
        labels = rows[o.column].iloc[r].map(normalise_value) == normalise_value(o.positive)
        per_patient = pd.Series(labels.to_numpy()).groupby(patients).nunique()
        mixed |= set(per_patient.index[per_patient > 1])
    return sorted(mixed)


def drop_patients(
    images: pd.DataFrame, rows: pd.DataFrame, patient_col: str, patients: Sequence[str]
) -> pd.DataFrame:
    """`images` without those of the given patients."""
    of = rows[patient_col].iloc[images["row"].to_numpy(dtype=int)]
    return images[~of.isin(set(patients)).to_numpy()].reset_index(drop=True)
