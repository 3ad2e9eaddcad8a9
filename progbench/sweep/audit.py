"""A sweep's audits (`audit: true`): `progbench audit` of every prepared (task, backbone) at the
sweep's finish, after its runs, into `<runs>/<task>/audit/<backbone>/audit.json`.

Each audit uses the sweep's weights for the backbone, its first split scheme, folds, seed and
validation share (so the splits are the runs' own), the options of its first feature-path
strategy (image size, device, cache: the feature stores the LP cells made are reused) and the
report's bootstrap size. An audit that fails is a note, never a failed finish.
"""

from __future__ import annotations

import dataclasses

from progbench.audit.context import AuditConfig
from progbench.audit.runner import AuditRequest, run_audit
from progbench.errors import ProgbenchError
from progbench.sweep.execute import _weights_dir
from progbench.sweep.spec import Sweep
from progbench.train.plan import SplitRequest


def _options_strategy(sweep: Sweep) -> str:
    lp = [s for s in sweep.strategies if sweep.family(s) == "lp"]
    return (lp or sweep.strategies)[0]


def audit_sweep(sweep: Sweep) -> list[str]:
    """Run the audits of a sweep with `audit: true`; returns one note per audit."""
    cfg = sweep.config
    if not cfg.audit:
        return []
    notes = []
    strategy = _options_strategy(sweep)
    for t in sweep.tasks:
        if t.task is None:
            notes.append(f"audit of {t.name} skipped: the task is not prepared")
            continue
        for backbone in sweep.backbones:
            options = sweep.options_for(strategy, t.name)
            request = AuditRequest(
                task=t.task,
                backbone=backbone,
                runs_root=sweep.runs_root,
                weights=sweep.weights_for(backbone),
                splits=SplitRequest(
                    scheme=cfg.schemes[0],
                    folds=cfg.folds,
                    val_fraction=cfg.val_fraction,
                    seed=cfg.seed,
                ),
                options=dataclasses.replace(options, cache_dir=sweep.cache_dir),
                config=AuditConfig(n_boot=cfg.report.n_boot, seed=cfg.seed, probe=cfg.probe),
            )
            try:
                # The sweep's weights folder, as its units see it: the same weights
                # fingerprint, so the LP cells' feature stores are found again.
                with _weights_dir(sweep.weights_dir):
                    report = run_audit(request)
            except ProgbenchError as err:
                notes.append(f"audit of {t.name}, {backbone} failed: {err.message}")
                continue
            flagged = ", ".join(c.name for c in report.flagged)
            notes.append(
                f"audit of {t.name}, {backbone}: "
                + (f"FLAGGED {flagged}" if flagged else "no flag")
                + f" ({report.path})"
            )
    return notes
