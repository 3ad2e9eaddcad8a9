"""Where a backbone's encoder and weights come from: one `Source` per library or release format.

- base.py: the `Source` interface (build, from_hub, load_path, save, fetch, locate) and
  `LoadedBackbone`
- torchvision.py, transformers.py, open_clip.py, medclip.py: one source each
- network.py: offline mode, the quick connectivity probe, download timeouts
- private.py: every private API of another library that progbench uses

`source_for(spec)` picks the source from `SOURCES`, keyed by (weights_format, library);
`encoder_tokens` is the token forward of feature variants, whatever the library.

The sources import torch, which takes seconds: they are imported on first use, so that what
needs only `network` or the registry (`progbench weights ls`) does not load it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from progbench.config import BackboneSpec, TokenLayout
from progbench.errors import RegistryError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from progbench.models.sources.base import LoadedBackbone, Source
    from progbench.models.sources.transformers import HFEncoder

__all__ = ["SOURCES", "HFEncoder", "LoadedBackbone", "Source", "encoder_tokens", "source_for"]


@cache
def _sources() -> dict[tuple[str, str], Source]:
    from progbench.models.sources.medclip import MedClipResNetSource, MedClipViTSource
    from progbench.models.sources.open_clip import OpenClipSource
    from progbench.models.sources.torchvision import TorchvisionSource
    from progbench.models.sources.transformers import TransformersSource

    return {
        ("native", "torchvision"): TorchvisionSource(),
        ("native", "transformers"): TransformersSource(),
        ("native", "open_clip"): OpenClipSource(),
        ("medclip", "torchvision"): MedClipResNetSource(),
        ("medclip", "transformers"): MedClipViTSource(),
    }


def __getattr__(name: str) -> Any:
    # SOURCES and the classes, imported when first asked for (see the module docstring).
    if name == "SOURCES":
        return _sources()
    if name in ("LoadedBackbone", "Source"):
        from progbench.models.sources import base

        return getattr(base, name)
    if name == "HFEncoder":
        from progbench.models.sources.transformers import HFEncoder

        return HFEncoder
    raise AttributeError(f"module 'progbench.models.sources' has no attribute {name!r}")


def source_for(spec: BackboneSpec) -> Source:
    sources = _sources()
    source = sources.get((spec.weights_format, spec.library))
    if source is None:
        known = ", ".join(f"{lib} ({fmt})" for fmt, lib in sources)
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
