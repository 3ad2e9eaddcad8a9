"""Synthetic multi-centre chest-X-ray cohort: progbench's embedded default dataset.

A latent per-patient disease score drives two binary outcomes (severity, death) and the amount
of bilateral lung opacity in every radiograph of that patient; each centre adds its own
acquisition shift. The generative model, every parameter and why it was chosen are written up
in docs/SYNTHETIC_COHORT.md. Everything is drawn from `seed`: the same arguments give
byte-identical files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image
from scipy.special import expit
from scipy.stats import norm

from progbench.atomic import atomic_dir
from progbench.errors import ConfigError

GENERATOR_VERSION = 1  # bump when the model changes: synth.json records it
OUTCOMES = ("severity", "death")
MANIFEST_COLUMNS = (
    "image_id",
    "path",
    "patient_id",
    "center",
    "severity",
    "death",
    "study_date",
    "view",
    "box_x0",
    "box_y0",
    "box_x1",
    "box_y1",
)

# ---- outcome model (see docs/SYNTHETIC_COHORT.md, "Outcomes") ------------------------------
SEVERITY_PREVALENCE = 0.45
DEATH_PREVALENCE = 0.15
DEATH_LOADING = 0.7  # death latent = 0.7 score + sqrt(1 - 0.49) e: unit variance
IMAGE_STUDY_NOISE = 0.5  # sd of the per-study deviation from the patient's score
EXTENT_SLOPE = 2.0  # extent = expit(slope * (study score - severity cut))
IMAGES_PER_PATIENT_P = (0.7, 0.2, 0.1)  # P(1, 2, 3 studies)

# ---- opacity model: all disease-dependent terms are multiplied by `signal` -------------------
BASE_BLOBS = 2.0  # Poisson mean of disease-unrelated opacities (vessels, nodules, artefacts)
BLOBS_PER_EXTENT = 5.0  # extra Poisson mean per unit of extent, per unit of signal
BLOB_AMPLITUDE = (0.05, 0.14)
BLOB_SIGMA = (0.025, 0.07)  # in units of the image's short side
HAZE_PER_EXTENT = 0.025  # ground-glass density in the lower zones at extent 1, signal 1

# ---- acquisition (centre) model -----------------------------------------------------------------
GAMMA_RANGE = (0.7, 1.45)
CONTRAST_RANGE = (0.8, 1.2)
OFFSET_RANGE = (-0.08, 0.08)
NOISE_RANGE = (0.01, 0.045)
SIDE_RANGE = (256, 512)
START_DATE = date(2020, 3, 1)
SEVERITY_CUT = float(norm.ppf(1 - SEVERITY_PREVALENCE))


@dataclass(frozen=True)
class CenterProfile:
    """One centre's acquisition: display = (offset + contrast * density) ** gamma + noise."""

    name: str
    contrast: float
    gamma: float
    offset: float
    noise: float


@dataclass(frozen=True)
class SynthParams:
    """The arguments that determine a cohort; recorded in synth.json."""

    patients: int
    centers: int
    seed: int
    dicom: bool
    signal: float
    generator_version: int = GENERATOR_VERSION


@dataclass(frozen=True)
class SynthSummary:
    """Where the cohort was written and what it holds. Prevalences are fractions of patients."""

    out: Path
    manifest: Path
    tasks: dict[str, Path]
    n_images: int
    n_patients: int
    prevalences: dict[str, float]
    image_prevalences: dict[str, float]
    centers: tuple[CenterProfile, ...]


