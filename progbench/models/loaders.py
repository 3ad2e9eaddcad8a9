"""Load a backbone's encoder with `--weights pretrained | random | PATH`.

- pretrained: a local weights folder (`weights_dir`, $PROGBENCH_WEIGHTS_DIR, or the default
  folder when it holds the backbone; see progbench.models.weights), else the library's own
  source (torchvision weights enum, Hugging Face hub through transformers or open_clip,
  MedCLIP's release zip): its local cache first, then the network after a quick probe.
- random: the same architecture, initialised under `torch.manual_seed(seed)` (stable weights).
- PATH: a local directory in the library's own layout, or a checkpoint file (see docs/MODELS.md).

Each library is one `Source` (progbench.models.sources). Loading is strict
(checkpoints.load_strict). Every loaded encoder carries a fingerprint of its weights, so cache
keys and provenance follow the weights, not the way they were named.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from progbench.atomic import atomic_dir
from progbench.config import BackboneSpec
from progbench.errors import WeightsError
from progbench.models.checkpoints import weights_fingerprint
from progbench.models.registry import get_backbone_spec
from progbench.models.sources import LoadedBackbone, source_for
from progbench.models.weights import local_weights

PRETRAINED = "pretrained"
RANDOM = "random"

__all__ = [
    "PRETRAINED",
    "RANDOM",
    "LoadedBackbone",
    "load_backbone",
    "random_encoder",
    "save_backbone",
]


def load_backbone(
    name: str,
    weights: str = PRETRAINED,
    seed: int = 0,
    weights_dir: str | Path | None = None,
) -> LoadedBackbone:
    """Build backbone `name` and load its weights. The encoder is returned in eval mode on CPU.

    `weights_dir` (else $PROGBENCH_WEIGHTS_DIR) is a folder written by `progbench weights fetch`:
    `pretrained` then reads the local copy only, and a backbone missing from it is an error.
    """
    spec = get_backbone_spec(name)
    source = source_for(spec)
    if weights == RANDOM:
        encoder = source.random(spec, seed)
    elif weights == PRETRAINED:
        encoder = source.load_pretrained(spec, local_weights(spec, weights_dir))
    else:
        path = Path(weights).expanduser()
        if not path.exists():
            raise WeightsError(
                f"--weights {weights!r} is neither 'pretrained', 'random' nor an existing path",
                "Give a checkpoint file or a directory in the library's layout (docs/MODELS.md).",
            )
        encoder = source.load_path(spec, path)
    encoder.eval()
    return LoadedBackbone(encoder, spec, weights, weights_fingerprint(encoder))


def random_encoder(spec: BackboneSpec, seed: int = 0) -> nn.Module:
    """The architecture with seeded random weights; leaves the global RNG state untouched."""
    return source_for(spec).random(spec, seed)


def save_backbone(loaded: LoadedBackbone, out_dir: str | Path) -> Path:
    """Write the encoder's weights in the layout `--weights PATH` reads for its library.

    torchvision: model.safetensors; transformers: save_pretrained (config.json +
    model.safetensors); MedCLIP: model.safetensors with MedCLIP's key names; open_clip:
    open_clip_config.json + open_clip_model.safetensors (image tower under `visual.`).
    Refuses to overwrite an existing directory.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise WeightsError(f"{out_dir} already exists; not overwriting it", "Choose a new folder.")
    with atomic_dir(out_dir) as tmp:
        source_for(loaded.spec).save(loaded, tmp)
    return out_dir
