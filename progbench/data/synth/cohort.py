"""The cohort folder: patients drawn, their studies rendered and written, manifest.csv,
tasks/*.yaml and synth.json (see the package docstring and docs/SYNTHETIC_COHORT.md)."""

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

from progbench.atomic import atomic_dir
from progbench.data.synth.centers import CenterProfile, make_center_profiles
from progbench.data.synth.imagefiles import write_dicom, write_png
from progbench.data.synth.outcomes import Patient, draw_patients, study_extent
from progbench.data.synth.radiograph import patient_anatomy, render_radiograph
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

START_DATE = date(2020, 3, 1)  # first study date; each patient starts within 120 days


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
    cohort = draw_patients(params.patients, params.centers, cohort_rng)
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


def _write_patient(
    root: Path, p: Patient, profile: CenterProfile, seed: int, signal: float, dicom: bool
) -> list[dict[str, object]]:
    """Render and write every study of one patient; return their manifest rows."""
    pid = p.patient_id
    anatomy = patient_anatomy(np.random.default_rng([seed, 1, p.number]))
    day = START_DATE + timedelta(days=int(np.random.default_rng([seed, 3, p.number]).integers(120)))
    folder = root / "images" / profile.name / pid
    folder.mkdir(parents=True)
    rows: list[dict[str, object]] = []
    for k in range(p.n_images):
        rng = np.random.default_rng([seed, 2, p.number, k])
        if k:
            day += timedelta(days=int(rng.integers(1, 15)))
        view = "AP" if rng.random() < 0.3 else "PA"
        extent = study_extent(p.score, rng)
        display, box = render_radiograph(rng, anatomy, profile, extent, signal, view)
        image_id = f"{pid}-{k + 1}"
        name = f"{image_id}.dcm" if dicom else f"{image_id}.png"
        if dicom:
            write_dicom(folder / name, display, rng, pid, image_id, day, view, seed)
        else:
            write_png(folder / name, display, rng)
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
