"""The acquisition (centre) model: each centre's contrast, gamma, offset and noise.

docs/SYNTHETIC_COHORT.md, "Acquisition: the centre shift", gives the ranges and why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GAMMA_RANGE = (0.7, 1.45)
CONTRAST_RANGE = (0.8, 1.2)
OFFSET_RANGE = (-0.08, 0.08)
NOISE_RANGE = (0.01, 0.045)


@dataclass(frozen=True)
class CenterProfile:
    """One centre's acquisition: display = (offset + contrast * density) ** gamma + noise."""

    name: str
    contrast: float
    gamma: float
    offset: float
    noise: float


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
