"""Saving and loading trained classifiers.

Layout of a saved model directory (all tensors as safetensors):
- lora / vera / ia3: peft's save_pretrained layout (adapter_config.json,
  adapter_model.safetensors), so `peft.PeftModel.from_pretrained(encoder, dir)` loads it,
  plus `progbench_head.safetensors`;
- bitfit: `bitfit.safetensors`, the trained biases and the head;
- fft: `model.safetensors`, the whole classifier's state dict;
- lp: `progbench_head.safetensors`.
`progbench_model.json` (backbone, strategy, classes, weights fingerprint) is written last: a
directory without it is incomplete. A finished directory is never overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from progbench.atomic import atomic_write_json, atomic_write_with
from progbench.errors import RunError, WeightsError
from progbench.models.checkpoints import load_strict, read_state_dict, take_prefixed
from progbench.models.loaders import LoadedBackbone
from progbench.models.strategies import (
    HEAD_NAME,
    ClassifierModel,
    _check_unclaimed,
    _claim,
    build_classifier,
    resolve,
)
from progbench.provenance import library_versions, now_iso

INFO_FILE = "progbench_model.json"
HEAD_FILE = "progbench_head.safetensors"
FULL_FILE = "model.safetensors"
BITFIT_FILE = "bitfit.safetensors"
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _save_tensors(path: Path, tensors: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp)))


def _head_state(model: ClassifierModel) -> dict[str, Any]:
    return {f"{HEAD_NAME}.{k}": v for k, v in model.progbench_head.state_dict().items()}


def save_trained(model: ClassifierModel, out_dir: str | Path) -> None:
    """Save what training changed, in the layout of the module docstring."""
    out_dir = Path(out_dir)
    if (out_dir / INFO_FILE).exists():
        raise RunError(
            f"{out_dir} already holds a saved model ({INFO_FILE}); not overwriting it",
            "Save into a new folder, or delete the old one if it is no longer wanted.",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    kind = model.strategy.kind
    if model.strategy.uses_peft:
        # peft writes its files directly: write them beside, then move each into place.
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".peft-") as tmp:
            model.backbone.save_pretrained(tmp, safe_serialization=True)
            for name in PEFT_FILES:
                os.replace(Path(tmp) / name, out_dir / name)
        _save_tensors(out_dir / HEAD_FILE, _head_state(model))
    elif kind == "fft":
        _save_tensors(out_dir / FULL_FILE, model.state_dict())
    elif kind == "bitfit":
        trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
        _save_tensors(out_dir / BITFIT_FILE, trained)
    else:
        _save_tensors(out_dir / HEAD_FILE, _head_state(model))
    info = {
        "backbone": model.spec.name,
        "strategy": model.strategy.name,
        "kind": kind,
        "num_classes": model.num_classes,
        "feature_dim": model.spec.feature_dim,
        "weights": model.weights,
        "weights_fingerprint": model.weights_fingerprint,
        "target_modules": model.resolution.target_modules,
        "library_versions": library_versions(),
        "created": now_iso(),
    }
    atomic_write_json(out_dir / INFO_FILE, info)


def read_model_info(out_dir: str | Path) -> dict[str, Any]:
    path = Path(out_dir) / INFO_FILE
    if not path.is_file():
        raise RunError(
            f"{out_dir} holds no saved model ({INFO_FILE} missing: unfinished or wrong folder)"
        )
    return json.loads(path.read_text())


def load_trained(
    out_dir: str | Path, loaded: LoadedBackbone, strategy: str, trainable: bool = False
) -> ClassifierModel:
    """Rebuild a saved classifier on `loaded` (which must carry the same backbone weights).

    The model comes back in eval mode; with `trainable=False` nothing requires grad.
    """
    out_dir = Path(out_dir)
    info = read_model_info(out_dir)
    if (info["backbone"], info["strategy"]) != (loaded.spec.name, strategy):
        raise RunError(
            f"{out_dir} holds {info['strategy']} on {info['backbone']}, not {strategy} on "
            f"{loaded.spec.name}"
        )
    if info["weights_fingerprint"] != loaded.weights_fingerprint:
        raise WeightsError(
            f"{out_dir} was trained on backbone weights {info['weights_fingerprint']} "
            f"({info['weights']}); the loaded backbone has {loaded.weights_fingerprint} "
            f"({loaded.weights})",
            f"Load the backbone with --weights {info['weights']}.",
        )
    num_classes = int(info["num_classes"])
    if info["kind"] in ("lora", "vera", "ia3"):
        model = _load_peft(out_dir, loaded, strategy, num_classes, trainable)
    else:
        model = build_classifier(loaded, strategy, num_classes)
        if info["kind"] == "fft":
            load_strict(model, read_state_dict(out_dir / FULL_FILE), str(out_dir / FULL_FILE))
        else:
            file = out_dir / (BITFIT_FILE if info["kind"] == "bitfit" else HEAD_FILE)
            _load_subset(model, read_state_dict(file), str(file))
    if not trainable:
        model.requires_grad_(False)
    return model.eval()


def _load_subset(model: ClassifierModel, sd: dict[str, Any], source: str) -> None:
    """Load the trained tensors (biases + head, or the head): exactly the trainable ones."""
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = expected - set(sd), set(sd) - expected
    if missing or unexpected:
        from progbench.models.checkpoints import key_report

        raise WeightsError(
            f"{source} does not match the model: {key_report(missing, unexpected, [])}"
        )
    params = dict(model.named_parameters())
    for name, t in sd.items():
        if params[name].shape != t.shape:
            raise WeightsError(
                f"{source}: {name} has shape {tuple(t.shape)}, model {tuple(params[name].shape)}"
            )
        params[name].data.copy_(t)


def _load_peft(
    out_dir: Path, loaded: LoadedBackbone, strategy: str, num_classes: int, trainable: bool
) -> ClassifierModel:
    from peft import PeftModel

    from progbench.models.registry import get_strategy_spec

    sspec = get_strategy_spec(strategy)
    _check_unclaimed(loaded)
    res = resolve(loaded.spec, sspec, loaded.encoder)
    _claim(loaded)
    loaded.encoder.requires_grad_(False)
    backbone = PeftModel.from_pretrained(loaded.encoder, str(out_dir), is_trainable=trainable)
    first = next(loaded.encoder.parameters())
    head = nn.Linear(loaded.spec.feature_dim, num_classes, device=first.device, dtype=first.dtype)
    load_strict(
        head,
        take_prefixed(read_state_dict(out_dir / HEAD_FILE), f"{HEAD_NAME}."),
        str(out_dir / HEAD_FILE),
    )
    return ClassifierModel(
        backbone, head, loaded.spec, sspec, res, loaded.weights, loaded.weights_fingerprint
    )