def synthesize(
    out: Path,
    patients: int = 300,
    centers: int = 3,
    seed: int = 0,
    dicom: bool = False,
    signal: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> SynthSummary:
    """Write a synthetic cohort to `out` (manifest.csv, images/, tasks/*.yaml, synth.json).

    The folder is built under a temporary name and renamed into place. If `out` already holds a
    cohort made with the same arguments it is returned as is; a different one is an error.
    `progress(done, total)` is called after each patient with the images written so far.
    `workers` threads render patients in parallel (numpy and Pillow's PNG encoder release the
    GIL); every patient has its own seeded generator, so the files do not depend on it.
    """
    out = Path(out)
    params = _check_params(patients, centers, seed, dicom, signal)
    existing = _existing(out, params)
    if existing is not None:
        return existing
    seed, signal, dicom = params.seed, params.signal, params.dicom

    cohort_rng = np.random.default_rng([seed, 0])
    profiles = make_center_profiles(params.centers, cohort_rng)
    cohort = _patients(params.patients, params.centers, cohort_rng)
    rows: list[dict[str, object]] = []
    total = sum(p.n_images for p in cohort)
    n_threads = workers if workers is not None else min(4, os.cpu_count() or 1)
    with atomic_dir(out) as tmp, ThreadPoolExecutor(max(1, n_threads)) as pool:
        jobs = pool.map(
            lambda p: _write_patient(tmp, p, profiles[p.center], seed, signal, dicom), cohort
        )
        for patient_rows in jobs:  # in patient order, whatever order the threads finish in
            rows.extend(patient_rows)
            if progress is not None:
                progress(len(rows), total)
        manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
        manifest.to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
        (tmp / "tasks").mkdir()
        for outcome in OUTCOMES:
            (tmp / "tasks" / f"{outcome}.yaml").write_text(_task_yaml(outcome, params))
        meta = json.dumps(asdict(params), indent=2, sort_keys=True) + "\n"
        (tmp / "synth.json").write_text(meta)
    return _summary(out, manifest, profiles)


# ------------------------------------------------------------------------------------ cohort


def _check_params(
    patients: int, centers: int, seed: int, dicom: bool, signal: float
) -> SynthParams:
    if int(patients) != patients or patients < 1:
        raise ConfigError(f"patients must be a positive integer, got {patients!r}")
    if int(centers) != centers or centers < 1:
        raise ConfigError(f"centers must be a positive integer, got {centers!r}")
    if centers > patients:
        raise ConfigError(
            f"centers ({centers}) exceeds patients ({patients}): every centre needs a patient",
            "Ask for more patients or fewer centres.",
        )
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if not np.isfinite(signal) or signal < 0:
        raise ConfigError(f"signal must be a finite number >= 0, got {signal!r}")
    return SynthParams(int(patients), int(centers), int(seed), bool(dicom), float(signal))


def _existing(out: Path, params: SynthParams) -> SynthSummary | None:
    if not out.exists():
        return None
    if not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder", "Choose another output folder.")
    if not any(out.iterdir()):
        return None
    meta = out / "synth.json"
    found = json.loads(meta.read_text()) if meta.is_file() else None
    wanted = asdict(params)
    if found != wanted:
        if isinstance(found, dict):
            diff = ", ".join(
                f"{k} {found.get(k)!r} (asked {v!r})"
                for k, v in wanted.items()
                if found.get(k) != v
            )
            what = f"a different synthetic cohort: {diff}"
        else:
            what = "other files"
        raise ConfigError(
            f"{out} already holds {what}; refusing to overwrite it",
            "Choose another output folder, or delete this one to regenerate.",
        )
    manifest = pd.read_csv(out / "manifest.csv")
    rng = np.random.default_rng([params.seed, 0])
    return _summary(out, manifest, make_center_profiles(params.centers, rng))


def _summary(
    out: Path, manifest: pd.DataFrame, profiles: tuple[CenterProfile, ...]
) -> SynthSummary:
    per_patient = manifest.groupby("patient_id")[list(OUTCOMES)].first()
    return SynthSummary(
        out=out,
        manifest=out / "manifest.csv",
        tasks={o: out / "tasks" / f"{o}.yaml" for o in OUTCOMES},
        n_images=len(manifest),
        n_patients=len(per_patient),
        prevalences={o: float(per_patient[o].mean()) for o in OUTCOMES},
        image_prevalences={o: float(manifest[o].mean()) for o in OUTCOMES},
        centers=profiles,
    )


def make_center_profiles(centers: int, rng: np.random.Generator) -> tuple[CenterProfile, ...]:
    """Acquisition settings spread evenly over each range (shuffled), then jittered.

    Even spreading guarantees that any two centres differ, whatever the seed.
    """

    def spread(lo: float, hi: float) -> np.ndarray:
        if centers == 1:
            return np.array([(lo + hi) / 2])
        grid = np.linspace(lo, hi, centers)
        jitter = rng.uniform(-0.15, 0.15, centers) * (hi - lo) / centers
        return np.clip(rng.permutation(grid) + jitter, lo, hi)

    gamma, contrast = spread(*GAMMA_RANGE), spread(*CONTRAST_RANGE)
    offset, noise = spread(*OFFSET_RANGE), spread(*NOISE_RANGE)
    return tuple(
        CenterProfile(
            name=f"C{i + 1}",
            contrast=round(float(contrast[i]), 4),
            gamma=round(float(gamma[i]), 4),
            offset=round(float(offset[i]), 4),
            noise=round(float(noise[i]), 4),
        )
        for i in range(centers)
    )


@dataclass(frozen=True)
class Patient:
    number: int  # 0-based; patient_id is P{number + 1:04d}
    score: float  # latent disease score, N(0, 1); severity = score above a cut
    severity: int
    death: int
    center: int
    n_images: int

    @property
    def patient_id(self) -> str:
        return f"P{self.number + 1:04d}"


def _patients(patients: int, centers: int, rng: np.random.Generator) -> list[Patient]:
    """Latent score, outcomes, centre and number of studies for every patient."""
    score = rng.standard_normal(patients)
    noise = rng.standard_normal(patients)
    death_latent = DEATH_LOADING * score + np.sqrt(1 - DEATH_LOADING**2) * noise
    death_cut = norm.ppf(1 - DEATH_PREVALENCE)
    # Unequal centre sizes (weights 1 .. 0.5); every centre gets at least one patient.
    weights = np.linspace(1.0, 0.5, centers)
    rest = rng.choice(centers, patients - centers, p=weights / weights.sum())
    center = rng.permutation(np.concatenate([np.arange(centers), rest]))
    n_images = rng.choice([1, 2, 3], patients, p=IMAGES_PER_PATIENT_P)
    return [
        Patient(
            number=i,
            score=float(score[i]),
            severity=int(score[i] > SEVERITY_CUT),
            death=int(death_latent[i] > death_cut),
            center=int(center[i]),
            n_images=int(n_images[i]),
        )
        for i in range(patients)
    ]


def _write_patient(
    root: Path, p: Patient, profile: CenterProfile, seed: int, signal: float, dicom: bool
) -> list[dict[str, object]]:
    """Render and write every study of one patient; return their manifest rows."""
    pid = p.patient_id
    anatomy = _patient_anatomy(np.random.default_rng([seed, 1, p.number]))
    day = START_DATE + timedelta(days=int(np.random.default_rng([seed, 3, p.number]).integers(120)))
    folder = root / "images" / profile.name / pid
    folder.mkdir(parents=True)
    rows: list[dict[str, object]] = []
    for k in range(p.n_images):
        rng = np.random.default_rng([seed, 2, p.number, k])
        if k:
            day += timedelta(days=int(rng.integers(1, 15)))
        view = "AP" if rng.random() < 0.3 else "PA"
        # Disease extent of this study: the patient's score plus per-study noise (progression,
        # positioning, inspiration), squashed to (0, 1) around the severity cut.
        study_score = p.score + IMAGE_STUDY_NOISE * rng.standard_normal()
        extent = float(expit(EXTENT_SLOPE * (study_score - SEVERITY_CUT)))
        display, box = render_radiograph(rng, anatomy, profile, extent, signal, view)
        image_id = f"{pid}-{k + 1}"
        name = f"{image_id}.dcm" if dicom else f"{image_id}.png"
        if dicom:
            _write_dicom(folder / name, display, rng, pid, image_id, day, view, seed)
        else:
            _write_png(folder / name, display, rng)
        rows.append(
            {
                "image_id": image_id,
                "path": f"images/{profile.name}/{pid}/{name}",
                "patient_id": pid,
                "center": profile.name,
                "severity": p.severity,
                "death": p.death,
                "study_date": day.isoformat(),
                "view": view,
                "box_x0": box[0],
                "box_y0": box[1],
                "box_x1": box[2],
                "box_y1": box[3],
            }
        )
    return rows


# ----------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class Anatomy:
    """Per-patient body habitus, in units of the image's short side, origin at its centre."""

    scale: float  # body size
    thorax_dx: float
    thorax_dy: float
    lung_sep: float  # half distance between lung centres
    lung_rx: float
    lung_ry: float
    heart: float  # heart size factor
    rib_freq: float  # ribs per unit length
    rib_curve: float


def _patient_anatomy(rng: np.random.Generator) -> Anatomy:
    return Anatomy(
        scale=float(rng.uniform(0.88, 1.08)),
        thorax_dx=float(rng.normal(0, 0.015)),
        thorax_dy=float(rng.normal(0.03, 0.02)),
        lung_sep=float(rng.uniform(0.18, 0.21)),
        lung_rx=float(rng.uniform(0.145, 0.17)),
        lung_ry=float(rng.uniform(0.27, 0.32)),
        heart=float(rng.uniform(0.9, 1.15)),
        rib_freq=float(rng.uniform(9.0, 11.0)),
        rib_curve=float(rng.uniform(0.8, 1.2)),
    )


def _gauss(t: np.ndarray, mu: np.ndarray | float, sigma: np.ndarray | float) -> np.ndarray:
    return np.exp(-0.5 * ((t - mu) / sigma) ** 2).astype(np.float32)


def _soft_inside(r: np.ndarray, edge: float) -> np.ndarray:
    """1 inside (r < 1), 0 outside, smoothstep over an edge `edge` wide in r (cheap sigmoid)."""
    t = np.clip((1.0 - r) / edge + 0.5, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def render_radiograph(
    rng: np.random.Generator,
    anatomy: Anatomy,
    profile: CenterProfile,
    extent: float,
    signal: float,
    view: str,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One radiograph as float32 display values in [0, 1] (white = dense) and its lung box.

    Coordinates are in units of the short side, so anatomy keeps its aspect on non-square
    films (a wide film shows more air beside the body). Separable terms (ribs, blobs, heart,
    spine, background waves) are low-rank products (H x k) @ (k x W): an image costs a
    handful of full-size array operations.
    """
    h, w = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, 2))
    s = float(min(h, w))
    xs = ((np.arange(w, dtype=np.float32) + 0.5) - w / 2) / s  # (W,)
    ys = ((np.arange(h, dtype=np.float32) + 0.5) - h / 2) / s  # (H,)
    # Patient positioning varies per study.
    k = anatomy.scale * float(rng.uniform(0.96, 1.04))
    cx = anatomy.thorax_dx + float(rng.normal(0, 0.01))
    cy = anatomy.thorax_dy + float(rng.normal(0, 0.01))
    dx, dy = xs - cx, ys - cy

    # Thorax: a soft superellipse of soft tissue running off the top and bottom of the film.
    body_r = (np.abs(dy) / (0.7 * k))[:, None] ** 3 + (np.abs(dx) / (0.42 * k))[None, :] ** 3
    body = _soft_inside(body_r, 0.35)

    # Lungs: one mirrored shape (|x| folds both sides onto one), narrower at the apex.
    lung_cy = cy - 0.05 * k
    rx, ry, sep = anatomy.lung_rx * k, anatomy.lung_ry * k, anatomy.lung_sep * k
    t = np.clip((ys - lung_cy) / ry, -1.0, 1.0)
    width = rx * (0.8 + 0.22 * t)  # (H,)
    lx = ((np.abs(dx) - sep) ** 2)[None, :]
    lung_r = lx / (width**2)[:, None] + (((ys - lung_cy) / ry) ** 2)[:, None]
    lungs = _soft_inside(lung_r, 0.3)

    # Ribs: posterior ribs curve down laterally, phase = f (y - c x^2). The profile
    # (1 + cos)^2 / 4 has two harmonics and cos(a - b) = cos a cos b + sin a sin b, so the
    # whole rib cage is a rank-4 product.
    f, c = anatomy.rib_freq, anatomy.rib_curve
    cols, rows = [], []
    for n, amp in ((1, 0.5), (2, 0.125)):
        a_y = 2 * np.pi * n * f * (ys - lung_cy)
        a_x = 2 * np.pi * n * f * c * dx**2
        cols += [amp * np.cos(a_y), amp * np.sin(a_y)]
        rows += [np.cos(a_x), np.sin(a_x)]
    ribs = np.stack(cols, 1).astype(np.float32) @ np.stack(rows, 0).astype(np.float32) + 0.375
    density = 0.55 * body - 0.34 * lungs + 0.06 * ribs * body * (0.4 + 0.6 * lungs)

    # Mediastinum: spine (a vertical band) and heart (an off-centre blob), larger on AP views;
    # background waves give each film some smooth anatomical variability.
    heart_k = anatomy.heart * (1.15 if view == "AP" else 1.0) * k
    heart = np.outer(
        _gauss(ys, lung_cy + 0.15 * k, 0.12 * heart_k), _gauss(xs, cx + 0.05 * k, 0.12 * heart_k)
    )
    fx, fy = rng.uniform(1.0, 4.0, 3), rng.uniform(1.0, 4.0, 3)
    wave_y = 0.02 * np.cos(2 * np.pi * fy[None, :] * ys[:, None] + rng.uniform(0, 6.3, (1, 3)))
    wave_x = np.cos(2 * np.pi * fx[:, None] * xs[None, :] + rng.uniform(0, 6.3, (3, 1)))
    col_b = np.concatenate([wave_y, 0.16 * np.ones((h, 1))], 1).astype(np.float32)
    row_b = np.concatenate([wave_x, _gauss(xs, cx, 0.045 * k)[None, :]], 0).astype(np.float32)
    density += (col_b @ row_b) * body + 0.24 * heart

    # Disease: blobs anywhere in either lung plus lower-zone ground glass, both growing with
    # `extent` times `signal`; BASE_BLOBS are unrelated to the outcome (normal variability).
    n_blobs = int(rng.poisson(BASE_BLOBS + signal * BLOBS_PER_EXTENT * extent))
    side = rng.choice([-1.0, 1.0], n_blobs)
    rad = np.sqrt(rng.uniform(0, 1, n_blobs)) * 0.85
    theta = rng.uniform(0, 2 * np.pi, n_blobs)
    bx = cx + side * (sep + rad * np.cos(theta) * rx)
    by = lung_cy + rad * np.sin(theta) * ry * 0.85 + 0.15 * ry
    bs = rng.uniform(*BLOB_SIGMA, n_blobs) * k
    ba = rng.uniform(*BLOB_AMPLITUDE, n_blobs)
    haze = (signal * HAZE_PER_EXTENT * extent) / (1.0 + np.exp(-(ys - lung_cy) / (0.25 * ry)))
    col_o = np.concatenate([_gauss(ys[:, None], by, bs) * ba, haze[:, None]], 1)
    row_o = np.concatenate([_gauss(xs[None, :], bx[:, None], bs[:, None]), np.ones((1, w))], 0)
    density += (col_o.astype(np.float32) @ row_o.astype(np.float32)) * lungs

    # Acquisition: this centre's contrast, offset, gamma and quantum noise.
    display = np.clip(profile.offset + profile.contrast * density, 0.0, 1.0) ** profile.gamma
    display += profile.noise * rng.standard_normal((h, w), dtype=np.float32)
    display = np.clip(display, 0.0, 1.0).astype(np.float32, copy=False)

    # Lung bounding box in pixels: both lungs plus a 4 % margin, clipped to the image.
    def to_px(v: float, n: int) -> int:
        return int(np.clip(round(v * s + n / 2), 0, n))

    m = 0.04 * k
    half = sep + rx * 1.02  # the widest point of a lung (t = 1)
    box = (
        to_px(cx - half - m, w),
        to_px(lung_cy - ry - m, h),
        to_px(cx + half + m, w),
        to_px(lung_cy + ry + m, h),
    )
    return display, box


# ------------------------------------------------------------------------------------ files


def _write_png(path: Path, display: np.ndarray, rng: np.random.Generator) -> None:
    # Mostly 8-bit; one in four 16-bit holding 12-bit data, as many archives export it.
    if rng.random() < 0.25:
        arr = np.rint(display * 4095).astype(np.uint16)
    else:
        arr = np.rint(display * 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def _write_dicom(
    path: Path,
    display: np.ndarray,
    rng: np.random.Generator,
    pid: str,
    image_id: str,
    day: date,
    view: str,
    seed: int,
) -> None:
    """A CR DICOM with varied encodings: BitsStored 12 or 16, MONOCHROME1 or 2, optional
    rescale and window. UIDs are derived from the seed so that files are reproducible."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

    bits = 12 if rng.random() < 0.6 else 16
    top = 2**bits - 1
    stored = np.rint(display * top).astype(np.uint16)
    mono1 = rng.random() < 0.35
    if mono1:
        stored = (top - stored).astype(np.uint16)  # MONOCHROME1: low values display white
    rescale = rng.random() < 0.4
    slope, intercept = (0.5, -1024.0) if rescale else (1.0, 0.0)

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=["progbench-synth", str(seed), image_id, kind])

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid("sop")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.PatientID = pid
    ds.PatientName = f"SYNTH^{pid}"
    ds.StudyDate = day.strftime("%Y%m%d")
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.set_pixel_data(
        stored, "MONOCHROME1" if mono1 else "MONOCHROME2", bits, generate_instance_uid=False
    )
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if rng.random() < 0.5:
        # A window over the central 99 % of values, in modality (rescaled) units.
        lo, hi = np.percentile(stored, [0.5, 99.5]) * slope + intercept
        ds.WindowCenter = round(float((lo + hi) / 2), 1)
        ds.WindowWidth = round(float(max(hi - lo, 2.0)), 1)
    ds.save_as(path, enforce_file_format=True)


def _task_yaml(outcome: str, params: SynthParams) -> str:
    what = {
        "severity": "severe disease (the latent-score threshold at 45 % prevalence)",
        "death": "death (correlated with severity, ~15 % prevalence)",
    }[outcome]
    description = (
        f"Synthetic chest X-ray cohort ({params.patients} patients, {params.centers} "
        f"centres, seed {params.seed}, signal {params.signal}); predict {what}."
    )
    task = {
        "name": f"synth-{outcome}",
        "manifest": "../manifest.csv",
        "outcome": outcome,
        "positive": 1,
        "description": description,
    }
    return yaml.safe_dump(task, sort_keys=False, width=100)
