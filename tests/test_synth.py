"""The synthetic chest-X-ray cohort: files, outcome model, centre shift, determinism, signal."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from progbench.config import load_task_yaml
from progbench.data.images import decode_image, load_image
from progbench.data.synth import (
    MANIFEST_COLUMNS,
    SynthSummary,
    make_center_profiles,
    patient_anatomy,
    render_radiograph,
    synthesize,
)
from progbench.errors import ConfigError

# Module fixtures build cohorts, trees or reports: on one xdist worker, so built once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_synth")]


@pytest.fixture(scope="module")
def strong(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    """A 200-patient, 3-centre cohort at signal 3 (300 is the default; 200 keeps tests fast)."""
    return synthesize(tmp_path_factory.mktemp("synth") / "strong", patients=200, signal=3.0)


@pytest.fixture(scope="module")
def manifest(strong: SynthSummary) -> pd.DataFrame:
    return pd.read_csv(strong.manifest)


@pytest.fixture(scope="module")
def features(strong: SynthSummary, manifest: pd.DataFrame) -> np.ndarray:
    """Crude statistics of the lung box at 64 px: whole box, lateral thirds, lower vs upper."""
    rows = []
    for r in manifest.itertuples():
        box = (r.box_x0, r.box_y0, r.box_x1, r.box_y1)
        a = load_image(strong.out / r.path, size=64, box=box).astype(np.float32) / 255
        lateral = np.concatenate([a[:, :21], a[:, 43:]], axis=1)
        rows.append(
            [
                a.mean(),
                a.std(),
                lateral.mean(),
                lateral.std(),
                *np.percentile(lateral, [10, 50, 90]),
                lateral[32:].mean() - lateral[:32].mean(),
                lateral.mean() - a[:, 21:43].mean(),
            ]
        )
    return np.array(rows)


@pytest.mark.slow
def test_manifest_layout_and_tasks(strong: SynthSummary, manifest: pd.DataFrame) -> None:
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert manifest["image_id"].is_unique and len(manifest) == strong.n_images
    for outcome in ("severity", "death"):
        assert set(manifest[outcome].unique()) == {0, 1}
        task = load_task_yaml(strong.tasks[outcome])
        assert task.name == f"synth-{outcome}" and task.outcome == outcome
        assert task.positive == "1" and task.manifest == strong.manifest.resolve()
    assert all((strong.out / p).is_file() for p in manifest["path"])


def test_boxes_lie_inside_their_images(strong: SynthSummary, manifest: pd.DataFrame) -> None:
    sides, peaks = [], []
    for r in manifest.head(40).itertuples():
        img = decode_image(strong.out / r.path)
        h, w = img.shape
        sides += [h, w]
        peaks.append(float(img.max()))
        assert 0 <= r.box_x0 < r.box_x1 <= w and 0 <= r.box_y0 < r.box_y1 <= h
        assert (r.box_x1 - r.box_x0) > 0.4 * w  # both lungs, not one
    assert min(sides) >= 256 and max(sides) <= 512 and len(set(sides)) > 10
    assert min(peaks) <= 255 < max(peaks)  # both 8-bit and 16-bit PNGs


def test_prevalences_and_outcome_correlation(strong: SynthSummary) -> None:
    assert strong.n_patients == 200
    assert abs(strong.prevalences["severity"] - 0.45) < 0.08
    assert abs(strong.prevalences["death"] - 0.15) < 0.06
    df = pd.read_csv(strong.manifest).groupby("patient_id")[["severity", "death"]].first()
    # Death is correlated with severity: more common among severe patients.
    assert df.loc[df.severity == 1, "death"].mean() > 2 * df.loc[df.severity == 0, "death"].mean()


def test_patients_have_one_centre_and_some_have_several_studies(manifest: pd.DataFrame) -> None:
    per_patient = manifest.groupby("patient_id")
    assert (per_patient["center"].nunique() == 1).all()
    assert (per_patient[["severity", "death"]].nunique() == 1).all().all()
    counts = per_patient.size()
    assert set(counts.unique()) == {1, 2, 3} and (counts > 1).mean() > 0.15
    for _, g in per_patient:
        assert g["study_date"].is_unique and list(g["study_date"]) == sorted(g["study_date"])
    assert manifest["center"].nunique() == 3


def test_centre_shift_is_measurable(features: np.ndarray, manifest: pd.DataFrame) -> None:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    pred = cross_val_predict(clf, features, manifest["center"], cv=cv)
    accuracy = (pred == manifest["center"]).mean()
    assert accuracy > 0.7, accuracy  # chance is ~1/3


def test_signal_3_is_learnable_from_crude_features(
    features: np.ndarray, manifest: pd.DataFrame
) -> None:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedGroupKFold(5, shuffle=True, random_state=0)
    y = manifest["severity"]
    p = cross_val_predict(
        clf, features, y, groups=manifest["patient_id"], cv=cv, method="predict_proba"
    )[:, 1]
    auc = roc_auc_score(y, p)
    assert 0.75 < auc < 0.99, auc  # well above chance, yet not a pixel flag


def test_signal_scales_the_disease_effect() -> None:
    profile = make_center_profiles(1, np.random.default_rng(0))[0]
    anatomy = patient_anatomy(np.random.default_rng(1))

    def render(extent: float, signal: float, seed: int) -> tuple[np.ndarray, tuple[int, ...]]:
        return render_radiograph(
            np.random.default_rng(seed), anatomy, profile, extent, signal, "PA"
        )

    # signal 0: the image does not depend on disease extent at all.
    np.testing.assert_array_equal(render(0.05, 0.0, 7)[0], render(0.95, 0.0, 7)[0])

    # signal 3: more extent, brighter lung boxes (averaged over acquisitions).
    def lung_mean(extent: float) -> float:
        vals = []
        for seed in range(12):
            img, (x0, y0, x1, y1) = render(extent, 3.0, seed)
            vals.append(img[y0:y1, x0:x1].mean())
        return float(np.mean(vals))

    assert lung_mean(0.9) > lung_mean(0.1) + 0.02


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = synthesize(tmp_path / "a", patients=12, centers=2, seed=5, workers=1)
    b = synthesize(tmp_path / "b", patients=12, centers=2, seed=5, workers=3)
    c = synthesize(tmp_path / "c", patients=12, centers=2, seed=6)
    da, db, dc = _digests(a.out), _digests(b.out), _digests(c.out)
    assert da == db and len(da) == a.n_images + 4  # images, manifest, 2 tasks, synth.json
    assert da["manifest.csv"] != dc["manifest.csv"]


def test_existing_cohort_is_reused_not_overwritten(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    first = synthesize(
        tmp_path / "c", patients=5, centers=1, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (first.n_images, first.n_images)
    mtime = first.manifest.stat().st_mtime_ns
    again = synthesize(tmp_path / "c", patients=5, centers=1)
    assert again == first and first.manifest.stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match=r"signal 1.0 \(asked 2.0\); refusing to overwrite"):
        synthesize(tmp_path / "c", patients=5, centers=1, signal=2.0)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="other files"):
        synthesize(tmp_path / "other", patients=5, centers=1)


@pytest.mark.parametrize(
    "kwargs", [{"patients": 0}, {"patients": 2, "centers": 3}, {"signal": -1.0}, {"seed": -1}]
)
def test_bad_arguments_are_rejected(tmp_path: Path, kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        synthesize(tmp_path / "x", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


def test_dicom_variant_decodes_like_the_png_cohort(tmp_path: Path) -> None:
    png = synthesize(tmp_path / "png", patients=14, centers=2, seed=3)
    dcm = synthesize(tmp_path / "dcm", patients=14, centers=2, seed=3, dicom=True)
    again = synthesize(tmp_path / "again", patients=14, centers=2, seed=3, dicom=True, workers=1)
    assert _digests(dcm.out) == _digests(again.out)  # DICOM UIDs are seeded too
    mp, md = pd.read_csv(png.manifest), pd.read_csv(dcm.manifest)
    assert list(mp["image_id"]) == list(md["image_id"]) and (md["path"].str.endswith(".dcm")).all()
    kinds = set()
    for rp, rd in zip(mp.itertuples(), md.itertuples(), strict=True):
        ds = pydicom.dcmread(dcm.out / rd.path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.BitsAllocated == 16 and ds.PatientID == rd.patient_id
        kinds.add((ds.PhotometricInterpretation, ds.BitsStored, "WindowCenter" in ds))
        # Same rendered film, so the same picture after decoding, whatever the encoding
        # (MONOCHROME1 inverted back, rescale undone, a 99 % window clipping the tails).
        a = load_image(png.out / rp.path, size=64).astype(float)
        b = load_image(dcm.out / rd.path, size=64).astype(float)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98
    photometric = {k[0] for k in kinds}
    assert photometric == {"MONOCHROME1", "MONOCHROME2"}
    assert {k[1] for k in kinds} == {12, 16} and {k[2] for k in kinds} == {True, False}
