"""The outcome model: a latent disease score per patient drives severity, death, and the
disease extent of each of the patient's studies (docs/SYNTHETIC_COHORT.md, "Outcomes")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from scipy.stats import norm

SEVERITY_PREVALENCE = 0.45
DEATH_PREVALENCE = 0.15
DEATH_LOADING = 0.7  # death latent = 0.7 score + sqrt(1 - 0.49) e: unit variance
IMAGE_STUDY_NOISE = 0.5  # sd of the per-study deviation from the patient's score
EXTENT_SLOPE = 2.0  # extent = expit(slope * (study score - severity cut))
IMAGES_PER_PATIENT_P = (0.7, 0.2, 0.1)  # P(1, 2, 3 studies)
SEVERITY_CUT = float(norm.ppf(1 - SEVERITY_PREVALENCE))


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


def draw_patients(patients: int, centers: int, rng: np.random.Generator) -> list[Patient]:
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


def study_extent(score: float, rng: np.random.Generator) -> float:
    """Disease extent of one study: the patient's score plus per-study noise (progression,
    positioning, inspiration), squashed to (0, 1) around the severity cut."""
    study_score = score + IMAGE_STUDY_NOISE * rng.standard_normal()
    return float(expit(EXTENT_SLOPE * (study_score - SEVERITY_CUT)))
