"""Feature stores: frozen-backbone embeddings of one image set, in Zarr v3, keyed by content.

Built through the store protocol (progbench.cache.store) by progbench.extract.

Layout: `features (N, W)` float32 chunked by `rows_per_chunk` rows, `image_id (N)`, `done (N)`.
A row holds every token the backbone's feature variants need (attrs `layout`,
progbench.config.TokenLayout): the class tokens of its last B blocks, then the last block's patch
mean, each D wide (W = D for a backbone with one feature). `load_variant` takes one variant's
columns. Rows are computed and written a whole chunk at a time, so a rerun never has to read a chunk that
a killed process may have left half-written, and the same rows always go through the model in
the same batch (bit-identical features after a resume). `complete` is set last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from progbench.cache.store import (
    array_in,
    create_array,
    open_complete,
    read_checked,
    read_strings,
    write_strings,
)
from progbench.config import TokenLayout, Variant
from progbench.errors import CacheError
from progbench.provenance import fingerprint

FEATURE_FORMAT_VERSION = 3  # 2: checksummed chunks; 3: token layout (feature variants)


@dataclass(frozen=True)
class FeatureKey:
    """Everything that determines the features. Any change gives a new store."""

    image_store: str  # content fingerprint of the image store
    backbone: str
    weights_fingerprint: str
    transform: dict[str, Any]  # input size, mean, std, crop, image store size
    feature: dict[str, Any]  # layer / pooling / projection and token layout, from the spec
    dtype: str
    format_version: int = FEATURE_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_store": self.image_store,
            "backbone": self.backbone,
            "weights_fingerprint": self.weights_fingerprint,
            "transform": self.transform,
            "feature": self.feature,
            "dtype": self.dtype,
            "format_version": self.format_version,
        }

    @property
    def key(self) -> str:
        return fingerprint(self.to_dict())


def create_store(
    path: Path,
    key: FeatureKey,
    image_ids: list[str],
    layout: TokenLayout | int,
    rows_per_chunk: int,
    attrs: dict[str, Any],
) -> zarr.Group:
    """A new, empty store; `layout` an int: one feature of that dimension."""
    layout = TokenLayout.single(layout) if isinstance(layout, int) else layout
    n, dim = len(image_ids), layout.width
    group = zarr.open_group(path, mode="w")
    create_array(group, "features", (n, dim), (rows_per_chunk, dim), "float32", 0.0)
    write_strings(group, "image_id", image_ids)
    create_array(group, "done", (n,), (max(n, 1),), bool, False)
    group.attrs.update(
        {
            "kind": "progbench-feature-store",
            "key": key.key,
            **key.to_dict(),
            "n": n,
            "dim": dim,
            "layout": layout.to_dict(),
            "rows_per_chunk": rows_per_chunk,
            **attrs,
            "complete": False,
        }
    )
    return group


class FeatureStore:
    """A feature store opened for reading."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.group = open_complete(
            self.path, "features", "feature store", "Create it with `progbench extract`."
        )
        self.attrs: dict[str, Any] = dict(self.group.attrs)
        self.image_ids = read_strings(array_in(self.group, "image_id"))

    @property
    def key(self) -> str:
        return str(self.attrs["key"])

    @property
    def layout(self) -> TokenLayout:
        return TokenLayout.from_dict(self.attrs.get("layout"), int(self.attrs["dim"]))

    def load_variant(self, variant: Variant, image_ids: list[str] | None = None) -> np.ndarray:
        """One feature variant's columns (N, its dim), in the order of `image_ids`."""
        return self.layout.select(self.load(image_ids), variant)

    def load(self, image_ids: list[str] | np.ndarray | None = None) -> np.ndarray:
        """Every column in RAM as float32 (N, W), in the order of `image_ids` (default: store order)."""
        raw = read_checked(array_in(self.group, "features"), slice(None), self.path, self.attrs)
        feats = raw.astype(np.float32, copy=False)
        if image_ids is None:
            return feats
        pos = {iid: i for i, iid in enumerate(self.image_ids)}
        missing = [i for i in image_ids if i not in pos]
        if missing:
            raise CacheError(
                f"{len(missing)} image(s) are not in feature store {self.path}, e.g. {missing[:3]}",
                "The manifest changed since extraction; run `progbench extract` again.",
            )
        return feats[[pos[i] for i in image_ids]]
