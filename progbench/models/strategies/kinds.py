"""The strategy kinds that train the backbone's own parameters (or none): LP, FFT, BitFit."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from progbench.models.strategies.base import Resolution, Strategy
from progbench.models.strategies.registry import register_kind
from progbench.models.strategies.tensors import save_tensors

if TYPE_CHECKING:
    from progbench.models.loaders import LoadedBackbone
    from progbench.models.strategies.classifier import ClassifierModel

HEAD_FILE = "progbench_head.safetensors"
FULL_FILE = "model.safetensors"
BITFIT_FILE = "bitfit.safetensors"


@register_kind("lp")
class LinearProbe(Strategy):
    """A linear head on the frozen backbone, fitted on the feature cache (train.features)."""

    path = "features"
    weights_file = HEAD_FILE

    def _resolve_parameters(self, base: dict[str, Any], names: list[str]) -> Resolution:
        return Resolution(**base, applicable=True, trainable_parameters=[], checked=True)

    def set_train_mode(self, model: ClassifierModel) -> None:
        model.backbone.eval()  # its features must equal the frozen, extracted ones


@register_kind("fft")
class FullFineTune(Strategy):
    """Every parameter the feature path reaches trains; BatchNorm statistics update."""

    full_state = True
    freeze_batchnorm = False
    weights_file = FULL_FILE

    def _resolve_parameters(self, base: dict[str, Any], names: list[str]) -> Resolution:
        return Resolution(**base, applicable=True, trainable_parameters=names, checked=True)

    def save(self, model: ClassifierModel, out_dir: Path) -> None:
        save_tensors(out_dir / FULL_FILE, model.state_dict())

    def load(self, out_dir: Path, loaded: LoadedBackbone, num_classes: int) -> ClassifierModel:
        from progbench.models.checkpoints import load_strict, read_state_dict

        model = self.build(loaded, num_classes)
        load_strict(model, read_state_dict(out_dir / FULL_FILE), str(out_dir / FULL_FILE))
        return model


@register_kind("bitfit")
class BitFit(Strategy):
    """Every bias of the backbone trains, plus the head."""

    weights_file = BITFIT_FILE

    def _resolve_parameters(self, base: dict[str, Any], names: list[str]) -> Resolution:
        biases = [n for n in names if n.rsplit(".", 1)[-1] == "bias"]
        if not biases:
            return Resolution(
                **base, applicable=False, reason="the backbone has no bias parameters"
            )
        return Resolution(**base, applicable=True, trainable_parameters=biases, checked=True)
