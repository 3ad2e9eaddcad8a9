"""Load a backbone's encoder with `--weights pretrained | random | PATH`.

- pretrained: the library's own source (torchvision weights enum, Hugging Face hub through
  transformers or open_clip, MedCLIP's release zip).
- random: the same architecture, initialised under `torch.manual_seed(seed)` (stable weights).
- PATH: a local directory in the library's own layout, or a checkpoint file (see docs/MODELS.md).

Loading is strict (checkpoints.load_strict). Every loaded encoder carries a fingerprint of its
weights, so cache keys and provenance follow the weights, not the way they were named.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.error
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from progbench.atomic import atomic_dir, atomic_write_json
from progbench.config import BackboneSpec
from progbench.errors import RegistryError, WeightsError
from progbench.models.checkpoints import (
    StateDict,
    drop_prefixed,
    find_checkpoint,
    fix_torchvision_keys,
    key_report,
    load_strict,
    read_state_dict,
    take_prefixed,
    weights_fingerprint,
)
from progbench.models.encoders import (
    HFEncoder,
    build_encoder,
    torchvision_classifier_attr,
    transformers_classes,
    transformers_config,
)
from progbench.models.registry import get_backbone_spec

PRETRAINED = "pretrained"
RANDOM = "random"

# File names each library's own directory layout uses, in order of preference.
_TORCHVISION_FILES = ("model.safetensors", "pytorch_model.bin")
_MEDCLIP_FILES = ("pytorch_model.bin", "model.safetensors")
_OPEN_CLIP_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)
_OPEN_CLIP_CONFIG = "open_clip_config.json"
# MedCLIP's MedClipModel holds the image encoder as `vision_model`; MedClipVisionModel (ResNet)
# holds torchvision's resnet50 as `model`, MedClipVisionModelViT holds `model` + `projection_head`.
_MEDCLIP_VISION = "vision_model."


@dataclass
class LoadedBackbone:
    """An encoder with its registry spec and where its weights came from."""

    encoder: nn.Module  # forward(pixel_values (B, 3, H, W), normalised) -> (B, feature_dim)
    spec: BackboneSpec
    weights: str  # "pretrained" | "random" | the path given
    weights_fingerprint: str  # same weights -> same string, however they were named


def load_backbone(name: str, weights: str = PRETRAINED, seed: int = 0) -> LoadedBackbone:
    """Build backbone `name` and load its weights. The encoder is returned in eval mode on CPU."""
    spec = get_backbone_spec(name)
    if weights == RANDOM:
        encoder = random_encoder(spec, seed)
    elif weights == PRETRAINED:
        encoder = _pretrained(spec)
    else:
        path = Path(weights).expanduser()
        if not path.exists():
            raise WeightsError(
                f"--weights {weights!r} is neither 'pretrained', 'random' nor an existing path",
                "Give a checkpoint file or a directory in the library's layout (docs/MODELS.md).",
            )
        encoder = _from_path(spec, path)
    encoder.eval()
    return LoadedBackbone(encoder, spec, weights, weights_fingerprint(encoder))


def random_encoder(spec: BackboneSpec, seed: int = 0) -> nn.Module:
    """The architecture with seeded random weights; leaves the global RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_encoder(spec)


def _offline_hint(spec: BackboneSpec, how: str) -> str:
    return (
        f"Without network access, {how}, then pass that path as --weights PATH "
        f"(for `{spec.name}`: see docs/MODELS.md, 'Weights'). For a dry run use --weights random."
    )


# ------------------------------------------------------------------------------------ pretrained


def _pretrained(spec: BackboneSpec) -> nn.Module:
    if spec.hub_id is None:
        raise WeightsError(
            f"backbone {spec.name!r} has no pretrained weights (no hub_id in its YAML)",
            "Use --weights random, or --weights PATH with a checkpoint.",
        )
    if spec.weights_format == "medclip":
        return _from_path(spec, _medclip_release(spec))
    if spec.library == "torchvision":
        return _torchvision_pretrained(spec)
    if spec.library == "transformers":
        return _transformers_from_dir(spec, spec.hub_id)
    return _open_clip_pretrained(spec)


def _torchvision_pretrained(spec: BackboneSpec) -> nn.Module:
    import torchvision.models as tvm

    assert spec.hub_id is not None
    try:
        enum = tvm.get_weight(spec.hub_id)
    except (ValueError, KeyError, AttributeError) as err:
        raise RegistryError(
            f"backbone {spec.name!r}: unknown torchvision weights {spec.hub_id!r}"
        ) from err
    try:
        sd = enum.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except (OSError, urllib.error.URLError, RuntimeError) as err:
        raise WeightsError(
            f"could not fetch {spec.hub_id} for {spec.name} from {enum.url}: {err}",
            _offline_hint(spec, f"download {enum.url} on a machine that has it"),
        ) from err
    encoder = build_encoder(spec)
    _load_torchvision(encoder, sd, spec, f"torchvision weights {spec.hub_id}")
    return encoder


