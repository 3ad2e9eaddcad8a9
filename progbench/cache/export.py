"""Exporting a feature store for other tools: `progbench cache export KEY --format h5|npz`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from progbench.atomic import atomic_write_with
from progbench.cache.featurestore import FeatureStore
from progbench.errors import CacheError

EXPORT_FORMATS = ("h5", "npz")


def export_store(path: Path, fmt: str, out: Path) -> Path:
    """Write a complete feature store as HDF5 (h5py) or npz, atomically."""
    if fmt not in EXPORT_FORMATS:
        raise CacheError(
            f"unknown export format {fmt!r}", f"Use one of {', '.join(EXPORT_FORMATS)}."
        )
    store = FeatureStore(path)
    feats = store.load()
    ids = np.asarray(store.image_ids, dtype=str)
    meta = json.dumps(store.attrs, sort_keys=True, default=str)

    if fmt == "npz":

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a file handle: np.savez would append .npz to a path
                np.savez(fh, features=feats, image_id=ids, attrs=np.array(meta))

    else:
        import h5py

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as h5:
                h5.create_dataset("features", data=feats)
                h5.create_dataset("image_id", data=ids.astype(object), dtype=h5py.string_dtype())
                h5.attrs["progbench"] = meta

    atomic_write_with(out, write)
    return out
