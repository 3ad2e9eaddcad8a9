"""Light, chest-X-ray-safe augmentation that runs on the training device, per sample, batched.

Safe means it never changes what the image shows: no flips (laterality matters on a CXR), no
strong rotations or crops that could cut off a lung. One affine warp per image combines a random
resized crop (area and aspect ratio within tight limits), a small rotation and a small
translation; then a brightness and contrast jitter. All parameters come from a caller-supplied
`torch.Generator`, so a seed reproduces them exactly, on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F

from progbench.config.keys import IDENTITY, identity_of


@dataclass(frozen=True)
class AugmentConfig:
    # Every field changes the training images: all are part of a streamed run's identity.
    scale: Annotated[tuple[float, float], IDENTITY] = (0.85, 1.0)  # crop area, share of image
    ratio: Annotated[tuple[float, float], IDENTITY] = (0.9, 1.1)  # crop aspect (width / height)
    degrees: Annotated[float, IDENTITY] = 5.0  # rotation in [-degrees, degrees]
    translate: Annotated[float, IDENTITY] = 0.03  # shift in [-t, t] of the image side
    # additive shift in [-b, b] of the full intensity range
    brightness: Annotated[float, IDENTITY] = 0.1
    contrast: Annotated[float, IDENTITY] = 0.1  # factor in [1 - c, 1 + c] around the image mean

    def to_dict(self) -> dict[str, object]:
        return identity_of(self)


def _uniform(
    n: int, lo: float, hi: float, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def augment_batch(
    images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """uint8 or float (B, S, S) on the device -> augmented float (B, S, S) on the same 0-255 scale."""
    x = images.float().unsqueeze(1)  # (B, 1, S, S)
    n, dev = x.shape[0], x.device
    area = _uniform(n, *cfg.scale, generator, dev)
    log_r = _uniform(n, math.log(cfg.ratio[0]), math.log(cfg.ratio[1]), generator, dev)
    ratio = torch.exp(log_r)
    # Side lengths of the crop as fractions of the image (clamped so the crop fits).
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    # The crop's centre may move only as far as keeps it inside, plus the small translation.
    cx = (1 - sx) * _uniform(n, -1.0, 1.0, generator, dev)
    cy = (1 - sy) * _uniform(n, -1.0, 1.0, generator, dev)
    cx = cx + _uniform(n, -2 * cfg.translate, 2 * cfg.translate, generator, dev)
    cy = cy + _uniform(n, -2 * cfg.translate, 2 * cfg.translate, generator, dev)
    angle = torch.deg2rad(_uniform(n, -cfg.degrees, cfg.degrees, generator, dev))
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output coordinates in [-1, 1] to input coordinates: scale, rotate, shift.
    theta = torch.stack(
        [
            torch.stack([sx * cos, -sy * sin, cx], dim=-1),
            torch.stack([sx * sin, sy * cos, cy], dim=-1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, generator, dev).view(n, 1, 1, 1)
    bright = _uniform(n, -cfg.brightness, cfg.brightness, generator, dev).view(n, 1, 1, 1) * 255
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + bright).clamp_(0.0, 255.0)
    return x.squeeze(1)
