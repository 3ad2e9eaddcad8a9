"""`random_init_control`: the same backbone with random weights, probed the same way.

The random-init feature store is extracted (or reused) through the same content-keyed
machinery as any other. Flag when the random-init MCC reaches the pretrained run's CI (its point
estimate at or above the CI's lower end: the pretrained weights add nothing measurable), or when
the random-init CI's lower end exceeds `chance_mcc` (0.2): a network that has learned nothing
predicts the label well, so the signal is a low-level, pixel-level one (a shortcut such as
burnt-in text, borders, exposure or scanner noise) until shown otherwise.
"""

from __future__ import annotations

from progbench.audit.check import CheckResult
from progbench.audit.context import RANDOM, AuditContext
from progbench.audit.stats import Scored


def _fmt(s: Scored) -> str:
    lo, hi = ("?" if v is None else f"{v:.2f}" for v in s.ci)
    return f"MCC {s.mcc:.2f} [{lo}, {hi}]"


class RandomInitControl:
    name = "random_init_control"
    summary = "the same backbone with random weights, linear probe on its features"

    def skip_reason(self, ctx: AuditContext) -> str | None:
        if ctx.weights == RANDOM:
            return "the audited weights are already random: no pretrained run to compare with"
        return None

    def run(self, ctx: AuditContext) -> CheckResult:
        pre = ctx.probe(ctx.weights)
        rnd = ctx.probe(RANDOM)
        lo = pre.scored.ci[0]
        no_gain = lo is not None and rnd.scored.mcc >= lo
        rnd_lo = rnd.scored.ci[0]
        above_chance = rnd_lo is not None and rnd_lo > ctx.config.chance_mcc
        reasons = []
        if no_gain:
            reasons.append(
                f"random weights ({_fmt(rnd.scored)}) reach the pretrained run's CI "
                f"({_fmt(pre.scored)}): the pretrained weights add nothing measurable"
            )
        if above_chance:
            reasons.append(
                f"random weights alone score well above chance (CI above "
                f"{ctx.config.chance_mcc:.2f}): look for a pixel-level shortcut"
            )
        detail = "; ".join(reasons) or (
            f"pretrained {_fmt(pre.scored)} vs random weights {_fmt(rnd.scored)}"
        )
        return CheckResult(
            self.name,
            "flag" if reasons else "ok",
            detail,
            rnd.scored.mcc,
            "mcc",
            rnd.scored.ci,
            {
                "pretrained": pre.to_json(),
                "random": rnd.to_json(),
                "no_gain": no_gain,
                "above_chance": above_chance,
            },
        )
