"""MedCLIP backbones (`weights_format: medclip`): the release zip's `pytorch_model.bin` holds the
whole MedClipModel. Its image encoder is `vision_model`: MedClipVisionModel (ResNet) holds
torchvision's resnet50 as `model`; MedClipVisionModelViT holds a Swin `model` + `projection_head`.

Folder layout: the unzipped release folder (`pytorch_model.bin`). `vision_model.*` is taken;
the text tower and `logit_scale` are dropped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import zipfile
from abc import abstractmethod
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from progbench.config import BackboneSpec
from progbench.errors import RegistryError, WeightsError
from progbench.models.checkpoints import (
    StateDict,
    find_checkpoint,
    key_report,
    load_strict,
    read_state_dict,
    take_prefixed,
)
from progbench.models.sources import network
from progbench.models.sources.base import (
    LoadedBackbone,
    Source,
    require_hub_id,
    save_safetensors,
)
from progbench.models.sources.torchvision import TorchvisionSource
from progbench.models.sources.transformers import (
    HFEncoder,
    TransformersSource,
    hf_model_from_state_dict,
)

VISION = "vision_model."
CHECKPOINT = "pytorch_model.bin"


def _download_release(spec: BackboneSpec, folder: Path) -> Path:
    """Download the release zip into `folder` and keep only its weights file (by name: never
    extract arbitrary paths from an archive); the path of that file."""
    url = require_hub_id(spec)
    manual = f"download and unzip {url} (it holds {CHECKPOINT})"
    network.require_network(url, f"MedCLIP weights from {url}", spec, manual)
    zip_path = folder / "release.zip"
    try:
        with network.download_timeout():
            torch.hub.download_url_to_file(url, str(zip_path), progress=False)
    except (OSError, urllib.error.URLError) as err:
        raise WeightsError(
            f"could not fetch MedCLIP weights for {spec.name} from {url}: {err}",
            network.offline_hint(spec, manual),
        ) from err
    ckpt = folder / CHECKPOINT
    with zipfile.ZipFile(zip_path) as zf:
        member = next((n for n in zf.namelist() if n.endswith(CHECKPOINT)), None)
        if member is None:
            raise WeightsError(f"{url} holds no {CHECKPOINT} (members: {zf.namelist()[:10]})")
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with zf.open(member) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, ckpt)
    zip_path.unlink()
    return ckpt


def _release_cache(spec: BackboneSpec) -> Path:
    """The release's weights, downloaded once into torch's hub folder."""
    url = require_hub_id(spec)
    root = Path(torch.hub.get_dir()) / "progbench" / Path(urlparse(url).path).stem
    if (root / CHECKPOINT).is_file():
        return root / CHECKPOINT
    root.mkdir(parents=True, exist_ok=True)
    return _download_release(spec, root)


def vision_state(file: Path) -> StateDict:
    """The image encoder's state dict from the whole model's checkpoint (or from its own)."""
    sd = read_state_dict(file)
    if any(k.startswith(VISION) for k in sd):
        sd = take_prefixed(sd, VISION)  # drops text_model.* and logit_scale
    return sd


class _MedClipRelease(Source):
    """What both MedCLIP image encoders share: the release zip and its folder layout."""

    checkpoint_names = (CHECKPOINT, "model.safetensors")
    save_prefix = VISION

    def manual_download(self, spec: BackboneSpec) -> str:
        return f"download and unzip {spec.hub_id} (it holds {CHECKPOINT})"

    @abstractmethod
    def from_file(self, spec: BackboneSpec, file: Path) -> nn.Module:
        """The encoder from a MedCLIP checkpoint (the whole model, or its image encoder)."""

    def from_hub(self, spec: BackboneSpec) -> nn.Module:
        return self.from_file(spec, _release_cache(spec))

    def load_path(self, spec: BackboneSpec, path: Path) -> nn.Module:
        return self.from_file(spec, self.locate(spec, path) if path.is_dir() else path)

    def locate(self, spec: BackboneSpec, folder: Path) -> Path:
        # Not TransformersSource's (config.json + weights): a release folder has no config.
        return find_checkpoint(folder, self.checkpoint_names)

    def save(self, loaded: LoadedBackbone, out_dir: Path) -> None:
        """MedCLIP's key names, in safetensors."""
        save_safetensors(
            loaded.encoder.state_dict(), out_dir / "model.safetensors", self.save_prefix
        )

    def fetch(self, spec: BackboneSpec, to_dir: Path) -> None:
        _download_release(spec, to_dir)


class MedClipResNetSource(_MedClipRelease, TorchvisionSource):
    save_prefix = VISION + "model."

    def from_file(self, spec: BackboneSpec, file: Path) -> nn.Module:
        sd = vision_state(file)
        sd = take_prefixed(sd, "model.") if all(k.startswith("model.") for k in sd) else sd
        return self._from_state_dict(spec, sd, str(file))


class MedClipViTSource(_MedClipRelease, TransformersSource):
    def from_file(self, spec: BackboneSpec, file: Path) -> nn.Module:
        sd = vision_state(file)
        p = spec.projection
        if p is None:
            raise RegistryError(
                f"backbone {spec.name!r}: MedCLIP transformers encoders have a projection"
            )
        stray = sorted(k for k in sd if not k.startswith(("model.", "projection_head.")))
        if stray:
            raise WeightsError(
                f"{file} does not match backbone {spec.name}: {key_report([], stray, [])}",
                "Expected MedCLIP keys vision_model.model.* and vision_model.projection_head.*.",
            )
        model = hf_model_from_state_dict(spec, take_prefixed(sd, "model."), str(file))
        proj = nn.Linear(p.in_features, p.out_features, bias=p.bias)
        load_strict(proj, take_prefixed(sd, "projection_head."), f"{file} (projection_head)")
        return HFEncoder(model, proj)
