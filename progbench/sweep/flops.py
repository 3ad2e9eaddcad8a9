"""Forward FLOPs per image of a backbone, for cost projections without a device.

The full-size backbones carry the figure in their YAML (`forward_gflops`, checked against a
fresh count by a test); a backbone without one (a tiny twin, a user's own YAML) is counted on
PyTorch's meta device with `torch.utils.flop_counter.FlopCounterMode`: exact shapes, no
memory, no weights. CNNs at another input side scale with its square.
"""

from __future__ import annotations

from functools import lru_cache

from progbench.config import BackboneSpec
from progbench.models.registry import get_backbone_spec


def count_forward_gflops(spec: BackboneSpec) -> float:
    """One forward at the backbone's input size, batch 1, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from progbench.models.encoders import build_weightless

    encoder = build_weightless(spec).eval()  # BatchNorm at batch 1 needs eval mode
    x = torch.empty(1, 3, spec.input_size, spec.input_size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        encoder(x)
    return counter.get_total_flops() / 1e9


@lru_cache(maxsize=64)
def forward_gflops(backbone: str, input_size: int | None = None) -> float:
    spec = get_backbone_spec(backbone)
    base = spec.forward_gflops if spec.forward_gflops is not None else count_forward_gflops(spec)
    if input_size is None or input_size == spec.input_size:
        return base
    return base * (input_size / spec.input_size) ** 2
