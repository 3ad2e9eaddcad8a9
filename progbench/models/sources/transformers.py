"""transformers backbones: `HFEncoder` around the model class named by `arch` (pooler_output,
then an optional projection named `projection_head` as in MedCLIP's `MedClipVisionModelViT`).

Feature variants (DINOv2's rule, applied to every ViT here): the class token of block i is the
model's final norm applied to that block's output (`hidden_states[i]`), the patch mean is the
mean of the final-normed patch tokens of the last block; so `cls1` is `pooler_output`. Swin has
no class token and its pooled output already is the mean of the last block's tokens: it offers
`cls1` only.

Folder layout: a `save_pretrained` directory or hub snapshot (`config.json` + weights). Old key
names in a checkpoint are converted by transformers itself
(`from_pretrained(None, config=..., state_dict=...)`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from progbench.config import BackboneSpec, TokenLayout
from progbench.errors import RegistryError, WeightsError
from progbench.models.checkpoints import StateDict, drop_prefixed, key_report, read_state_dict
from progbench.models.sources import network
from progbench.models.sources.base import LoadedBackbone, Source, require_hub_id
from progbench.models.sources.torchvision import projection

if TYPE_CHECKING:
    from transformers import PreTrainedModel

CONFIG = "config.json"
# The weights files of a hub repo, in order of preference; `.index.json` names a sharded one.
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# The final norm of each ViT class that offers variants (applied to every block's tokens).
FINAL_NORM = {
    "Dinov2Model": "layernorm",
    "Dinov2WithRegistersModel": "layernorm",
    "CLIPVisionModel": "post_layernorm",
}


class HFEncoder(nn.Module):
    """A transformers vision model as an encoder: pooled output, then an optional projection."""

    def __init__(self, model: PreTrainedModel, projection_head: nn.Linear | None = None) -> None:
        super().__init__()
        self.model = model
        self.projection_head = projection_head

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.model(pixel_values=pixel_values).pooler_output
        return pooled if self.projection_head is None else self.projection_head(pooled)

    def tokens(self, pixel_values: torch.Tensor, blocks: int, avgpool: bool) -> torch.Tensor:
        """The class tokens of the last `blocks` blocks, then the patch mean (see the module
        docstring), each projected when the encoder has a projection; concatenated."""
        name = type(self.model).__name__
        if name not in FINAL_NORM:
            raise RegistryError(
                f"{name} has no feature variants in progbench (only {', '.join(FINAL_NORM)})",
                "Offer `variants: {n_last_blocks: [1], avgpool: [false]}` (the default).",
            )
        hidden = self.model(pixel_values=pixel_values, output_hidden_states=True).hidden_states
        if blocks > len(hidden) - 1:
            raise RegistryError(f"{name} has {len(hidden) - 1} blocks, not {blocks}")
        norm = self.model.get_submodule(FINAL_NORM[name])
        prefix = 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)
        tokens = [norm(h[:, 0]) for h in hidden[len(hidden) - blocks :]]
        if avgpool:
            tokens.append(norm(hidden[-1][:, prefix:]).mean(1))
        if self.projection_head is not None:
            tokens = [self.projection_head(t) for t in tokens]
        return torch.cat(tokens, dim=-1)


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


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or load reports from transformers (our own key check reports
    mismatches); its settings are restored afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if was_enabled:
            hf_logging.enable_progress_bar()


def _check_loading_info(info: dict[str, Any], spec: BackboneSpec, source: str) -> None:
    ignore = tuple(spec.ignore_checkpoint_keys)
    unexpected = [
        k for k in info.get("unexpected_keys", ()) if not (ignore and k.startswith(ignore))
    ]
    mismatched = [f"{k} (checkpoint {a}, model {b})" for k, a, b in info.get("mismatched_keys", ())]
    missing = list(info.get("missing_keys", ()))
    if missing or unexpected or mismatched or info.get("error_msgs"):
        report = key_report(missing, unexpected, mismatched) or "; ".join(info["error_msgs"])
        raise WeightsError(
            f"{source} does not match backbone {spec.name}: {report}",
            "Check that the checkpoint belongs to this backbone (see `progbench models`).",
        )


def normalise(v: Any) -> Any:
    """JSON lists and YAML tuples compare equal."""
    return [normalise(x) for x in v] if isinstance(v, (list, tuple)) else v


def _check_hf_config(model: nn.Module, spec: BackboneSpec, source: str) -> None:
    """A directory brings its own config.json: it must describe the registry's architecture."""
    cfg = model.config
    diffs = [
        f"{k}={normalise(getattr(cfg, k, None))!r} (registry: {normalise(v)!r})"
        for k, v in spec.config_overrides.items()
        if normalise(getattr(cfg, k, None)) != normalise(v)
    ]
    if diffs:
        raise WeightsError(
            f"{source} is not a {spec.name} checkpoint: its config has {', '.join(diffs)}",
            "Pass the weights of this backbone, or register a backbone YAML for that model.",
        )


def _require_no_projection(spec: BackboneSpec, source: str) -> None:
    if spec.projection is not None:
        raise WeightsError(
            f"{source}: backbone {spec.name} has a projection, which a transformers directory "
            "does not hold",
            "Use weights_format: medclip checkpoints for backbones with a projection.",
        )


