"""Where a backbone's encoder and weights come from: one `Source` per library or release format.

- base.py: the `Source` interface (build, from_hub, load_path, save, fetch, locate) and
  `LoadedBackbone`
- torchvision.py, transformers.py, open_clip.py, medclip.py: one source each
- network.py: offline mode, the quick connectivity probe, download timeouts
- private.py: every private API of another library that progbench uses

`source_for(spec)` picks the source from `SOURCES`, keyed by (weights_format, library);
`encoder_tokens` is the token forward of feature variants, whatever the library.
"""

from __future__ import annotations

import torch
from torch import nn

from progbench.config import BackboneSpec, TokenLayout
from progbench.errors import RegistryError
from progbench.models.sources.base import LoadedBackbone, Source
from progbench.models.sources.medclip import MedClipResNetSource, MedClipViTSource
from progbench.models.sources.open_clip import OpenClipSource
from progbench.models.sources.torchvision import TorchvisionSource
from progbench.models.sources.transformers import HFEncoder, TransformersSource

SOURCES: dict[tuple[str, str], Source] = {
    ("native", "torchvision"): TorchvisionSource(),
    ("native", "transformers"): TransformersSource(),
    ("native", "open_clip"): OpenClipSource(),
    ("medclip", "torchvision"): MedClipResNetSource(),
    ("medclip", "transformers"): MedClipViTSource(),
}

__all__ = ["SOURCES", "HFEncoder", "LoadedBackbone", "Source", "encoder_tokens", "source_for"]


def source_for(spec: BackboneSpec) -> Source:
    source = SOURCES.get((spec.weights_format, spec.library))
    if source is None:
        known = ", ".join(f"{lib} ({fmt})" for fmt, lib in SOURCES)
        raise RegistryError(
            f"backbone {spec.name!r}: no source loads library {spec.library!r} with "
            f"weights_format {spec.weights_format!r}",
            f"Supported: {known}.",
        )
    return source


def encoder_tokens(
    spec: BackboneSpec, encoder: nn.Module, pixel_values: torch.Tensor, layout: TokenLayout
) -> torch.Tensor:
    """(B, layout.width) tokens of `encoder` (a PeftModel is unwrapped: its adapters live in
    the encoder's own modules). A single-feature layout is the encoder's forward, unchanged."""
    from peft import PeftModel

    if isinstance(encoder, PeftModel):
        if layout.slots == 1:
            return encoder(pixel_values)
        encoder = encoder.get_base_model()
    return source_for(spec).tokens(spec, encoder, pixel_values, layout)
