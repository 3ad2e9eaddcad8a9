"""The audit in a sweep (`audit: true`) and in the report: audit.json written at the sweep's
finish into the runs tree, and report.html's Audit section, flags first, before the results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from progbench.report import html as H
from progbench.report.audit import collect_audits, with_audit
from progbench.runs import iter_runs, read_run
from tests.helpers.cli import cli
from tests.helpers.sweeps import write_sweep

pytestmark = pytest.mark.xdist_group("test_audit")


def _doc(task: str, backbone: str, statuses: dict[str, str]) -> dict:
    return {
        "task": task,
        "backbone": backbone,
        "weights": "pretrained",
        "checks": [
            {
                "name": name,
                "status": status,
                "detail": f"{name} says {status}",
                "metric": 0.5 if status != "skip" else None,
                "metric_name": "mcc",
                "ci": [0.25, 0.75] if status != "skip" else None,
                "data": {},
            }
            for name, status in statuses.items()
        ],
    }


def test_collect_audits_reads_the_runs_tree_and_leaves_out_unreadable_files(
    tmp_path: Path,
) -> None:
    good = tmp_path / "t1" / "audit" / "resnet18" / "audit.json"
    good.parent.mkdir(parents=True)
    good.write_text(json.dumps(_doc("t1", "resnet18", {"metadata_shortcut": "ok"})))
    bad = tmp_path / "t2" / "audit" / "resnet18" / "audit.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    (tmp_path / "t3" / "kfold" / "resnet18").mkdir(parents=True)  # runs, no audit
    assert [d["task"] for d in collect_audits(tmp_path)] == ["t1"]
    assert collect_audits(tmp_path / "nowhere") == []


def test_the_audit_section_comes_first_with_flags_first() -> None:
    page = H.Page("p", [], [("mcc", "MCC")], [H.Section("tables", "Results", shared=[])])
    assert with_audit(page, []) is page
    audits = [
        _doc("t1", "resnet18", {"metadata_shortcut": "ok", "random_init_control": "skip"}),
        _doc("t2", "dinov2-s", {"metadata_shortcut": "flag", "label_permutation": "ok"}),
    ]
    out = with_audit(page, audits)
    assert [s.id for s in out.sections] == ["audit", "tables"]
    summary, _, table = out.sections[0].shared
    assert summary.text == "FLAGGED: 1 check(s): metadata_shortcut (t2, dinov2-s)."
    assert [(r[0].text, r[1].text, r[3].text, r[4].text) for r in table.rows] == [
        ("t2", "dinov2-s", "metadata_shortcut", "FLAG"),
        ("t1", "resnet18", "metadata_shortcut", "OK"),
        ("t2", "dinov2-s", "label_permutation", "OK"),
        ("t1", "resnet18", "random_init_control", "SKIP"),
    ]
    assert table.rows[0][5].note == "[0.25, 0.75]"
    html = H.render_page(out)
    assert html.index('id="audit"') < html.index('id="tables"')
    assert "metadata_shortcut says flag" in html


@pytest.mark.slow
def test_a_sweep_with_audit_true_writes_audits_and_the_report_shows_them(
    tmp_path: Path,
) -> None:
    from progbench.models.loaders import load_backbone, save_backbone

    weights = save_backbone(load_backbone("tiny-resnet", "random", seed=1), tmp_path / "w")
    path = write_sweep(
        tmp_path,
        backbones=["tiny-resnet"],
        strategies=["lp"],
        fewshot=None,
        weights=str(weights),
        audit=True,
    )
    res = cli("sweep", "run", path)
    assert res.code == 0, res.text
    audit = tmp_path / "runs" / "tiny-severity" / "audit" / "tiny-resnet" / "audit.json"
    doc = json.loads(audit.read_text())
    assert doc["weights"] == str(weights) and doc["scheme"] == "kfold"
    statuses = {c["name"]: c["status"] for c in doc["checks"]}
    assert set(statuses) == {
        "metadata_shortcut",
        "centre_predicts_label",
        "random_init_control",
        "label_permutation",
    }
    assert "skip" not in statuses.values(), doc["checks"]
    assert "audit of tiny-severity, tiny-resnet" in res.text
    # The audit probed the splits and the feature store of the sweep's LP runs.
    run = read_run(iter_runs(tmp_path / "runs").done[0])
    features = run.spec.settings["features"]
    assert doc["feature_stores"][str(weights)] == features
    assert Path(doc["splits"]).parent == tmp_path / "runs" / "tiny-severity"
    html = (tmp_path / "runs" / "report" / "report.html").read_text()
    assert html.index('id="audit"') < html.index('id="tables"')
    for name in statuses:
        assert re.search(rf"<td[^>]*>{name}</td>", html)
    # `progbench report` on the same tree finds the audit too.
    res = cli("report", tmp_path / "runs", "--out", tmp_path / "again", "--n-boot", "20")
    assert res.code == 0, res.text
    again = (tmp_path / "again" / "report.html").read_text()
    assert again.index('id="audit"') < again.index('id="tables"')
    # Without the switch: no audit.
    plain = write_sweep(
        tmp_path / "plain", backbones=["tiny-resnet"], strategies=["lp"], fewshot=None
    )
    assert cli("sweep", "run", plain).code == 0
    assert not list((tmp_path / "plain" / "runs").rglob("audit.json"))
    assert 'id="audit"' not in (tmp_path / "plain" / "runs" / "report" / "report.html").read_text()
