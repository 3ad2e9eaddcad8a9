"""The tiny twin of every model family, from the registry (built by the same loader code as
the full-size models)."""

from progbench.config import BackboneSpec
from progbench.models.registry import get_backbone_spec, list_backbones


def _twins() -> list[str]:
    specs: list[BackboneSpec] = [get_backbone_spec(n) for n in list_backbones(include_tiny=True)]
    return [s.name for s in specs if s.tiny]


TWINS = _twins()


# The reference study's backbones (shared/PROTOCOL.md, section 2), in its order: what
# `configs/sweeps/ruffini2025.yaml` lists, whatever $PROGBENCH_MODELS_DIR adds.
STUDY_BACKBONES = [
    "resnet18",
    "resnet50",
    "densenet121",
    "dinov2-s",
    "dinov2-b",
    "dinov2-l",
    "clip-l",
    "medclip-r50",
    "medclip-swin",
    "pubmedclip",
    "biomedclip",
]
