"""Build a backbone's encoder architecture (random weights) from its registry spec.

Every encoder maps normalised pixels (B, 3, H, W) to features (B, feature_dim). Full-size
backbones and their tiny twins go through the same builders; only the spec's sizes differ. The
builders live with their library's source in `progbench.models.sources`.
"""

from __future__ import annotations

from torch import nn

from progbench.config import BackboneSpec
from progbench.models.sources import HFEncoder, source_for

__all__ = ["HFEncoder", "build_encoder"]


def build_encoder(spec: BackboneSpec) -> nn.Module:
    """The encoder with freshly initialised weights (seed torch's RNG first for stable weights).

    Builds on the current default device, so `with torch.device("meta"):` gives a weightless
    model whose parameter counts are exact.
    """
    return source_for(spec).build(spec)
