"""Synthetic multi-centre chest-X-ray cohort: progbench's embedded default dataset.

A latent per-patient disease score drives two binary outcomes (severity, death) and the amount
of bilateral lung opacity in every radiograph of that patient; each centre adds its own
acquisition shift. The generative model, every parameter and why it was chosen are written up
in docs/SYNTHETIC_COHORT.md. Everything is drawn from `seed`: the same arguments give
byte-identical files.

Modules: outcomes (latent score -> outcomes, per-study extent), centers (acquisition shift),
radiograph (anatomy and the rendered film), imagefiles (PNG/DICOM encodings), cohort (the
folder: synthesize).
"""

from progbench.data.synth.centers import (
    CONTRAST_RANGE,
    GAMMA_RANGE,
    NOISE_RANGE,
    OFFSET_RANGE,
    CenterProfile,
    make_center_profiles,
)
from progbench.data.synth.cohort import (
    GENERATOR_VERSION,
    MANIFEST_COLUMNS,
    OUTCOMES,
    START_DATE,
    SynthParams,
    SynthSummary,
    synthesize,
)
from progbench.data.synth.outcomes import (
    DEATH_LOADING,
    DEATH_PREVALENCE,
    EXTENT_SLOPE,
    IMAGE_STUDY_NOISE,
    IMAGES_PER_PATIENT_P,
    SEVERITY_CUT,
    SEVERITY_PREVALENCE,
    Patient,
)
from progbench.data.synth.radiograph import (
    BASE_BLOBS,
    BLOB_AMPLITUDE,
    BLOB_SIGMA,
    BLOBS_PER_EXTENT,
    HAZE_PER_EXTENT,
    SIDE_RANGE,
    Anatomy,
    patient_anatomy,
    render_radiograph,
)

__all__ = [
    "BASE_BLOBS",
    "BLOBS_PER_EXTENT",
    "BLOB_AMPLITUDE",
    "BLOB_SIGMA",
    "CONTRAST_RANGE",
    "DEATH_LOADING",
    "DEATH_PREVALENCE",
    "EXTENT_SLOPE",
    "GAMMA_RANGE",
    "GENERATOR_VERSION",
    "HAZE_PER_EXTENT",
    "IMAGES_PER_PATIENT_P",
    "IMAGE_STUDY_NOISE",
    "MANIFEST_COLUMNS",
    "NOISE_RANGE",
    "OFFSET_RANGE",
    "OUTCOMES",
    "SEVERITY_CUT",
    "SEVERITY_PREVALENCE",
    "SIDE_RANGE",
    "START_DATE",
    "Anatomy",
    "CenterProfile",
    "Patient",
    "SynthParams",
    "SynthSummary",
    "make_center_profiles",
    "patient_anatomy",
    "render_radiograph",
    "synthesize",
]
