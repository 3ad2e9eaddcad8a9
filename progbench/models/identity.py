"""A backbone's identity (spec, weights, their fingerprint, size) without keeping its encoder.

Keys of feature stores and runs need the fingerprint of the weights, and the fingerprint needs
the weights: building a random encoder or reading a checkpoint, then hashing every tensor. A
sweep's worker asks for the same identity over and over (each feature store, then the full-data
and few-shot cells of every task), so this process remembers it, keyed by what the weights come
from: the spec and the seed for random weights; the spec and every file's path, size,
modification time, status-change time and inode for a checkpoint or a local weights folder. Pretrained weights from a
library's own cache are not remembered (their files are the library's to resolve).

`BackboneRef.load()` builds the encoder only when it is needed (rows to extract), and checks that
it still has the remembered fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progbench.config import BackboneSpec
from progbench.errors import WeightsError
from progbench.models.loaders import PRETRAINED, RANDOM, LoadedBackbone, load_backbone
from progbench.models.registry import get_backbone_spec
from progbench.models.weights import local_weights

# (spec, weights, seed, files) -> (fingerprint, encoder parameters); a few hundred bytes each.
_KNOWN: dict[tuple[Any, ...], tuple[str, int]] = {}


@dataclass(frozen=True)
class BackboneRef:
    """What identifies a backbone's features; `built` holds the encoder if this call built it."""

    spec: BackboneSpec
    weights: str
    weights_fingerprint: str
    encoder_params: int
    seed: int = 0
    built: LoadedBackbone | None = field(default=None, compare=False, repr=False)

    def load(self) -> LoadedBackbone:
        """The encoder, with the fingerprint this reference was made with."""
        if self.built is not None:
            return self.built
        loaded = load_backbone(self.spec.name, self.weights, self.seed)
        if loaded.weights_fingerprint != self.weights_fingerprint:
            raise WeightsError(
                f"the weights of {self.spec.name} ({self.weights}) changed while this process "
                f"ran: fingerprint {self.weights_fingerprint}, now {loaded.weights_fingerprint}",
                "Leave weight files alone while a command runs, then run it again.",
            )
        return loaded


def _files(root: Path) -> tuple[tuple[str, int, int, int, int], ...]:
    """Each file's path and status: size, mtime, and the ctime and inode no user can restore
    by hand (the rule of progbench.cache.digests)."""
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return tuple(
        (str(p), (s := p.stat()).st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino) for p in paths
    )


def _memo_key(spec: BackboneSpec, weights: str, seed: int) -> tuple[Any, ...] | None:
    described = spec.model_dump_json()
    if weights == RANDOM:
        return (described, RANDOM, seed)
    if weights == PRETRAINED:
        folder = local_weights(spec)
        return None if folder is None else (described, weights, _files(folder))
    path = Path(weights).expanduser()
    return (described, weights, _files(path)) if path.exists() else None


def backbone_ref(name: str, weights: str = PRETRAINED, seed: int = 0) -> BackboneRef:
    """The identity of backbone `name` with `weights`; built and hashed once per process for
    the same weights (see the module docstring)."""
    spec = get_backbone_spec(name)
    key = _memo_key(spec, weights, seed)
    if key is not None and key in _KNOWN:
        fingerprint, params = _KNOWN[key]
        return BackboneRef(spec, weights, fingerprint, params, seed)
    loaded = load_backbone(name, weights, seed)
    params = sum(p.numel() for p in loaded.encoder.parameters())
    if key is not None:
        _KNOWN[key] = (loaded.weights_fingerprint, params)
    return BackboneRef(spec, weights, loaded.weights_fingerprint, params, seed, built=loaded)
