"""`centre_predicts_label`: how well does the centre alone predict the label?

With several centres, a class-weighted logistic regression on the one-hot centre (scikit-learn),
out-of-fold under patient-grouped stratified CV, scored by MCC with a patient-bootstrap CI; the
per-centre prevalence is reported. Flag when the CI lies above 0: prevalence differs between
centres, so anything that identifies the centre (scanner, protocol, image statistics) predicts
the label, and a LOCO test centre's prevalence differs from its training centres'.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from progbench.audit.check import CheckResult
from progbench.audit.context import AuditContext
from progbench.audit.stats import grouped_oof, score


class CentrePredictsLabel:
    name = "centre_predicts_label"
    summary = "the centre alone as a predictor, and the per-centre prevalence (a LOCO hazard)"

    def skip_reason(self, ctx: AuditContext) -> str | None:
        n = ctx.task.manifest.frame["center"].nunique()
        if n < 2:
            return f"the cohort has {n} centre: nothing to compare"
        return None

    def run(self, ctx: AuditContext) -> CheckResult:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder

        cfg, y = ctx.config, ctx.y
        centre = ctx.task.manifest.frame["center"].astype(str).to_numpy()
        model = make_pipeline(
            OneHotEncoder(handle_unknown="ignore"),
            LogisticRegression(class_weight="balanced"),
        )
        p = grouped_oof(model, centre[:, None], y, ctx.patients, cfg.cv_folds, cfg.seed)
        s = score(ctx.patients, y, p, cfg.n_boot, cfg.seed)
        table = (
            pd.DataFrame({"centre": centre, "y": y, "patient": ctx.patients})
            .groupby("centre")
            .agg(images=("y", "size"), patients=("patient", "nunique"), prevalence=("y", "mean"))
            .reset_index()
        )
        per_centre = [
            {
                "centre": r.centre,
                "images": int(r.images),
                "patients": int(r.patients),
                "prevalence": round(float(r.prevalence), 4),
            }
            for r in table.itertuples(index=False)
        ]
        prev = table["prevalence"].to_numpy()
        spread = f"prevalence {np.min(prev):.0%} to {np.max(prev):.0%} over {len(prev)} centres"
        lo, hi = ("?" if v is None else f"{v:.2f}" for v in s.ci)
        if s.excludes_zero:
            detail = (
                f"the centre alone predicts the label (MCC {s.mcc:.2f} [{lo}, {hi}]); {spread}: "
                "anything that identifies the centre is a shortcut, and LOCO test centres "
                "differ in prevalence"
            )
        else:
            detail = f"the centre alone does not predict the label (MCC {s.mcc:.2f} [{lo}, {hi}]); {spread}"
        return CheckResult(
            self.name,
            "flag" if s.excludes_zero else "ok",
            detail,
            s.mcc,
            "mcc",
            s.ci,
            {"per_centre": per_centre},
        )