def _open_clip_pretrained(spec: BackboneSpec) -> nn.Module:
    from open_clip.pretrained import download_pretrained_from_hf

    assert spec.hub_id is not None
    try:
        path = download_pretrained_from_hf(spec.hub_id)
    except (OSError, RuntimeError) as err:
        raise WeightsError(
            f"could not fetch open_clip weights of {spec.hub_id} for {spec.name}: {err}",
            _offline_hint(
                spec,
                f"run `huggingface-cli download {spec.hub_id} --local-dir DIR` where there is network",
            ),
        ) from err
    return _open_clip_from_file(spec, Path(path))


def _medclip_release(spec: BackboneSpec) -> Path:
    """MedCLIP's release zip, downloaded once into torch's hub folder; the path of its weights."""
    assert spec.hub_id is not None
    url = spec.hub_id
    root = Path(torch.hub.get_dir()) / "progbench" / Path(urlparse(url).path).stem
    ckpt = root / "pytorch_model.bin"
    if ckpt.is_file():
        return ckpt
    root.mkdir(parents=True, exist_ok=True)
    zip_path = root / "release.zip"
    try:
        torch.hub.download_url_to_file(url, str(zip_path), progress=False)
    except (OSError, urllib.error.URLError) as err:
        raise WeightsError(
            f"could not fetch MedCLIP weights for {spec.name} from {url}: {err}",
            _offline_hint(spec, f"download and unzip {url} (it holds pytorch_model.bin)"),
        ) from err
    with zipfile.ZipFile(zip_path) as zf:
        # Copy only the weights file, by name: never extract arbitrary paths from an archive.
        member = next((n for n in zf.namelist() if n.endswith("pytorch_model.bin")), None)
        if member is None:
            raise WeightsError(f"{url} holds no pytorch_model.bin (members: {zf.namelist()[:10]})")
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".tmp")
        with zf.open(member) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, ckpt)
    zip_path.unlink()
    return ckpt


# ------------------------------------------------------------------------------------------ PATH


def _from_path(spec: BackboneSpec, path: Path) -> nn.Module:
    if spec.weights_format == "medclip":
        file = find_checkpoint(path, _MEDCLIP_FILES) if path.is_dir() else path
        return _medclip_from_file(spec, file)
    if spec.library == "torchvision":
        file = find_checkpoint(path, _TORCHVISION_FILES) if path.is_dir() else path
        encoder = build_encoder(spec)
        _load_torchvision(encoder, read_state_dict(file), spec, str(file))
        return encoder
    if spec.library == "transformers":
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise WeightsError(
                    f"{path} has no config.json: not a transformers save_pretrained directory",
                    "Pass the directory written by save_pretrained / the hub snapshot, or a "
                    "checkpoint file.",
                )
            return _transformers_from_dir(spec, str(path))
        return _transformers_from_state_dict(spec, read_state_dict(path), str(path))
    if path.is_dir():
        _check_open_clip_config(spec, path / _OPEN_CLIP_CONFIG)
        return _open_clip_from_file(spec, find_checkpoint(path, _OPEN_CLIP_FILES))
    return _open_clip_from_file(spec, path)


def _load_torchvision(encoder: nn.Module, sd: StateDict, spec: BackboneSpec, source: str) -> None:
    sd = drop_prefixed(fix_torchvision_keys(sd), spec.ignore_checkpoint_keys)
    attr = torchvision_classifier_attr(encoder)
    if spec.projection is None and attr is not None:
        # The source model's 1000-way classifier is not part of the encoder.
        sd = drop_prefixed(sd, [f"{attr}."])
    load_strict(encoder, sd, source)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
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


def _normalise(v: Any) -> Any:
    return [_normalise(x) for x in v] if isinstance(v, (list, tuple)) else v