def _from_pretrained(spec: BackboneSpec, where: str, **kwargs: Any) -> nn.Module:
    """from_pretrained on a hub id or a local directory (it converts old key names itself).
    OSError (not found, not cached, no connection) is left to the caller."""
    cls, _ = transformers_classes(spec)
    _require_no_projection(spec, where)
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(where, output_loading_info=True, **kwargs)
    except (RuntimeError, ValueError) as err:
        raise WeightsError(f"{where} does not fit backbone {spec.name}: {err}") from err
    _check_loading_info(info, spec, where)
    _check_hf_config(model, spec, where)
    return HFEncoder(model, None)


def hf_model_from_state_dict(spec: BackboneSpec, sd: StateDict, source: str) -> PreTrainedModel:
    # from_pretrained(None, config=..., state_dict=...) applies transformers' own conversion of
    # checkpoint keys (e.g. 4.x Swin 'attention.self.query' -> 5.x 'attention.q_proj').
    cls, _ = transformers_classes(spec)
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(
                None, config=transformers_config(spec), state_dict=sd, output_loading_info=True
            )
    except (RuntimeError, ValueError) as err:
        raise WeightsError(f"{source} does not fit backbone {spec.name}: {err}") from err
    _check_loading_info(info, spec, source)
    return model


def pick_weight_files(files: list[str]) -> list[str]:
    """The files of a hub repo that from_pretrained reads: config.json and one weights set
    (safetensors first; a sharded set is its index plus every shard)."""
    for name in _WEIGHTS:
        if name in files:
            return [CONFIG, name]
        index = f"{name}.index.json"
        if index in files:
            stem, ext = name.rsplit(".", 1)
            shards = sorted(f for f in files if f.startswith(f"{stem}-") and f.endswith(f".{ext}"))
            return [CONFIG, index, *shards]
    raise WeightsError(
        f"the repo holds none of {', '.join(_WEIGHTS)} (files: {', '.join(sorted(files)[:12])})",
        "Check the backbone's hub_id.",
    )


class TransformersSource(Source):
    checkpoint_names = _WEIGHTS

    def tokens(
        self,
        spec: BackboneSpec,
        encoder: nn.Module,
        pixel_values: torch.Tensor,
        layout: TokenLayout,
    ) -> torch.Tensor:
        if layout.slots == 1:
            return encoder(pixel_values)
        assert isinstance(encoder, HFEncoder)
        return encoder.tokens(pixel_values, layout.blocks, layout.avgpool)

    def build(self, spec: BackboneSpec) -> nn.Module:
        cls, _ = transformers_classes(spec)
        return HFEncoder(cls(transformers_config(spec)), projection(spec))

    def manual_download(self, spec: BackboneSpec) -> str:
        return f"run `hf download {spec.hub_id} --local-dir DIR` where there is network"

    def from_hub(self, spec: BackboneSpec) -> nn.Module:
        hub_id = require_hub_id(spec)
        if network.hf_cached(hub_id, CONFIG) is not None:
            try:  # the Hugging Face cache, without a network call
                return _from_pretrained(spec, hub_id, local_files_only=True)
            except OSError:
                pass  # config cached, weights not: download them
        what = f"{hub_id} from the Hugging Face hub"
        network.require_network(network.hf_endpoint(), what, spec, self.manual_download(spec))
        try:
            return _from_pretrained(spec, hub_id)
        except OSError as err:
            raise WeightsError(
                f"could not load {hub_id} for {spec.name}: {str(err).splitlines()[0]}",
                network.offline_hint(spec, self.manual_download(spec)),
            ) from err

    def load_path(self, spec: BackboneSpec, path: Path) -> nn.Module:
        if not path.is_dir():
            _require_no_projection(spec, str(path))
            sd = drop_prefixed(read_state_dict(path), spec.ignore_checkpoint_keys)
            return HFEncoder(hf_model_from_state_dict(spec, sd, str(path)), None)
        self.locate(spec, path)
        try:
            return _from_pretrained(spec, str(path))
        except OSError as err:
            raise WeightsError(f"could not load {path} for {spec.name}: {err}") from err

    def locate(self, spec: BackboneSpec, folder: Path) -> Path:
        if not (folder / CONFIG).is_file():
            raise WeightsError(
                f"{folder} has no config.json: not a transformers save_pretrained directory",
                "Pass the directory written by save_pretrained / the hub snapshot, or a "
                "checkpoint file.",
            )
        for name in _WEIGHTS:
            for candidate in (folder / name, folder / f"{name}.index.json"):
                if candidate.is_file():
                    return candidate
        raise WeightsError(
            f"{folder} has a config.json but no weights ({' or '.join(_WEIGHTS)})",
            "Copy the whole folder, weights included.",
        )

    def save(self, loaded: LoadedBackbone, out_dir: Path) -> None:
        enc = loaded.encoder
        assert isinstance(enc, HFEncoder)
        _require_no_projection(loaded.spec, str(out_dir))
        with quiet_transformers():
            enc.model.save_pretrained(out_dir)

    def fetch(self, spec: BackboneSpec, to_dir: Path) -> None:
        """huggingface_hub's snapshot_download of config.json and the weights only."""
        from huggingface_hub import HfApi, snapshot_download

        hub_id = require_hub_id(spec)
        what = f"{hub_id} from the Hugging Face hub"
        network.require_network(network.hf_endpoint(), what, spec, self.manual_download(spec))
        files = pick_weight_files(HfApi().list_repo_files(hub_id))
        snapshot_download(hub_id, local_dir=to_dir, allow_patterns=files)
        network.drop_hf_download_metadata(to_dir)
