"""Checking and exporting stores: `progbench cache verify` and `progbench cache export`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from progbench.atomic import atomic_write_with
from progbench.cache.featurestore import FeatureStore
from progbench.cache.zarr_io import read_strings
from progbench.data.manifest import load_manifest
from progbench.errors import CacheError

EXPORT_FORMATS = ("h5", "npz")


@dataclass
class VerifyReport:
    path: Path
    kind: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(path: Path, manifest: Path | None = None) -> VerifyReport:
    """Find incomplete, truncated or corrupt stores and image ids that no longer match the manifest."""
    report = VerifyReport(path=path, kind="?")
    try:
        group = zarr.open_group(path, mode="r")
        attrs = dict(group.attrs)
    except Exception as err:
        report.problems.append(f"cannot open store: {err}")
        return report
    kind = str(attrs.get("kind", ""))
    report.kind = "features" if "feature" in kind else "images" if "image" in kind else "?"
    data_name = "features" if report.kind == "features" else "images"
    for name in (data_name, "image_id", "done"):
        if name not in group:
            report.problems.append(f"array {name!r} is missing")
    if report.problems:
        return report
    data = group[data_name]
    if not attrs.get("complete"):
        report.problems.append("not complete (interrupted build); rerun the command that made it")
    done = np.asarray(group["done"][:])
    if not done.all():
        report.problems.append(f"{int((~done).sum())} of {len(done)} rows not done")
    # Missing chunk files read back as the fill value, so count them rather than trust a read.
    if data.nchunks_initialized != data.nchunks:
        report.problems.append(
            f"truncated: {data.nchunks - data.nchunks_initialized} of {data.nchunks} chunks of {data_name!r} are missing"
        )
    try:
        step = data.chunks[0] * max(1, 256 // data.chunks[0])
        for start in range(0, data.shape[0], step):
            block = np.asarray(data[start : start + step])
            if report.kind == "features" and not np.isfinite(block).all():
                report.problems.append(
                    f"non-finite features in rows {start}..{start + len(block) - 1}"
                )
                break
    except Exception as err:
        report.problems.append(f"corrupt chunk data in {data_name!r}: {err}")
    ids = read_strings(group["image_id"])
    if len(ids) != data.shape[0]:
        report.problems.append(f"{len(ids)} image ids for {data.shape[0]} rows")
    manifest_path = manifest or (Path(attrs["manifest"]) if attrs.get("manifest") else None)
    if manifest_path is not None:
        if not manifest_path.is_file():
            report.problems.append(f"manifest {manifest_path} no longer exists")
        else:
            expected = load_manifest(manifest_path, check_files=False).frame["image_id"].tolist()
            if list(ids) != expected:
                extra = sorted(set(ids) - set(expected))[:3]
                lost = sorted(set(expected) - set(ids))[:3]
                report.problems.append(
                    f"image ids do not match {manifest_path.name}: "
                    f"{len(ids)} in store vs {len(expected)} in manifest"
                    + (f"; only in store e.g. {extra}" if extra else "")
                    + (f"; only in manifest e.g. {lost}" if lost else "")
                    + ("" if extra or lost else "; same ids, other order")
                )
    return report


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
