"""The classifier every streamed strategy trains. It has its own module because an `nn.Module`
subclass needs torch to be defined, and reading strategies (`progbench sweep plan`) must not
import torch: base.py imports this module only inside the functions that build a classifier."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

from progbench.config import DEFAULT_VARIANT, BackboneSpec, TokenLayout, Variant
from progbench.models.sources import encoder_tokens

if TYPE_CHECKING:
    from progbench.models.strategies.resolution import Resolution


class ClassifierStrategy(Protocol):
    """What a classifier and its users ask of its strategy, a base.Strategy (named by shape:
    base.py imports this module, so this one does not import base.py back)."""

    kind: ClassVar[str]

    @property
    def name(self) -> str: ...

    @property
    def uses_peft(self) -> bool: ...

    def set_train_mode(self, model: ClassifierModel) -> None: ...

    def save(self, model: ClassifierModel, out_dir: Path) -> None: ...


class ClassifierModel(nn.Module):
    """The classifier every streamed strategy trains: the encoder (or a PeftModel around it)
    plus one linear head (`progbench_head`) on a feature variant of it (default `cls1`, the
    encoder's own output)."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Linear,
        spec: BackboneSpec,
        strategy: ClassifierStrategy,
        resolution: Resolution,
        weights: str,
        weights_fingerprint: str,
        variant: Variant = DEFAULT_VARIANT,
    ) -> None:
        super().__init__()
        self.variant = variant
        self._layout = TokenLayout.of_variant(variant, spec.feature_dim)
        self.backbone = backbone
        self.progbench_head = head
        self.spec = spec
        self.strategy = strategy
        self.resolution = resolution
        self.weights = weights
        self.weights_fingerprint = weights_fingerprint

    @property
    def num_classes(self) -> int:
        return self.progbench_head.out_features

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.variant.is_default:
            features = self.backbone(pixel_values)
        else:
            features = encoder_tokens(self.spec, self.backbone, pixel_values, self._layout)
        # A bf16-cast backbone feeding an fp32 head: match the head's dtype.
        return self.progbench_head(features.to(self.progbench_head.weight.dtype))

    def train(self, mode: bool = True) -> ClassifierModel:
        """Frozen parts stay in eval mode while training (the strategy says which)."""
        super().train(mode)
        if mode:
            self.strategy.set_train_mode(self)
        return self

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.progbench_head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The backbone's trainable parameters (adapters, biases, or all for FFT)."""
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def describe(self) -> dict[str, Any]:
        from progbench.models.params import count_parameters

        c = count_parameters(self)
        return {
            "backbone": self.spec.name,
            "strategy": self.strategy.name,
            "kind": self.strategy.kind,
            "weights": self.weights,
            "weights_fingerprint": self.weights_fingerprint,
            "num_classes": self.num_classes,
            "head_variant": self.variant.name,
            "target_modules": self.resolution.target_modules,
            "feedforward_modules": self.resolution.feedforward_modules,
            "trainable": c.trainable,
            "total": c.total,
            "percent": c.percent,
        }
