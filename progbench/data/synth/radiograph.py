"""One synthetic chest radiograph: the patient's anatomy, the study's disease, the centre's
acquisition (docs/SYNTHETIC_COHORT.md, "What the disease does to an image" and "Anatomy").

Coordinates are in units of the film's short side, origin at its centre. Every random draw
comes from the study's `rng` in a fixed order (film, positioning, background, opacities,
noise), so the same generator state renders the same film.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from progbench.data.synth.centers import CenterProfile

# ---- opacity model: all disease-dependent terms are multiplied by `signal` -------------------
BASE_BLOBS = 2.0  # Poisson mean of disease-unrelated opacities (vessels, nodules, artefacts)
BLOBS_PER_EXTENT = 5.0  # extra Poisson mean per unit of extent, per unit of signal
BLOB_AMPLITUDE = (0.05, 0.14)
BLOB_SIGMA = (0.025, 0.07)  # in units of the image's short side
HAZE_PER_EXTENT = 0.025  # ground-glass density in the lower zones at extent 1, signal 1
SIDE_RANGE = (256, 512)  # film sides in pixels


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


def patient_anatomy(rng: np.random.Generator) -> Anatomy:
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


@dataclass(frozen=True)
class Film:
    """One study's pixel grid and the patient's placement on it."""

    h: int
    w: int
    s: float  # the short side, in pixels
    xs: np.ndarray  # (W,) pixel centres
    ys: np.ndarray  # (H,)
    k: float  # body scale of this study
    cx: float  # thorax centre
    cy: float


@dataclass(frozen=True)
class Lungs:
    """Where the lungs lie on a film: centre height, half-axes and half separation."""

    cy: float
    rx: float
    ry: float
    sep: float


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
    film = _place_patient(rng, anatomy)
    lung = Lungs(
        cy=film.cy - 0.05 * film.k,
        rx=anatomy.lung_rx * film.k,
        ry=anatomy.lung_ry * film.k,
        sep=anatomy.lung_sep * film.k,
    )
    body, lungs = _body_mask(film), _lung_mask(film, lung)
    ribs = _rib_cage(film, lung, anatomy)
    density = 0.55 * body - 0.34 * lungs + 0.06 * ribs * body * (0.4 + 0.6 * lungs)
    density += _mediastinum(rng, film, lung, anatomy, view, body)
    density += _opacities(rng, film, lung, extent, signal) * lungs
    return _acquire(rng, density, profile), _lung_box(film, lung)


def _place_patient(rng: np.random.Generator, anatomy: Anatomy) -> Film:
    """The film's size, and the patient's positioning, which varies per study."""
    h, w = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, 2))
    s = float(min(h, w))
    xs = ((np.arange(w, dtype=np.float32) + 0.5) - w / 2) / s  # (W,)
    ys = ((np.arange(h, dtype=np.float32) + 0.5) - h / 2) / s  # (H,)
    k = anatomy.scale * float(rng.uniform(0.96, 1.04))
    cx = anatomy.thorax_dx + float(rng.normal(0, 0.01))
    cy = anatomy.thorax_dy + float(rng.normal(0, 0.01))
    return Film(h=h, w=w, s=s, xs=xs, ys=ys, k=k, cx=cx, cy=cy)


def _gauss(t: np.ndarray, mu: np.ndarray | float, sigma: np.ndarray | float) -> np.ndarray:
    return np.exp(-0.5 * ((t - mu) / sigma) ** 2).astype(np.float32)


def _soft_inside(r: np.ndarray, edge: float) -> np.ndarray:
    """1 inside (r < 1), 0 outside, smoothstep over an edge `edge` wide in r (cheap sigmoid)."""
    t = np.clip((1.0 - r) / edge + 0.5, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _body_mask(film: Film) -> np.ndarray:
    """Thorax: a soft superellipse of soft tissue running off the top and bottom of the film."""
    dx, dy, k = film.xs - film.cx, film.ys - film.cy, film.k
    body_r = (np.abs(dy) / (0.7 * k))[:, None] ** 3 + (np.abs(dx) / (0.42 * k))[None, :] ** 3
    return _soft_inside(body_r, 0.35)


def _lung_mask(film: Film, lung: Lungs) -> np.ndarray:
    """Lungs: one mirrored shape (|x| folds both sides onto one), narrower at the apex."""
    dx, ys = film.xs - film.cx, film.ys
    t = np.clip((ys - lung.cy) / lung.ry, -1.0, 1.0)
    width = lung.rx * (0.8 + 0.22 * t)  # (H,)
    lx = ((np.abs(dx) - lung.sep) ** 2)[None, :]
    lung_r = lx / (width**2)[:, None] + (((ys - lung.cy) / lung.ry) ** 2)[:, None]
    return _soft_inside(lung_r, 0.3)


def _rib_cage(film: Film, lung: Lungs, anatomy: Anatomy) -> np.ndarray:
    """Posterior ribs curve down laterally, phase = f (y - c x^2). The profile (1 + cos)^2 / 4
    has two harmonics and cos(a - b) = cos a cos b + sin a sin b, so the whole rib cage is a
    rank-4 product."""
    dx = film.xs - film.cx
    f, c = anatomy.rib_freq, anatomy.rib_curve
    cols, rows = [], []
    for n, amp in ((1, 0.5), (2, 0.125)):
        a_y = 2 * np.pi * n * f * (film.ys - lung.cy)
        a_x = 2 * np.pi * n * f * c * dx**2
        cols += [amp * np.cos(a_y), amp * np.sin(a_y)]
        rows += [np.cos(a_x), np.sin(a_x)]
    return np.stack(cols, 1).astype(np.float32) @ np.stack(rows, 0).astype(np.float32) + 0.375


def _mediastinum(
    rng: np.random.Generator, film: Film, lung: Lungs, anatomy: Anatomy, view: str, body: np.ndarray
) -> np.ndarray:
    """Spine (a vertical band) and heart (an off-centre blob), larger on AP views; background
    waves give each film some smooth anatomical variability."""
    xs, ys, k, cx = film.xs, film.ys, film.k, film.cx
    heart_k = anatomy.heart * (1.15 if view == "AP" else 1.0) * k
    heart = np.outer(
        _gauss(ys, lung.cy + 0.15 * k, 0.12 * heart_k), _gauss(xs, cx + 0.05 * k, 0.12 * heart_k)
    )
    fx, fy = rng.uniform(1.0, 4.0, 3), rng.uniform(1.0, 4.0, 3)
    wave_y = 0.02 * np.cos(2 * np.pi * fy[None, :] * ys[:, None] + rng.uniform(0, 6.3, (1, 3)))
    wave_x = np.cos(2 * np.pi * fx[:, None] * xs[None, :] + rng.uniform(0, 6.3, (3, 1)))
    col_b = np.concatenate([wave_y, 0.16 * np.ones((film.h, 1))], 1).astype(np.float32)
    row_b = np.concatenate([wave_x, _gauss(xs, cx, 0.045 * k)[None, :]], 0).astype(np.float32)
    return (col_b @ row_b) * body + 0.24 * heart


def _opacities(
    rng: np.random.Generator, film: Film, lung: Lungs, extent: float, signal: float
) -> np.ndarray:
    """Disease: blobs anywhere in either lung plus lower-zone ground glass, both growing with
    `extent` times `signal`; BASE_BLOBS are unrelated to the outcome (normal variability).
    Not yet masked to the lungs."""
    xs, ys, k = film.xs, film.ys, film.k
    n_blobs = int(rng.poisson(BASE_BLOBS + signal * BLOBS_PER_EXTENT * extent))
    side = rng.choice([-1.0, 1.0], n_blobs)
    rad = np.sqrt(rng.uniform(0, 1, n_blobs)) * 0.85
    theta = rng.uniform(0, 2 * np.pi, n_blobs)
    bx = film.cx + side * (lung.sep + rad * np.cos(theta) * lung.rx)
    by = lung.cy + rad * np.sin(theta) * lung.ry * 0.85 + 0.15 * lung.ry
    bs = rng.uniform(*BLOB_SIGMA, n_blobs) * k
    ba = rng.uniform(*BLOB_AMPLITUDE, n_blobs)
    haze = (signal * HAZE_PER_EXTENT * extent) / (1.0 + np.exp(-(ys - lung.cy) / (0.25 * lung.ry)))
    col_o = np.concatenate([_gauss(ys[:, None], by, bs) * ba, haze[:, None]], 1)
    row_o = np.concatenate([_gauss(xs[None, :], bx[:, None], bs[:, None]), np.ones((1, film.w))], 0)
    return col_o.astype(np.float32) @ row_o.astype(np.float32)


def _acquire(rng: np.random.Generator, density: np.ndarray, profile: CenterProfile) -> np.ndarray:
    """This centre's contrast, offset, gamma and quantum noise."""
    display = np.clip(profile.offset + profile.contrast * density, 0.0, 1.0) ** profile.gamma
    display += profile.noise * rng.standard_normal(density.shape, dtype=np.float32)
    return np.clip(display, 0.0, 1.0).astype(np.float32, copy=False)


def _lung_box(film: Film, lung: Lungs) -> tuple[int, int, int, int]:
    """Lung bounding box in pixels: both lungs plus a 4 % margin, clipped to the image."""

    def to_px(v: float, n: int) -> int:
        return int(np.clip(round(v * film.s + n / 2), 0, n))

    m = 0.04 * film.k
    half = lung.sep + lung.rx * 1.02  # the widest point of a lung (t = 1)
    return (
        to_px(film.cx - half - m, film.w),
        to_px(lung.cy - lung.ry - m, film.h),
        to_px(film.cx + half + m, film.w),
        to_px(lung.cy + lung.ry + m, film.h),
    )
