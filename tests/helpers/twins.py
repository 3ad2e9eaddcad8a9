"""The tiny twin of every model family, from the registry (built by the same loader code as
the full-size models)."""

from progbench.config import BackboneSpec
from progbench.models.registry import get_backbone_spec, list_backbones


def _twins() -> list[str]:
    specs: list[BackboneSpec] = [get_backbone_spec(n) for n in list_backbones(include_tiny=True)]
    return [s.name for s in specs if s.tiny]


TWINS = _twins()
