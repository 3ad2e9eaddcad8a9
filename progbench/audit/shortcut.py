"""`metadata_shortcut`: can the label be predicted from acquisition metadata alone?

A random forest (scikit-learn, class-weighted) on the header fields and file-name tokens of
progbench.audit.metadata, out-of-fold under patient-grouped stratified CV; MCC at 0.5 with a
patient-bootstrap CI. Flag when the CI lies above 0. The most predictive fields are named by
the same CV run on each field alone (a depth-limited tree per field).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from progbench.audit.check import CheckResult
from progbench.audit.context import AuditContext
from progbench.audit.metadata import CATEGORICAL, FILE_NAME, Metadata, read_metadata
from progbench.audit.stats import Scored, grouped_oof, mcc, score

TOP_FIELDS = 3
TOP_TOKENS = 5


def _design(meta: Metadata, fields: list[str]) -> tuple[pd.DataFrame, Any]:
    """The fields' columns and a ColumnTransformer that encodes them (numeric: median-imputed
    with a missing indicator; categorical: one-hot; tokens: as they are)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    cats = [f for f in fields if f in CATEGORICAL]
    nums = [f for f in fields if f not in CATEGORICAL and f != FILE_NAME]
    tokens = meta.columns_of(FILE_NAME) if FILE_NAME in fields else []
    frame = pd.concat(
        [meta.fields[nums], meta.fields[cats].astype(str), meta.tokens[tokens]], axis=1
    )
    parts: list[tuple[str, Any, list[str]]] = []
    if nums:
        imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        parts.append(("numeric", imputer, nums))
    if cats:
        parts.append(("categorical", OneHotEncoder(handle_unknown="ignore"), cats))
    if tokens:
        parts.append(("tokens", "passthrough", tokens))
    return frame, ColumnTransformer(parts, sparse_threshold=0.0)


def _model(meta: Metadata, fields: list[str], seed: int, full: bool) -> tuple[pd.DataFrame, Any]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.tree import DecisionTreeClassifier

    frame, encode = _design(meta, fields)
    clf = (
        RandomForestClassifier(
            n_estimators=100,
            min_samples_leaf=2,
            class_weight="balanced_subsample",
            random_state=seed,
            n_jobs=1,
        )
        if full
        else DecisionTreeClassifier(
            max_depth=4, min_samples_leaf=3, class_weight="balanced", random_state=seed
        )
    )
    return frame, make_pipeline(encode, clf)


def _token_association(meta: Metadata, y: np.ndarray) -> list[dict[str, Any]]:
    """The file-name tokens most associated with the label (phi = MCC of token vs label)."""
    rows = [
        {"token": c.removeprefix("token:"), "phi": mcc(y, meta.tokens[c].to_numpy())}
        for c in meta.tokens.columns
        if meta.tokens[c].nunique() > 1
    ]
    rows.sort(key=lambda r: -abs(r["phi"]))
    return [r | {"phi": round(r["phi"], 4)} for r in rows[:TOP_TOKENS]]


class MetadataShortcut:
    name = "metadata_shortcut"
    summary = "acquisition metadata alone (image geometry, bit depth, DICOM tags, file names)"

    def skip_reason(self, ctx: AuditContext) -> str | None:
        if len(np.unique(ctx.y)) < 2:
            return "the task's labels hold one class only"
        return None

    def run(self, ctx: AuditContext) -> CheckResult:
        cfg, y, groups = ctx.config, ctx.y, ctx.patients
        meta = read_metadata(ctx.task.manifest)
        fields = meta.varying()
        if not fields:
            return CheckResult(
                self.name,
                "ok",
                "no acquisition field varies across the images: metadata cannot carry the label",
                data={"fields": []},
            )
        frame, model = _model(meta, fields, cfg.seed, full=True)
        p = grouped_oof(model, frame, y, groups, cfg.cv_folds, cfg.seed)
        overall = score(groups, y, p, cfg.n_boot, cfg.seed)
        per_field = []
        for f in fields:
            frame_f, model_f = _model(meta, [f], cfg.seed, full=False)
            s = score(
                groups,
                y,
                grouped_oof(model_f, frame_f, y, groups, cfg.cv_folds, cfg.seed),
                cfg.n_boot,
                cfg.seed,
            )
            per_field.append({"field": f} | s.to_json())
        per_field.sort(key=lambda r: -r["mcc"])
        top = [r for r in per_field if r["ci"][0] is not None and r["ci"][0] > 0][:TOP_FIELDS]
        tokens = _token_association(meta, y) if FILE_NAME in fields else []
        data = {
            "fields": fields,
            "per_field": per_field,
            "top_fields": [r["field"] for r in top],
            "tokens": tokens,
        }
        return CheckResult(
            self.name,
            "flag" if overall.excludes_zero else "ok",
            _detail(overall, top, per_field, tokens),
            overall.mcc,
            "mcc",
            overall.ci,
            data,
        )


def _fmt(s: Scored | dict[str, Any]) -> str:
    m, ci = (s.mcc, s.ci) if isinstance(s, Scored) else (s["mcc"], s["ci"])
    lo, hi = ("?" if v is None else f"{v:.2f}" for v in ci)
    return f"MCC {m:.2f} [{lo}, {hi}]"


def _detail(
    overall: Scored,
    top: list[dict[str, Any]],
    per_field: list[dict[str, Any]],
    tokens: list[dict[str, Any]],
) -> str:
    if overall.excludes_zero:
        named = ", ".join(f"{r['field']} ({_fmt(r)})" for r in top) or (
            "no single field; a combination"
        )
        if any(r["field"] == FILE_NAME for r in top) and tokens:
            named += "; file-name tokens: " + ", ".join(
                f"{t['token']} (phi {t['phi']:+.2f})" for t in tokens[:3]
            )
        return (
            f"acquisition metadata alone predicts the label: {_fmt(overall)} under "
            f"patient-grouped CV; most predictive: {named}"
        )
    best = per_field[0]["field"] if per_field else "none"
    return f"metadata alone does not predict the label: {_fmt(overall)} (best field: {best})"
