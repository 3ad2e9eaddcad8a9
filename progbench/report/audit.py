"""The report's "Audit" section: the `progbench audit` files of a runs tree
(`<runs>/<task>/audit/<backbone>/audit.json`, written by progbench.audit), one row per check,
flags first. The section comes before the results, so a flagged control is read before any
table. The report reads the JSON only (it sits below progbench.audit in the layering)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from progbench.report import html as H

AUDIT_GLOB = "*/audit/*/audit.json"
ORDER = {"flag": 0, "ok": 1, "skip": 2}
NOTE = (
    "Controls run by `progbench audit` on the cached features and the manifest "
    '(docs/METHODOLOGY.md, "Audit"). A flag means a result may be an artefact: acquisition '
    "metadata or the centre predicts the label, random weights do as well as the pretrained "
    "ones, or the probe does no better than on permuted labels. Skipped checks say why."
)


def collect_audits(runs_root: str | Path) -> list[dict[str, Any]]:
    """Every readable audit.json under `runs_root`, sorted by path; unreadable ones are left
    out (the audit writes atomically, so only a hand-edited file can be unreadable)."""
    out = []
    for path in sorted(Path(runs_root).glob(AUDIT_GLOB)):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("checks"), list):
            out.append(doc)
    return out


def _value(c: dict[str, Any]) -> H.Cell:
    m = c.get("metric")
    if m is None:
        return H.num(None, "")
    text = f"{c.get('metric_name') or ''} {m:.3f}".strip()
    ci = c.get("ci")
    note = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci and None not in ci else ""
    return H.Cell(text, sort=float(m), numeric=True, note=note)


def audit_rows(audits: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(audit, check) pairs, flags first, then by task, backbone and the checks' order."""
    pairs = [(a, c) for a in audits for c in a["checks"]]
    return sorted(
        pairs,
        key=lambda ac: (
            ORDER.get(str(ac[1].get("status")), 3),
            str(ac[0].get("task")),
            str(ac[0].get("backbone")),
        ),
    )


def audit_blocks(audits: Sequence[dict[str, Any]]) -> list[H.Block]:
    rows = audit_rows(audits)
    flagged = [(a, c) for a, c in rows if c.get("status") == "flag"]
    if flagged:
        names = "; ".join(f"{c['name']} ({a['task']}, {a['backbone']})" for a, c in flagged)
        summary = f"FLAGGED: {len(flagged)} check(s): {names}."
    else:
        summary = f"No check flagged ({len(rows)} check(s) over {len(audits)} audit(s))."
    table = H.Table(
        "audit",
        ["task", "backbone", "weights", "check", "status", "value", "detail"],
        [
            [
                H.Cell(str(a.get("task"))),
                H.Cell(str(a.get("backbone"))),
                H.Cell(str(a.get("weights"))),
                H.Cell(str(c.get("name"))),
                H.Cell(str(c.get("status")).upper(), best=c.get("status") == "flag"),
                _value(c),
                H.Cell(str(c.get("detail"))),
            ]
            for a, c in rows
        ],
        "Each check's status, its headline value (MCC with its patient-bootstrap 95% CI, or "
        "the permutation p-value) and what it found.",
    )
    return [H.Paragraph(summary), H.Paragraph(NOTE, note=True), table]


def with_audit(page: H.Page, audits: Sequence[dict[str, Any]]) -> H.Page:
    """`page` with the Audit section first (unchanged when there is no audit)."""
    if not audits:
        return page
    section = H.Section("audit", "Audit", shared=audit_blocks(audits))
    return dataclasses.replace(page, sections=[section, *page.sections])
