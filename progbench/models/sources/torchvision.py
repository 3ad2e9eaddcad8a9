"""torchvision backbones: the library's model with its classifier replaced by Identity or by
the spec's projection (MedCLIP-ResNet keeps its projection as `fc`, so module names stay
torchvision's); pretrained weights from the weights enum.

Folder layout: `model.safetensors` or `pytorch_model.bin` (timm's hub layout for `*.tv_in1k`
has the same keys), or the single file torchvision downloads (`resnet18-f37072fd.pth`).
"""

from __future__ import annotations

import inspect
import urllib.error
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from progbench.config import BackboneSpec
from progbench.errors import RegistryError, WeightsError
from progbench.models.checkpoints import (
    StateDict,
    drop_prefixed,
    fix_torchvision_keys,
    load_strict,
    read_state_dict,
)
from progbench.models.sources import network
from progbench.models.sources.base import (
    LoadedBackbone,
    Source,
    require_hub_id,
    save_safetensors,
)

_CLASSIFIER_ATTRS = ("fc", "classifier")


def projection(spec: BackboneSpec) -> nn.Linear | None:
    p = spec.projection
    return None if p is None else nn.Linear(p.in_features, p.out_features, bias=p.bias)


def _builder_kwargs(spec: BackboneSpec) -> dict[str, Any]:
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
    kwargs = _builder_kwargs(spec)
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
    setattr(model, attr, projection(spec) or nn.Identity())
    return model


def classifier_attr(model: nn.Module) -> str | None:
    """The attribute that held the 1000-way classifier (now Identity or a projection)."""
    return next((a for a in _CLASSIFIER_ATTRS if hasattr(model, a)), None)


def load_torchvision_state(
    encoder: nn.Module, sd: StateDict, spec: BackboneSpec, source: str
) -> None:
    sd = drop_prefixed(fix_torchvision_keys(sd), spec.ignore_checkpoint_keys)
    attr = classifier_attr(encoder)
    if spec.projection is None and attr is not None:
        # The source model's 1000-way classifier is not part of the encoder.
        sd = drop_prefixed(sd, [f"{attr}."])
    load_strict(encoder, sd, source)


def weights_enum(spec: BackboneSpec) -> Any:
    import torchvision.models as tvm

    hub_id = require_hub_id(spec)
    try:
        return tvm.get_weight(hub_id)
    except (ValueError, KeyError, AttributeError) as err:
        raise RegistryError(
            f"backbone {spec.name!r}: unknown torchvision weights {hub_id!r}"
        ) from err


def _file_name(url: str) -> str:
    return Path(urlparse(url).path).name


class TorchvisionSource(Source):
    checkpoint_names = ("model.safetensors", "pytorch_model.bin")

    def build(self, spec: BackboneSpec) -> nn.Module:
        return build_torchvision(spec)

    def manual_download(self, spec: BackboneSpec) -> str:
        return f"download {weights_enum(spec).url} on a machine that has it"

    def _from_state_dict(self, spec: BackboneSpec, sd: StateDict, source: str) -> nn.Module:
        encoder = self.build(spec)
        load_torchvision_state(encoder, sd, spec, source)
        return encoder

    def from_hub(self, spec: BackboneSpec) -> nn.Module:
        enum = weights_enum(spec)
        # The file torchvision itself caches: reading it needs no network.
        cached = Path(torch.hub.get_dir()) / "checkpoints" / _file_name(enum.url)
        if cached.is_file():
            return self._from_state_dict(spec, read_state_dict(cached), str(cached))
        what = f"torchvision weights {spec.hub_id}"
        network.require_network(enum.url, what, spec, self.manual_download(spec))
        try:
            with network.download_timeout():
                sd = enum.get_state_dict(progress=False, check_hash=True, weights_only=True)
        except (OSError, urllib.error.URLError, RuntimeError) as err:
            raise WeightsError(
                f"could not fetch {spec.hub_id} for {spec.name} from {enum.url}: {err}",
                network.offline_hint(spec, self.manual_download(spec)),
            ) from err
        return self._from_state_dict(spec, sd, f"torchvision weights {spec.hub_id}")

    def load_path(self, spec: BackboneSpec, path: Path) -> nn.Module:
        file = self.locate(spec, path) if path.is_dir() else path
        return self._from_state_dict(spec, read_state_dict(file), str(file))

    def save(self, loaded: LoadedBackbone, out_dir: Path) -> None:
        save_safetensors(loaded.encoder.state_dict(), out_dir / self.checkpoint_names[0])

    def fetch(self, spec: BackboneSpec, to_dir: Path) -> None:
        """torchvision's own file, with the hash check torchvision does on it."""
        enum = weights_enum(spec)
        what = f"torchvision weights {spec.hub_id}"
        network.require_network(enum.url, what, spec, self.manual_download(spec))
        name = _file_name(enum.url)
        match = torch.hub.HASH_REGEX.search(name)
        with network.download_timeout():
            torch.hub.download_url_to_file(
                enum.url,
                str(to_dir / name),
                hash_prefix=match.group(1) if match else None,
                progress=False,
            )
