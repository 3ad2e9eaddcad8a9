"""Feature stores: frozen-backbone embeddings of one image set, in Zarr v3, keyed by content.

Layout: `features (N, D)` float32 chunked by `rows_per_chunk` rows, `image_id (N)`, `done (N)`.
Rows are computed and written a whole chunk at a time, so a rerun never has to read a chunk that
a killed process may have left half-written, and the same rows always go through the model in
the same batch (bit-identical features after a resume). `complete` is set last.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from progbench.cache.paths import feature_store_dir, image_store_dir
from progbench.cache.zarr_io import read_strings, write_strings
from progbench.errors import CacheError
from progbench.provenance import fingerprint

FEATURE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FeatureKey:
    """Everything that determines the features. Any change gives a new store."""

    image_store: str  # content fingerprint of the image store
    backbone: str
    weights_fingerprint: str
    transform: dict[str, Any]  # input size, mean, std, crop, image store size
    feature: dict[str, Any]  # layer / pooling / projection, from the backbone spec
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
    dim: int,
    rows_per_chunk: int,
    attrs: dict[str, Any],
) -> zarr.Group:
    n = len(image_ids)
    group = zarr.open_group(path, mode="w")
    group.create_array(
        "features", shape=(n, dim), chunks=(rows_per_chunk, dim), dtype="float32", fill_value=0.0
    )
    write_strings(group, "image_id", image_ids)
    group.create_array("done", shape=(n,), dtype=bool, fill_value=False)
    group.attrs.update(
        {
            "kind": "progbench-feature-store",
            "key": key.key,
            **key.to_dict(),
            "n": n,
            "dim": dim,
            "rows_per_chunk": rows_per_chunk,
            **attrs,
            "complete": False,
        }
    )
    return group


class FeatureStore:
    """A feature store opened for reading."""

    def __init__(self, path: str | Path, require_complete: bool = True) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise CacheError(
                f"no feature store at {self.path}", "Create it with `progbench extract`."
            )
        self.group = zarr.open_group(self.path, mode="r")
        self.attrs: dict[str, Any] = dict(self.group.attrs)
        if require_complete and not self.attrs.get("complete"):
            raise CacheError(
                f"feature store {self.path} is incomplete",
                "Run the same `progbench extract` command again to finish it.",
            )
        self.image_ids = read_strings(self.group["image_id"])

    @property
    def key(self) -> str:
        return str(self.attrs["key"])

    def load(self, image_ids: list[str] | np.ndarray | None = None) -> np.ndarray:
        """All features in RAM as float32 (N, D), in the order of `image_ids` (default: store order)."""
        feats = np.asarray(self.group["features"][:], dtype=np.float32)
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


def find_store(key: str, cache_dir: str | Path | None = None) -> Path:
    """Resolve a full key or a unique prefix to a store path (feature stores, then image stores)."""
    hits = [
        p
        for root in (feature_store_dir(cache_dir), image_store_dir(cache_dir))
        if root.is_dir()
        for p in root.glob(f"{key}*.zarr")
    ]
    if not hits:
        raise CacheError(f"no store with key {key!r}", "List stores with `progbench cache ls`.")
    if len(hits) > 1:
        raise CacheError(
            f"key prefix {key!r} matches {len(hits)} stores", "Give more characters of the key."
        )
    return hits[0]


def store_attrs(path: Path) -> dict[str, Any]:
    """A store's attributes (its provenance), read without opening its arrays."""
    try:
        return dict(zarr.open_group(path, mode="r").attrs)
    except Exception as err:  # zarr raises several kinds for a damaged group
        raise CacheError(
            f"cannot read store {path}: {err}", "Check it with `progbench cache verify`."
        ) from err


def list_stores(cache_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One summary dict per store found under the cache root."""
    out = []
    for kind, root in (
        ("images", image_store_dir(cache_dir)),
        ("features", feature_store_dir(cache_dir)),
    ):
        for p in sorted(root.glob("*.zarr")) if root.is_dir() else []:
            try:
                attrs = dict(zarr.open_group(p, mode="r").attrs)
            except Exception as err:  # a broken store must still be listed
                attrs = {"error": str(err)}
            size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
            out.append(
                {
                    "kind": kind,
                    "key": p.stem,
                    "backbone": attrs.get("backbone", "-"),
                    "n": attrs.get("n"),
                    "dim": attrs.get("dim", attrs.get("size")),
                    "complete": bool(attrs.get("complete")),
                    "created": attrs.get("created"),
                    "mb": round(size / 2**20, 2),
                    "path": str(p),
                    "error": attrs.get("error"),
                }
            )
    return out


def remove_store(path: Path) -> None:
    shutil.rmtree(path)
    lock = Path(str(path) + ".lock")
    if lock.exists():
        lock.unlink()