def _check_hf_config(model: nn.Module, spec: BackboneSpec, source: str) -> None:
    """A directory brings its own config.json: it must describe the registry's architecture."""
    cfg = model.config  # type: ignore[attr-defined]
    diffs = [
        f"{k}={_normalise(getattr(cfg, k, None))!r} (registry: {_normalise(v)!r})"
        for k, v in spec.config_overrides.items()
        if _normalise(getattr(cfg, k, None)) != _normalise(v)
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


def _transformers_from_dir(spec: BackboneSpec, where: str) -> nn.Module:
    """from_pretrained on a hub id or a local directory (it converts old key names itself)."""
    cls, _ = transformers_classes(spec)
    _require_no_projection(spec, where)
    try:
        with _quiet_transformers():
            model, info = cls.from_pretrained(where, output_loading_info=True)
    except OSError as err:
        raise WeightsError(
            f"could not load {where} for {spec.name}: {str(err).splitlines()[0]}",
            _offline_hint(
                spec,
                f"run `huggingface-cli download {where} --local-dir DIR` where there is network",
            ),
        ) from err
    except (RuntimeError, ValueError) as err:
        raise WeightsError(f"{where} does not fit backbone {spec.name}: {err}") from err
    _check_loading_info(info, spec, where)
    _check_hf_config(model, spec, where)
    return HFEncoder(model, None)


def _hf_model_from_state_dict(spec: BackboneSpec, sd: StateDict, source: str) -> nn.Module:
    # from_pretrained(None, config=..., state_dict=...) applies transformers' own conversion of
    # checkpoint keys (e.g. 4.x Swin 'attention.self.query' -> 5.x 'attention.q_proj').
    cls, _ = transformers_classes(spec)
    try:
        with _quiet_transformers():
            model, info = cls.from_pretrained(
                None, config=transformers_config(spec), state_dict=sd, output_loading_info=True
            )
    except (RuntimeError, ValueError) as err:
        raise WeightsError(f"{source} does not fit backbone {spec.name}: {err}") from err
    _check_loading_info(info, spec, source)
    return model


def _transformers_from_state_dict(spec: BackboneSpec, sd: StateDict, source: str) -> nn.Module:
    _require_no_projection(spec, source)
    sd = drop_prefixed(sd, spec.ignore_checkpoint_keys)
    return HFEncoder(_hf_model_from_state_dict(spec, sd, source), None)


def _medclip_from_file(spec: BackboneSpec, file: Path) -> nn.Module:
    """MedCLIP's release checkpoint (the whole MedClipModel) or its image encoder alone."""
    sd = read_state_dict(file)
    if any(k.startswith(_MEDCLIP_VISION) for k in sd):
        sd = take_prefixed(sd, _MEDCLIP_VISION)  # drops text_model.* and logit_scale
    if spec.library == "torchvision":
        sd = take_prefixed(sd, "model.") if all(k.startswith("model.") for k in sd) else sd
        encoder = build_encoder(spec)
        _load_torchvision(encoder, sd, spec, str(file))
        return encoder
    if spec.projection is None:
        raise RegistryError(
            f"backbone {spec.name!r}: MedCLIP transformers encoders have a projection"
        )
    own = {"model.", "projection_head."}
    stray = sorted(k for k in sd if not k.startswith(tuple(own)))
    if stray:
        raise WeightsError(
            f"{file} does not match backbone {spec.name}: {key_report([], stray, [])}",
            "Expected MedCLIP keys vision_model.model.* and vision_model.projection_head.*.",
        )
    model = _hf_model_from_state_dict(spec, take_prefixed(sd, "model."), str(file))
    p = spec.projection
    proj = nn.Linear(p.in_features, p.out_features, bias=p.bias)
    load_strict(proj, take_prefixed(sd, "projection_head."), f"{file} (projection_head)")
    return HFEncoder(model, proj)


def _check_open_clip_config(spec: BackboneSpec, config_path: Path) -> None:
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
        if k in have_v and _normalise(have_v[k]) != _normalise(v):
            diffs.append(f"vision_cfg.{k}={have_v[k]!r} (registry: {v!r})")
    if diffs:
        raise WeightsError(
            f"{config_path} does not describe backbone {spec.name}: {', '.join(diffs)}",
            "Pass the weights of this backbone, or register a backbone YAML for that model.",
        )


def _open_clip_from_file(spec: BackboneSpec, file: Path) -> nn.Module:
    sd = read_state_dict(file)
    if any(k.startswith("visual.") for k in sd):
        sd = take_prefixed(sd, "visual.")  # a whole CLIP model: keep the image tower only
    encoder = build_encoder(spec)
    load_strict(encoder, drop_prefixed(sd, spec.ignore_checkpoint_keys), str(file))
    return encoder


# ------------------------------------------------------------------------------- saving weights


def _contiguous(sd: StateDict, prefix: str = "") -> StateDict:
    return {prefix + k: v.detach().contiguous() for k, v in sd.items()}


def save_backbone(loaded: LoadedBackbone, out_dir: str | Path) -> Path:
    """Write the encoder's weights in the layout `--weights PATH` reads for its library.

    torchvision: model.safetensors; transformers: save_pretrained (config.json +
    model.safetensors); MedCLIP: model.safetensors with MedCLIP's key names; open_clip:
    open_clip_config.json + open_clip_model.safetensors (image tower under `visual.`).
    Refuses to overwrite an existing directory.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise WeightsError(f"{out_dir} already exists; not overwriting it", "Choose a new folder.")
    spec, enc = loaded.spec, loaded.encoder
    with atomic_dir(out_dir) as tmp:
        if spec.weights_format == "medclip":
            prefix = _MEDCLIP_VISION + ("model." if spec.library == "torchvision" else "")
            save_file(_contiguous(enc.state_dict(), prefix), str(tmp / "model.safetensors"))
        elif spec.library == "torchvision":
            save_file(_contiguous(enc.state_dict()), str(tmp / "model.safetensors"))
        elif spec.library == "transformers":
            assert isinstance(enc, HFEncoder)
            _require_no_projection(spec, str(out_dir))
            with _quiet_transformers():
                enc.model.save_pretrained(tmp)
        else:
            cfg = {
                "model_cfg": spec.config_overrides,
                "preprocess_cfg": {"mean": list(spec.mean), "std": list(spec.std)},
            }
            atomic_write_json(tmp / _OPEN_CLIP_CONFIG, cfg)
            save_file(_contiguous(enc.state_dict(), "visual."), str(tmp / _OPEN_CLIP_FILES[0]))
    return out_dir
