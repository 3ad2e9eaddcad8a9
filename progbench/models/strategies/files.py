"""Saving and loading trained classifiers, whatever the strategy.

Layout of a saved model directory (all tensors as safetensors), per kind:
- lora / vera / ia3 / peft: peft's save_pretrained layout (adapter_config.json,
  adapter_model.safetensors), so `peft.PeftModel.from_pretrained(encoder, dir)` loads it, plus
  `progbench_head.safetensors`;
- bitfit: `bitfit.safetensors`, the trained biases and the head;
- fft: `model.safetensors`, the whole classifier's state dict;
- lp: `progbench_head.safetensors`.
`progbench_model.json` (backbone, strategy, kind, classes, head variant, weights fingerprint) is
written last: a directory without it is incomplete. One without `head_variant` (saved before
feature variants) has the `cls1` head. A finished directory is never overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from progbench.atomic import atomic_write_json
from progbench.config import DEFAULT_VARIANT, Variant
from progbench.errors import RunError, WeightsError
from progbench.models.loaders import LoadedBackbone
from progbench.models.strategies.classifier import ClassifierModel
from progbench.models.strategies.kinds import BITFIT_FILE, FULL_FILE, HEAD_FILE
from progbench.models.strategies.peft import PEFT_FILES
from progbench.models.strategies.registry import get_strategy
from progbench.provenance import library_versions, now_iso

INFO_FILE = "progbench_model.json"
# Every file a saved model may hold (a finalisation killed before DONE leaves some of them).
SAVED_MODEL_FILES = (*PEFT_FILES, HEAD_FILE, FULL_FILE, BITFIT_FILE, INFO_FILE)


def save_trained(model: ClassifierModel, out_dir: str | Path) -> None:
    """Save what training changed, in the strategy's layout, then the info file."""
    out_dir = Path(out_dir)
    if (out_dir / INFO_FILE).exists():
        raise RunError(
            f"{out_dir} already holds a saved model ({INFO_FILE}); not overwriting it",
            "Save into a new folder, or delete the old one if it is no longer wanted.",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.strategy.save(model, out_dir)
    info = {
        "backbone": model.spec.name,
        "strategy": model.strategy.name,
        "kind": model.strategy.kind,
        "num_classes": model.num_classes,
        "feature_dim": model.spec.feature_dim,
        "head_variant": model.variant.name,
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
    variant = Variant.parse(info.get("head_variant", DEFAULT_VARIANT.name))
    strat = get_strategy(strategy).with_variant(variant)
    model = strat.load(out_dir, loaded, int(info["num_classes"]))
    if not trainable:
        model.requires_grad_(False)
    return model.eval()
