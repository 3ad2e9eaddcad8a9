"""open_clip backbones: the vision tower open_clip itself builds from a `model_cfg` (BiomedCLIP:
a timm ViT trunk plus a linear projection). Only the image tower is built.

Feature variants (DINOv2's rule): the class token of block i is the timm trunk's final norm
applied to that block's output, the patch mean the mean of the last block's normed patch tokens
(timm's `forward_intermediates(norm=True)`); each then goes through the rest of the trunk's head
and open_clip's projection, as the pooled class token does, so `cls1` is the encoder's output.

Folder layout: open_clip's hub layout, `open_clip_config.json` + `open_clip_model.safetensors`
or `open_clip_pytorch_model.bin` (a whole CLIP model: `visual.*` is taken).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from progbench.config import BackboneSpec, TokenLayout
from progbench.errors import RegistryError, WeightsError
from progbench.models.checkpoints import drop_prefixed, load_strict, read_state_dict, take_prefixed
from progbench.models.sources import network
from progbench.models.sources.base import (
    LoadedBackbone,
    Source,
    require_hub_id,
    save_safetensors,
)
from progbench.models.sources.private import open_clip_vision_tower
from progbench.models.sources.transformers import normalise

CONFIG = "open_clip_config.json"  # open_clip.constants.HF_CONFIG_NAME
# open_clip.constants.HF_SAFE_WEIGHTS_NAME and HF_WEIGHTS_NAME: the files its hf-hub: loader reads.
HUB_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _check_config(spec: BackboneSpec, config_path: Path) -> None:
    if not config_path.is_file():
        return  # a bare weights folder: the strict key check still guards the architecture
    cfg = json.loads(config_path.read_text())
    model_cfg = cfg.get("model_cfg", cfg)
    want = spec.config_overrides
    diffs = []
    if model_cfg.get("embed_dim") != want.get("embed_dim"):
        diffs.append(
            f"embed_dim={model_cfg.get('embed_dim')!r} (registry: {want.get('embed_dim')!r})"
        )
    have_v = model_cfg.get("vision_cfg", {})
    for k, v in want.get("vision_cfg", {}).items():
        if k in have_v and normalise(have_v[k]) != normalise(v):
            diffs.append(f"vision_cfg.{k}={have_v[k]!r} (registry: {v!r})")
    if diffs:
        raise WeightsError(
            f"{config_path} does not describe backbone {spec.name}: {', '.join(diffs)}",
            "Pass the weights of this backbone, or register a backbone YAML for that model.",
        )


def pick_hub_files(files: list[str]) -> list[str]:
    """open_clip_config.json (when the repo has it) and the preferred weights file."""
    weights = next((f for f in HUB_WEIGHTS if f in files), None)
    if weights is None:
        raise WeightsError(
            f"the repo holds none of {', '.join(HUB_WEIGHTS)} "
            f"(files: {', '.join(sorted(files)[:12])})",
            "Check the backbone's hub_id: it must be an open_clip hf-hub: repo.",
        )
    return [f for f in (CONFIG,) if f in files] + [weights]


def timm_vit_tokens(
    encoder: nn.Module, x: torch.Tensor, blocks: int, avgpool: bool
) -> torch.Tensor:
    """Tokens of an open_clip TimmModel around a timm VisionTransformer pooled on its class
    token; each token goes through the trunk's head and open_clip's projection."""
    trunk = getattr(encoder, "trunk", None)
    if (
        trunk is None
        or not hasattr(trunk, "forward_intermediates")
        or getattr(trunk, "global_pool", "") != "token"
    ):
        raise RegistryError(
            f"{type(trunk).__name__} is not a timm ViT pooled on its class token: it has no "
            "feature variants in progbench",
            "Offer `variants: {n_last_blocks: [1], avgpool: [false]}` (the default).",
        )
    inter = trunk.forward_intermediates(
        x, indices=blocks, return_prefix_tokens=True, norm=True, output_fmt="NLC",
        intermediates_only=True,
    )  # fmt: skip
    tokens = [prefix[:, 0] for _, prefix in inter]
    if avgpool:
        tokens.append(inter[-1][0].mean(1))
    head = [trunk.fc_norm, trunk.head_drop, trunk.head, encoder.head]
    out = []
    for t in tokens:
        for layer in head:
            t = layer(t)
        out.append(t)
    return torch.cat(out, dim=-1)


class OpenClipSource(Source):
    checkpoint_names = (
        HUB_WEIGHTS[0],
        "open_clip_pytorch_model.safetensors",
        HUB_WEIGHTS[1],
        "model.safetensors",
        "pytorch_model.bin",
    )

    def build(self, spec: BackboneSpec) -> nn.Module:
        """open_clip's own vision-tower builder, fed the `model_cfg` of open_clip_config.json."""
        cfg = spec.config_overrides
        if "embed_dim" not in cfg or "vision_cfg" not in cfg:
            raise RegistryError(
                f"backbone {spec.name!r}: open_clip config_overrides need `embed_dim` and "
                "`vision_cfg`",
                "Copy them from the model's open_clip_config.json (its `model_cfg`).",
            )
        try:
            return open_clip_vision_tower(
                cfg["embed_dim"], dict(cfg["vision_cfg"]), cfg.get("quick_gelu", False)
            )
        except (TypeError, ValueError, RuntimeError) as err:
            raise RegistryError(
                f"backbone {spec.name!r}: open_clip cannot build it: {err}"
            ) from err

    def manual_download(self, spec: BackboneSpec) -> str:
        return f"run `hf download {spec.hub_id} --local-dir DIR` where there is network"

    def tokens(
        self,
        spec: BackboneSpec,
        encoder: nn.Module,
        pixel_values: torch.Tensor,
        layout: TokenLayout,
    ) -> torch.Tensor:
        if layout.slots == 1:
            return encoder(pixel_values)
        return timm_vit_tokens(encoder, pixel_values, layout.blocks, layout.avgpool)

    def _from_file(self, spec: BackboneSpec, file: Path) -> nn.Module:
        sd = read_state_dict(file)
        if any(k.startswith("visual.") for k in sd):
            sd = take_prefixed(sd, "visual.")  # a whole CLIP model: keep the image tower only
        encoder = self.build(spec)
        load_strict(encoder, drop_prefixed(sd, spec.ignore_checkpoint_keys), str(file))
        return encoder

    def from_hub(self, spec: BackboneSpec) -> nn.Module:
        hub_id = require_hub_id(spec)
        for name in HUB_WEIGHTS:  # the Hugging Face cache, without a network call
            if (cached := network.hf_cached(hub_id, name)) is not None:
                return self._from_file(spec, cached)
        what = f"open_clip weights of {hub_id}"
        network.require_network(network.hf_endpoint(), what, spec, self.manual_download(spec))
        from open_clip.pretrained import download_pretrained_from_hf

        try:
            path = download_pretrained_from_hf(hub_id)
        except (OSError, RuntimeError) as err:
            raise WeightsError(
                f"could not fetch open_clip weights of {hub_id} for {spec.name}: {err}",
                network.offline_hint(spec, self.manual_download(spec)),
            ) from err
        return self._from_file(spec, Path(path))

    def load_path(self, spec: BackboneSpec, path: Path) -> nn.Module:
        if path.is_dir():
            _check_config(spec, path / CONFIG)
            return self._from_file(spec, self.locate(spec, path))
        return self._from_file(spec, path)

    def save(self, loaded: LoadedBackbone, out_dir: Path) -> None:
        from progbench.atomic import atomic_write_json

        spec = loaded.spec
        cfg = {
            "model_cfg": spec.config_overrides,
            "preprocess_cfg": {"mean": list(spec.mean), "std": list(spec.std)},
        }
        atomic_write_json(out_dir / CONFIG, cfg)
        save_safetensors(loaded.encoder.state_dict(), out_dir / HUB_WEIGHTS[0], "visual.")

    def fetch(self, spec: BackboneSpec, to_dir: Path) -> None:
        """The files open_clip's hf-hub: loader reads, by huggingface_hub's hf_hub_download.
        The weights file holds the text tower too: the repo has no image-only file."""
        from huggingface_hub import HfApi, hf_hub_download

        hub_id = require_hub_id(spec)
        what = f"open_clip weights of {hub_id}"
        network.require_network(network.hf_endpoint(), what, spec, self.manual_download(spec))
        for name in pick_hub_files(HfApi().list_repo_files(hub_id)):
            hf_hub_download(hub_id, name, local_dir=to_dir)
        network.drop_hf_download_metadata(to_dir)
