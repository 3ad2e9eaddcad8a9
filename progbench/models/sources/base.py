"""The interface every weights source implements, and what a load returns.

A source is one library's way (or one release format's way) to build an encoder, load its
weights from the hub, from a local path or from a weights folder, save them in the library's
own layout, and fetch them for a machine without a network.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from progbench.config import BackboneSpec, TokenLayout
from progbench.errors import RegistryError, WeightsError
from progbench.models.checkpoints import StateDict, find_checkpoint


@dataclass
class LoadedBackbone:
    """An encoder with its registry spec and where its weights came from."""

    encoder: nn.Module  # forward(pixel_values (B, 3, H, W), normalised) -> (B, feature_dim)
    spec: BackboneSpec
    weights: str  # "pretrained" | "random" | the path given
    weights_fingerprint: str  # same weights -> same string, however they were named


def require_hub_id(spec: BackboneSpec) -> str:
    if spec.hub_id is None:
        raise WeightsError(
            f"backbone {spec.name!r} has no pretrained weights (no hub_id in its YAML)",
            "Use --weights random, or --weights PATH with a checkpoint.",
        )
    return spec.hub_id


def contiguous(sd: StateDict, prefix: str = "") -> StateDict:
    """Tensors safetensors can write (contiguous, detached), keys prefixed."""
    return {prefix + k: v.detach().contiguous() for k, v in sd.items()}


def save_safetensors(sd: StateDict, file: Path, prefix: str = "") -> None:
    from safetensors.torch import save_file

    save_file(contiguous(sd, prefix), str(file))


class Source(ABC):
    """One way to build and load a backbone; `progbench.models.sources.source_for` picks it."""

    # Checkpoint file names of the source's own folder layout, in order of preference.
    checkpoint_names: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def build(self, spec: BackboneSpec) -> nn.Module:
        """The architecture with fresh weights, on torch's current default device."""

    @abstractmethod
    def from_hub(self, spec: BackboneSpec) -> nn.Module:
        """The library's own pretrained weights: its local cache first, the network second."""

    @abstractmethod
    def load_path(self, spec: BackboneSpec, path: Path) -> nn.Module:
        """Weights from a folder in the source's layout, or from a checkpoint file."""

    @abstractmethod
    def save(self, loaded: LoadedBackbone, out_dir: Path) -> None:
        """Write the encoder's weights into the existing folder `out_dir`, in the layout
        `load_path` reads."""

    @abstractmethod
    def fetch(self, spec: BackboneSpec, to_dir: Path) -> None:
        """Download the pretrained weights into the existing folder `to_dir`, in the layout
        `load_path` reads (needs a network)."""

    @abstractmethod
    def manual_download(self, spec: BackboneSpec) -> str:
        """How to get the weights by hand, for error hints ("download URL ...")."""

    def locate(self, spec: BackboneSpec, folder: Path) -> Path:
        """The checkpoint file `load_path` reads from `folder`; WeightsError if there is none."""
        return find_checkpoint(folder, self.checkpoint_names)

    def load_pretrained(self, spec: BackboneSpec, local_dir: Path | None = None) -> nn.Module:
        """`--weights pretrained`: a local weights folder when given, else the hub."""
        if local_dir is not None:
            return self.load_path(spec, local_dir)
        require_hub_id(spec)
        return self.from_hub(spec)

    def tokens(
        self,
        spec: BackboneSpec,
        encoder: nn.Module,
        pixel_values: torch.Tensor,
        layout: TokenLayout,
    ) -> torch.Tensor:
        """(B, layout.width): the class tokens of the last `layout.blocks` blocks (oldest
        first), then the last block's patch mean, each as the source takes it (see
        docs/MODELS.md, "Feature variants"). `encoder` is the built encoder, adapters included.
        A source without tokens has the single feature only."""
        if layout.slots != 1:
            raise RegistryError(
                f"backbone {spec.name!r}: its {spec.library} source has one feature only, but "
                f"its YAML offers variants {', '.join(v.name for v in layout.offer)}",
                "Drop `variants:` from the backbone's YAML.",
            )
        return encoder(pixel_values)

    def random(self, spec: BackboneSpec, seed: int) -> nn.Module:
        """The architecture with seeded random weights; leaves the global RNG state untouched."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.build(spec)
