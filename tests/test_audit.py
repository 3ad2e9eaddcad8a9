"""`progbench audit`: each check on cohorts of pure-noise images with planted shortcuts
(tests/helpers/auditcohort.py), the skip reasons, audit.json's schema, the reuse of the
feature stores, the command line, the sweep switch and the report's Audit section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from progbench.audit.check import STATUSES
from progbench.audit.checks import CHECK_NAMES
from progbench.audit.context import AuditConfig
from progbench.audit.runner import AUDIT_FILE, AuditReport, AuditRequest, audit_dir, run_audit
from progbench.data.manifest import load_task
from progbench.errors import ConfigError
from progbench.train.options import FinetuneOptions
from progbench.train.plan import SplitRequest
from tests.helpers.auditcohort import write_audit_cohort
from tests.helpers.cli import cli

pytestmark = pytest.mark.xdist_group("test_audit")

FAST = AuditConfig(n_boot=200, permutations=19)  # smallest p-value 1/20 = 0.05


def _audit(
    root: Path,
    task: Path,
    weights: str = "random",
    checks: tuple[str, ...] | None = None,
    config: AuditConfig = FAST,
) -> AuditReport:
    return run_audit(
        AuditRequest(
            task=load_task(task),
            backbone="tiny-resnet",
            runs_root=root / "runs",
            weights=weights,
            splits=SplitRequest(scheme="kfold", folds=5),
            options=FinetuneOptions(device="cpu", cache_dir=root / "cache", image_size=32),
            config=config,
            checks=checks,
        )
    )


def _check(report: AuditReport, name: str) -> dict:
    (entry,) = [c for c in report.document["checks"] if c["name"] == name]
    return entry


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """'Pretrained' weights for the tiny twin: a saved random init of another seed."""
    from progbench.models.loaders import load_backbone, save_backbone

    out = tmp_path_factory.mktemp("weights") / "tiny-resnet-seed1"
    return str(save_backbone(load_backbone("tiny-resnet", "random", seed=1), out))


# ------------------------------------------------------------------ metadata_shortcut


@pytest.mark.parametrize(
    ("shortcut", "field"),
    [("geometry", "width"), ("name", "file_name"), ("uid", "file_name"), ("dicom", "manufacturer")],
)
def test_metadata_shortcut_flags_a_planted_acquisition_shortcut(
    tmp_path: Path, shortcut: str, field: str
) -> None:
    task = write_audit_cohort(tmp_path / "cohort", shortcut)  # type: ignore[arg-type]
    entry = _check(_audit(tmp_path, task, checks=("metadata_shortcut",)), "metadata_shortcut")
    assert entry["status"] == "flag", entry["detail"]
    assert entry["metric"] > 0.9 and entry["ci"][0] > 0
    assert field in entry["data"]["top_fields"]
    assert field in entry["detail"]
    if shortcut == "name":
        tokens = {t["token"]: t["phi"] for t in entry["data"]["tokens"]}
        assert tokens["scanb"] == pytest.approx(1.0) and tokens["scana"] == pytest.approx(-1.0)
    if shortcut == "uid":  # the scanner's UID root, not the shared "1.2.840", nor image ids
        tokens = {t["token"]: t["phi"] for t in entry["data"]["tokens"]}
        assert tokens["113619"] == pytest.approx(1.0) and tokens["10008"] == pytest.approx(-1.0)
        assert "840" not in tokens


def test_metadata_shortcut_does_not_flag_the_same_cohort_without_it(tmp_path: Path) -> None:
    task = write_audit_cohort(tmp_path / "cohort", "none")
    entry = _check(_audit(tmp_path, task, checks=("metadata_shortcut",)), "metadata_shortcut")
    assert entry["status"] == "ok", entry["detail"]
    lo, hi = entry["ci"]
    assert lo <= 0 <= hi
    assert entry["data"]["top_fields"] == []
    # Per-patient ids never become tokens; the constant fields are left out.
    assert "width" not in entry["data"]["fields"]
    assert not any(
        t["token"].startswith("0") and len(t["token"]) == 3 for t in entry["data"]["tokens"]
    )


def test_metadata_reads_dicom_tags_and_image_headers(tmp_path: Path) -> None:
    from progbench.audit.metadata import read_metadata

    task = load_task(write_audit_cohort(tmp_path / "cohort", "dicom", patients=10))
    meta = read_metadata(task.manifest).fields
    assert set(meta["manufacturer"]) == {"VendorA", "VendorB"}
    assert set(meta["modality"]) == {"CR"} and set(meta["view_position"]) == {"PA"}
    assert meta["pixel_spacing"].tolist() == [0.2] * len(meta)
    assert (meta["width"] == 32).all() and (meta["bit_depth"] == 8).all()
    png = load_task(write_audit_cohort(tmp_path / "png", "geometry", patients=10))
    fields = read_metadata(png.manifest).fields
    wide = fields["width"] == 40
    assert wide.any() and (fields.loc[wide, "aspect"] == 40 / 32).all()
    assert (fields["mode"] == "L").all() and (fields["format"] == "png").all()


# ------------------------------------------------------------------ skip reasons


def test_each_check_skips_with_its_reason(tmp_path: Path) -> None:
    task = write_audit_cohort(tmp_path / "cohort", "none", centers=1)
    report = _audit(tmp_path, task, "random", config=AuditConfig(n_boot=50, permutations=0))
    reasons = {c["name"]: (c["status"], c["detail"]) for c in report.document["checks"]}
    assert reasons["random_init_control"] == (
        "skip",
        "the audited weights are already random: no pretrained run to compare with",
    )
    assert reasons["label_permutation"] == ("skip", "no permutations asked for (--permutations 0)")
    assert reasons["centre_predicts_label"] == (
        "skip",
        "the cohort has 1 centre: nothing to compare",
    )
    assert reasons["metadata_shortcut"][0] == "ok"


def test_a_check_that_cannot_run_is_skipped_with_the_error(tmp_path: Path) -> None:
    task = write_audit_cohort(tmp_path / "cohort", "none")
    missing = str(tmp_path / "no-such-weights")
    report = _audit(
        tmp_path, task, missing, checks=("random_init_control", "centre_predicts_label")
    )
    entry = _check(report, "random_init_control")
    assert entry["status"] == "skip" and "no-such-weights" in entry["detail"]
    assert _check(report, "centre_predicts_label")["status"] == "ok"  # the others still run


def test_unknown_checks_are_refused_by_name(tmp_path: Path) -> None:
    task = write_audit_cohort(tmp_path / "cohort", "none", patients=20)
    with pytest.raises(ConfigError, match=r"unknown audit check.*nope"):
        _audit(tmp_path, task, checks=("nope",))


# ------------------------------------------------------------------ centre_predicts_label


def test_centre_predicts_label_flags_prevalence_that_differs_by_centre(tmp_path: Path) -> None:
    task = write_audit_cohort(tmp_path / "cohort", "none")
    manifest = tmp_path / "cohort" / "manifest.csv"
    df = pd.read_csv(manifest, dtype=str)
    patient_no = df["patient_id"].str[1:].astype(int)
    # Centre C1 holds 90% of the positives' patients and 10% of the negatives'.
    df["center"] = [
        "C1" if (y == "1") == (n % 10 != 0) else "C0"
        for y, n in zip(df["label"], patient_no, strict=True)
    ]
    df.to_csv(manifest, index=False)
    entry = _check(
        _audit(tmp_path, task, checks=("centre_predicts_label",)), "centre_predicts_label"
    )
    assert entry["status"] == "flag" and entry["ci"][0] > 0
    per = {r["centre"]: r for r in entry["data"]["per_centre"]}
    y = df["label"].astype(int)
    for c in ("C0", "C1"):
        assert per[c]["prevalence"] == pytest.approx(y[df["center"] == c].mean(), abs=1e-4)
        assert per[c]["images"] == int((df["center"] == c).sum())
    # Without the planted difference (the same prevalence in both centres): no flag.
    plain = write_audit_cohort(tmp_path / "plain", "none")
    entry = _check(
        _audit(tmp_path / "p", plain, checks=("centre_predicts_label",)), "centre_predicts_label"
    )
    assert entry["status"] == "ok"


# ------------------------------------------------------------------ probes on features
# Feature extraction (two stores) and the LP folds: seconds, so marked slow.


@pytest.fixture(scope="module")
def pixel_audit(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: str
) -> tuple[Path, AuditReport, str]:
    """LP trained on the pixel-signal cohort with the checkpoint, then the full audit."""
    from progbench.train.pipeline import TrainRequest, run_train

    root = tmp_path_factory.mktemp("pixels")
    task_file = write_audit_cohort(root / "cohort", "pixels")
    opts = FinetuneOptions(device="cpu", cache_dir=root / "cache", image_size=32)
    trained = run_train(
        TrainRequest(
            task=load_task(task_file),
            backbone="tiny-resnet",
            strategy="lp",
            splits=SplitRequest(scheme="kfold", folds=5),
            runs_root=root / "runs",
            weights=checkpoint,
            options=opts,
        ),
        score=False,
    )
    return root, _audit(root, task_file, checkpoint), trained.features.key


@pytest.mark.slow
def test_audit_json_schema(pixel_audit: tuple[Path, AuditReport, str], checkpoint: str) -> None:
    root, report, _ = pixel_audit
    assert report.path == audit_dir(root / "runs", "noise-label", "tiny-resnet") / AUDIT_FILE
    doc = json.loads(report.path.read_text())
    assert doc == report.document
    assert doc["task"] == "noise-label" and doc["backbone"] == "tiny-resnet"
    assert doc["weights"] == checkpoint and doc["scheme"] == "kfold"
    assert [c["name"] for c in doc["checks"]] == list(CHECK_NAMES)
    for c in doc["checks"]:
        assert set(c) == {"name", "status", "detail", "metric", "metric_name", "ci", "data"}
        assert c["status"] in STATUSES and isinstance(c["detail"], str) and c["detail"]
        assert c["metric"] is None or isinstance(c["metric"], float)
        assert c["ci"] is None or (len(c["ci"]) == 2 and c["ci"][0] <= c["metric"] <= c["ci"][1])
    assert not list(report.path.parent.glob(".*tmp"))  # written atomically, nothing left over


@pytest.mark.slow
def test_the_audit_reuses_the_feature_stores_of_train(
    pixel_audit: tuple[Path, AuditReport, str], checkpoint: str
) -> None:
    root, report, lp_store = pixel_audit
    stores = report.document["feature_stores"]
    assert stores[checkpoint] == lp_store  # the store the LP runs were trained on
    assert stores["random"] != lp_store
    on_disk = sorted(p.stem for p in (root / "cache").rglob("*.zarr") if "features" in p.parts)
    assert on_disk == sorted(stores.values())
    again = _audit(
        root, root / "cohort" / "tasks" / "label.yaml", checkpoint, checks=("random_init_control",)
    )
    assert again.document["feature_stores"] == stores
    assert (
        sorted(p.stem for p in (root / "cache").rglob("*.zarr") if "features" in p.parts) == on_disk
    )


@pytest.mark.slow
def test_random_init_control_flags_a_signal_random_weights_find(
    pixel_audit: tuple[Path, AuditReport, str],
) -> None:
    _, report, _ = pixel_audit
    entry = _check(report, "random_init_control")
    # The pixels carry the label: random weights find it alone, and the "pretrained" weights
    # (another random init) add nothing.
    assert entry["status"] == "flag"
    assert entry["data"]["above_chance"] and entry["data"]["no_gain"]
    assert entry["ci"][0] > FAST.chance_mcc
    assert "pixel-level shortcut" in entry["detail"]


@pytest.mark.slow
def test_label_permutation_p_value_of_a_real_signal(
    pixel_audit: tuple[Path, AuditReport, str],
) -> None:
    _, report, _ = pixel_audit
    entry = _check(report, "label_permutation")
    assert entry["status"] == "ok"
    assert entry["metric"] == pytest.approx(1 / (FAST.permutations + 1))
    assert len(entry["data"]["null"]) == FAST.permutations
    assert max(entry["data"]["null"]) < entry["data"]["observed"]["mcc"]


@pytest.mark.slow
def test_label_permutation_and_random_init_on_noise(tmp_path: Path, checkpoint: str) -> None:
    task = write_audit_cohort(tmp_path / "cohort", "none")
    report = _audit(tmp_path, task, checkpoint, checks=("random_init_control", "label_permutation"))
    perm = _check(report, "label_permutation")
    assert perm["status"] == "flag" and perm["metric"] > FAST.alpha
    rnd = _check(report, "random_init_control")
    # Noise: the "pretrained" run's CI reaches 0, random weights reach its CI; not above chance.
    assert rnd["status"] == "flag" and rnd["data"]["no_gain"] and not rnd["data"]["above_chance"]


# ------------------------------------------------------------------ the command line


def test_the_command_prints_a_table_and_writes_audit_json(tmp_path: Path) -> None:
    task = write_audit_cohort(tmp_path / "cohort", "name", patients=40)
    args = [
        "audit",
        task,
        "--backbone",
        "tiny-resnet",
        "--weights",
        "random",
        "--runs",
        tmp_path / "runs",
        "--out",
        tmp_path / "out",
        "--n-boot",
        "100",
        "--check",
        "metadata_shortcut,random_init_control",
    ]
    res = cli(*args)
    assert res.code == 0, res.text
    assert "metadata_shortcut" in res.out and "FLAG" in res.out and "SKIP" in res.out
    assert "flagged: metadata_shortcut" in res.err
    doc = json.loads((tmp_path / "out" / AUDIT_FILE).read_text())
    assert [c["status"] for c in doc["checks"]] == ["flag", "skip"]
    assert cli(*args, "--fail-on-flag").code == 3
    bad = cli(
        "audit", task, "--backbone", "tiny-resnet", "--check", "nope", "--runs", tmp_path / "r"
    )
    assert bad.code == 2 and "unknown audit check" in bad.err


# ------------------------------------------------------------------ the statistics


def test_permutation_p_value_counts_ties_and_is_never_zero() -> None:
    from progbench.audit.stats import permutation_p

    assert permutation_p(0.9, np.array([0.1, 0.2, 0.3])) == pytest.approx(1 / 4)
    assert permutation_p(0.2, np.array([0.1, 0.2, 0.3])) == pytest.approx(3 / 4)
    assert permutation_p(-1.0, np.zeros(9)) == pytest.approx(1.0)


def test_score_is_sklearns_mcc_with_a_patient_bootstrap_ci() -> None:
    from sklearn.metrics import matthews_corrcoef

    from progbench.audit.stats import score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.5 * y + 0.6 * rng.random(200), 0, 1)
    patients = np.repeat(np.arange(100), 2).astype(str)
    s = score(patients, y, p, n_boot=300, seed=1)
    assert s.mcc == pytest.approx(matthews_corrcoef(y, p >= 0.5))
    assert s.ci[0] < s.mcc < s.ci[1] and s.excludes_zero and s.n == 200


def test_permuted_labels_stay_in_the_training_part_and_with_their_patients() -> None:
    from progbench.audit.lp import FoldRows, permute_training_labels

    patients = np.repeat([f"P{i}" for i in range(30)], 2)
    y = np.repeat(np.arange(30) % 3 == 0, 2).astype(np.int64)
    fold = FoldRows(train=np.arange(0, 40), val=np.arange(40, 50), test=np.arange(50, 60))
    rng = np.random.default_rng(0)
    moved = False
    for _ in range(5):
        out = permute_training_labels(y, patients, fold, rng)
        assert np.array_equal(out[fold.test], y[fold.test])  # test labels never touched
        part = np.concatenate([fold.train, fold.val])
        assert sorted(out[part]) == sorted(y[part])  # the same labels, shuffled
        assert np.array_equal(out[0::2], out[1::2])  # both images of a patient agree
        moved |= not np.array_equal(out, y)
    assert moved
