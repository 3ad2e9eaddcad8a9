"""Build a backbone's encoder architecture (random weights) from its registry spec.

Every encoder maps normalised pixels (B, 3, H, W) to features (B, feature_dim). Full-size
backbones and their tiny twins go through the same builders; only the spec's sizes differ. The
builders live with their library's source in `progbench.models.sources`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from progbench.config import BackboneSpec
from progbench.models.sources import HFEncoder, source_for

__all__ = ["HFEncoder", "build_encoder", "build_weightless", "weightless"]

# What weight initialisation comes down to: torch.nn.init's initialisers (a mode sees them as
# one call, not the fills they make inside) and in-place random fills of a tensor.
_INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
    "sparse_",
)  # fmt: skip
_RANDOM_FILLS = ("normal_", "uniform_", "bernoulli_", "exponential_", "log_normal_", "cauchy_",
                 "geometric_", "random_")  # fmt: skip
_SKIPPED = frozenset(
    [getattr(torch.nn.init, n) for n in _INIT_FUNCTIONS]
    + [getattr(torch.Tensor, n) for n in _RANDOM_FILLS]
)


class _SkipMetaInit(TorchFunctionMode):
    """Initialising a meta tensor returns the tensor unchanged: it holds no values to fill, and
    PyTorch runs its meta `normal_` / `uniform_` as Python decompositions (~2 ms a call,
    seconds for a ViT-L). Shapes, dtypes and every other op are left to PyTorch."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in _SKIPPED:
            # torch.nn.init hands its tensor over by keyword
            tensor = args[0] if args else kwargs.get("tensor")
            if getattr(tensor, "is_meta", False):
                return tensor
        return func(*args, **kwargs)


@contextmanager
def weightless() -> Iterator[None]:
    """Modules built inside are on PyTorch's `meta` device, without initialisation: exact
    shapes and parameter counts, no memory, no values (a forward gives shapes only)."""
    with torch.device("meta"), _SkipMetaInit():
        yield


def build_encoder(spec: BackboneSpec) -> nn.Module:
    """The encoder with freshly initialised weights (seed torch's RNG first for stable weights).

    Builds on the current default device; see `build_weightless` for a model without weights.
    """
    return source_for(spec).build(spec)


def build_weightless(spec: BackboneSpec) -> nn.Module:
    """The encoder's architecture on the meta device (see `weightless`): what describing a
    backbone (parameter counts, module names, output shapes) needs, in a fraction of a second."""
    with weightless():
        return build_encoder(spec)
