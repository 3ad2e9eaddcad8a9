"""The predictions table every run writes and the evaluator reads: one row per image with
image_id, patient_id, split (val|test), y_true (0/1) and p_pos; validated with every bad row named."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from progbench.errors import RunError

PREDICTION_COLUMNS = ("image_id", "patient_id", "split", "y_true", "p_pos")
SPLITS = ("val", "test")


def _bad_rows_message(
    source: str, column: str, rows: np.ndarray, values: pd.Series, want: str
) -> str:
    shown = ", ".join(f"row {int(i) + 1} ({values.iloc[int(i)]!r})" for i in rows[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return (
        f"{source}: column {column!r} has bad values at {shown}{more} "
        f"(data rows numbered from 1, header excluded); expected {want}"
    )


def validate_predictions(df: pd.DataFrame, source: str = "predictions") -> pd.DataFrame:
    """Check a predictions table and return a normalised copy.

    Rows are numbered from 1 in the order given (for a CSV, row i is on line i + 1).
    Extra columns are kept. Raises RunError naming the missing columns or the bad rows.
    """
    hint = (
        "A predictions table has columns image_id, patient_id, split (val|test), "
        "y_true (0 or 1) and p_pos (probability of the positive class, in [0, 1])."
    )
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise RunError(
            f"{source} lacks column(s) {', '.join(missing)} (found: {', '.join(map(str, df.columns))})",
            hint,
        )
    if len(df) == 0:
        raise RunError(f"{source} has no rows", hint)
    out = df.reset_index(drop=True).copy()

    for col in ("image_id", "patient_id"):
        text = out[col].astype("string").str.strip()
        bad = np.flatnonzero(text.isna().to_numpy() | (text.fillna("") == "").to_numpy())
        if len(bad):
            raise RunError(_bad_rows_message(source, col, bad, out[col], "a non-empty id"), hint)
        out[col] = text.astype(object)

    split = out["split"].astype("string").str.strip()
    bad = np.flatnonzero(~split.isin(SPLITS).fillna(False).to_numpy())
    if len(bad):
        raise RunError(
            _bad_rows_message(source, "split", bad, out["split"], "'val' or 'test'"), hint
        )
    out["split"] = split.astype(object)

    y = pd.to_numeric(out["y_true"], errors="coerce")
    bad = np.flatnonzero(~y.isin([0, 1]).to_numpy())
    if len(bad):
        raise RunError(_bad_rows_message(source, "y_true", bad, out["y_true"], "0 or 1"), hint)
    out["y_true"] = y.astype(np.int8)

    p = pd.to_numeric(out["p_pos"], errors="coerce").astype(float)
    ok = np.isfinite(p.to_numpy()) & (p.to_numpy() >= 0.0) & (p.to_numpy() <= 1.0)
    bad = np.flatnonzero(~ok)
    if len(bad):
        raise RunError(
            _bad_rows_message(source, "p_pos", bad, out["p_pos"], "a finite number in [0, 1]"),
            hint + " Apply a sigmoid or softmax to logits first.",
        )
    out["p_pos"] = p.astype(np.float64)

    dup = out["image_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        ids = sorted(set(out.loc[dup, "image_id"]))[:5]
        raise RunError(f"{source}: image_id values appear more than once: {ids}", hint)
    per_patient = out.groupby("patient_id")["split"].nunique()
    leaked = sorted(per_patient.index[per_patient > 1])[:5]
    if leaked:
        raise RunError(
            f"{source}: patient(s) {leaked} appear in both val and test",
            "Splits are patient-level: a patient's images belong to one part of a fold only.",
        )
    return out


def read_predictions_file(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a bare predictions file (.parquet or .csv)."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"predictions file not found: {path}", "Check the path.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix == ".csv":
            # Read as text so ids like "007" keep their zeros and bad numbers can be reported.
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            raise RunError(
                f"cannot read {path}: unknown extension {path.suffix!r}",
                "Give a .parquet or .csv file, a run directory, or a tree of runs.",
            )
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise RunError(f"cannot read {path}: {err}") from err
    return validate_predictions(df, str(path))
