"""`label_permutation`: is the probe's MCC better than the same probe on permuted labels?

Per repeat, the labels of every fold's training and validation images are shuffled (whole
patients when each patient has one label), the probe refitted with the same model selection
and scored on the true test labels. The p-value is (1 + #{null MCC >= observed}) / (1 + n).
Flag when p > alpha: the observed MCC is within what labels the probe never saw give.
"""

from __future__ import annotations

import numpy as np

from progbench.audit.check import CheckResult
from progbench.audit.context import AuditContext
from progbench.audit.lp import permute_training_labels, probe_oof
from progbench.audit.stats import mcc, permutation_p


class LabelPermutation:
    name = "label_permutation"
    summary = "the linear probe refitted on labels permuted within each training part"

    def skip_reason(self, ctx: AuditContext) -> str | None:
        if ctx.config.permutations < 1:
            return "no permutations asked for (--permutations 0)"
        return None

    def run(self, ctx: AuditContext) -> CheckResult:
        cfg = ctx.config
        observed = ctx.probe(ctx.weights)
        x, _ = ctx.feature_array(ctx.weights)
        probe = ctx.probe_config
        rng = np.random.default_rng(cfg.seed)
        null = np.empty(cfg.permutations)
        for i in range(cfg.permutations):
            parts = []
            for fold in ctx.folds:
                y_fit = permute_training_labels(ctx.y, ctx.patients, fold, rng)
                parts.append(probe_oof(x, y_fit, [fold], probe))
            rows = np.concatenate([r for r, _ in parts])
            p = np.concatenate([q for _, q in parts])
            null[i] = mcc(ctx.y[rows], p)
        pval = permutation_p(observed.scored.mcc, null)
        flag = pval > cfg.alpha
        verdict = "no better than permuted labels" if flag else "better than permuted labels"
        detail = (
            f"observed MCC {observed.scored.mcc:.2f} vs permuted-label MCC "
            f"{null.mean():.2f} (95th percentile {np.percentile(null, 95):.2f}, "
            f"{cfg.permutations} permutations): p = {pval:.3f}, {verdict}"
        )
        return CheckResult(
            self.name,
            "flag" if flag else "ok",
            detail,
            pval,
            "p_value",
            None,
            {
                "observed": observed.to_json(),
                "permutations": cfg.permutations,
                "alpha": cfg.alpha,
                "null_mean": float(null.mean()),
                "null_q95": float(np.percentile(null, 95)),
                "null": [round(float(v), 6) for v in null],
            },
        )
