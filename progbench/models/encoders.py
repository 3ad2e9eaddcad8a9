"""Build a backbone's encoder architecture (random weights) from its registry spec.

Every encoder maps normalised pixels (B, 3, H, W) to features (B, feature_dim). Full-size
backbones and their tiny twins go through the same builders; only the spec's sizes differ.

- torchvision: the library's model with its classifier replaced by Identity or by the spec's
  projection (MedCLIP-ResNet keeps its projection as `fc`, so the module names stay torchvision's).
- transformers: `HFEncoder` around the model class (pooler_output, then an optional projection
  named `projection_head` as in MedCLIP's `MedClipVisionModelViT`).
- open_clip: the vision tower open_clip itself builds from a `model_cfg` (BiomedCLIP: a timm
  ViT trunk plus a linear projection).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from progbench.config import BackboneSpec
from progbench.errors import RegistryError


class HFEncoder(nn.Module):
    """A transformers vision model as an encoder: pooled output, then an optional projection."""

    def __init__(self, model: nn.Module, projection_head: nn.Linear | None = None) -> None:
        super().__init__()
        self.model = model
        self.projection_head = projection_head

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.model(pixel_values=pixel_values).pooler_output
        return pooled if self.projection_head is None else self.projection_head(pooled)


def _projection(spec: BackboneSpec) -> nn.Linear | None:
    p = spec.projection
    return None if p is None else nn.Linear(p.in_features, p.out_features, bias=p.bias)


# ----------------------------------------------------------------------------------- torchvision

_CLASSIFIER_ATTRS = ("fc", "classifier")


def _torchvision_kwargs(spec: BackboneSpec) -> dict[str, Any]:
    """YAML can name torchvision building blocks by string (e.g. `block: BasicBlock`)."""
    from torchvision.models import resnet

    blocks = {"BasicBlock": resnet.BasicBlock, "Bottleneck": resnet.Bottleneck}
    kwargs = dict(spec.arch_overrides)
    if isinstance(kwargs.get("block"), str):
        if kwargs["block"] not in blocks:
            raise RegistryError(
                f"backbone {spec.name!r}: arch_overrides.block {kwargs['block']!r} is unknown",
                f"Use one of {sorted(blocks)}.",
            )
        kwargs["block"] = blocks[kwargs["block"]]
    for key in ("layers", "block_config"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = list(kwargs[key]) if key == "layers" else tuple(kwargs[key])
    return kwargs


def build_torchvision(spec: BackboneSpec) -> nn.Module:
    import torchvision.models as tvm

    builder = getattr(tvm, spec.arch, None)
    if builder is None or not callable(builder):
        raise RegistryError(
            f"backbone {spec.name!r}: torchvision.models has no builder {spec.arch!r}",
            "Use a builder such as resnet18, or a class such as ResNet with arch_overrides.",
        )
    kwargs = _torchvision_kwargs(spec)
    try:
        # Builder functions take `weights`; classes (ResNet, DenseNet) take only architecture.
        model = builder(**kwargs) if inspect.isclass(builder) else builder(weights=None, **kwargs)
    except TypeError as err:
        raise RegistryError(
            f"backbone {spec.name!r}: bad arch_overrides for {spec.arch}: {err}"
        ) from err
    attr = next(
        (a for a in _CLASSIFIER_ATTRS if isinstance(getattr(model, a, None), nn.Linear)), None
    )
    if attr is None:
        raise RegistryError(
            f"backbone {spec.name!r}: {type(model).__name__} has no Linear `fc` or `classifier` "
            "to replace with the feature output"
        )
    setattr(model, attr, _projection(spec) or nn.Identity())
    return model


def torchvision_classifier_attr(model: nn.Module) -> str | None:
    """The attribute that held the 1000-way classifier (now Identity or a projection)."""
    return next((a for a in _CLASSIFIER_ATTRS if hasattr(model, a)), None)


# ---------------------------------------------------------------------------------- transformers


def transformers_classes(spec: BackboneSpec) -> tuple[type, type]:
    """(model class, config class) named by `arch`, e.g. Dinov2Model / Dinov2Config."""
    import transformers

    cls = getattr(transformers, spec.arch, None)
    config_cls = getattr(cls, "config_class", None)
    if cls is None or config_cls is None:
        raise RegistryError(
            f"backbone {spec.name!r}: transformers has no model class {spec.arch!r}",
            "Use a vision model class that returns pooler_output, e.g. Dinov2Model.",
        )
    return cls, config_cls


def transformers_config(spec: BackboneSpec) -> Any:
    _, config_cls = transformers_classes(spec)
    try:
        return config_cls(**spec.config_overrides)
    except (TypeError, ValueError) as err:
        raise RegistryError(f"backbone {spec.name!r}: bad config_overrides: {err}") from err


def build_transformers(spec: BackboneSpec) -> HFEncoder:
    cls, _ = transformers_classes(spec)
    return HFEncoder(cls(transformers_config(spec)), _projection(spec))


# -------------------------------------------------------------------------------------- open_clip


def build_open_clip(spec: BackboneSpec) -> nn.Module:
    """open_clip's own vision-tower builder, fed the `model_cfg` of the hub's open_clip_config.json."""
    from open_clip.model import _build_vision_tower

    cfg = spec.config_overrides
    if "embed_dim" not in cfg or "vision_cfg" not in cfg:
        raise RegistryError(
            f"backbone {spec.name!r}: open_clip config_overrides need `embed_dim` and `vision_cfg`",
            "Copy them from the model's open_clip_config.json (its `model_cfg`).",
        )
    try:
        return _build_vision_tower(
            cfg["embed_dim"], dict(cfg["vision_cfg"]), quick_gelu=cfg.get("quick_gelu", False)
        )
    except (TypeError, ValueError, RuntimeError) as err:
        raise RegistryError(f"backbone {spec.name!r}: open_clip cannot build it: {err}") from err


def build_encoder(spec: BackboneSpec) -> nn.Module:
    """The encoder with freshly initialised weights (seed torch's RNG first for stable weights).

    Builds on the current default device, so `with torch.device("meta"):` gives a weightless
    model whose parameter counts are exact.
    """
    if spec.library == "torchvision":
        return build_torchvision(spec)
    if spec.library == "transformers":
        return build_transformers(spec)
    return build_open_clip(spec)
