"""Checking and repairing stores: `progbench cache verify [KEY] [--manifest M] [--repair]`.

Verification opens every chunk of a store's data (each carries a crc32c checksum), and checks
the `complete` flag, the `done` mask, missing chunk files, finite features and, given a
manifest, its image ids. Repair deletes the damaged and missing chunks, marks their rows not
done, and has those rows rebuilt from the inputs its attrs record (progbench.extract.rebuild).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from progbench.cache.store import (
    array_in,
    bad_chunks,
    chunk_folder,
    open_writable,
    read_strings,
    rebuild_command,
)
from progbench.data.manifest import load_manifest


@dataclass
class VerifyReport:
    path: Path
    kind: str
    problems: list[str] = field(default_factory=list)
    bad_chunks: list[int] = field(default_factory=list)  # chunk indices along the rows
    repaired: int | None = None  # rows recomputed by --repair

    @property
    def ok(self) -> bool:
        return not self.problems


def _data_name(kind: str) -> str:
    return "features" if kind == "features" else "images"


def _scan_chunks(report: VerifyReport, data: zarr.Array) -> None:
    """Read every chunk (store.bad_chunks, the check extract makes before reuse): missing ones,
    ones failing their checksum, non-finite features."""

    def finite(rows: slice, block: np.ndarray) -> None:
        if report.kind == "features" and not np.isfinite(block).all():
            report.problems.append(f"non-finite features in rows {rows.start}..{rows.stop - 1}")

    missing, corrupt = bad_chunks(data, inspect=finite)
    n = data.cdata_shape[0]
    if missing:
        report.problems.append(
            f"truncated: {len(missing)} of {n} chunks of {data.path!r} are missing "
            f"(chunks {_first(missing)}; Zarr would read them as zeros)"
        )
    if corrupt:
        report.problems.append(
            f"corrupt: {len(corrupt)} of {n} chunks of {data.path!r} fail their checksum or "
            f"cannot be decoded (chunks {_first(corrupt)})"
        )
    report.bad_chunks = sorted(missing + corrupt)


def _first(chunks: list[int]) -> str:
    return ", ".join(map(str, chunks[:10])) + (" ..." if len(chunks) > 10 else "")


def _check_ids(report: VerifyReport, ids: np.ndarray, manifest: Path) -> None:
    if not manifest.is_file():
        report.problems.append(f"manifest {manifest} no longer exists")
        return
    expected = load_manifest(manifest, check_files=False).frame["image_id"].tolist()
    if list(ids) == expected:
        return
    extra = sorted(set(ids) - set(expected))[:3]
    lost = sorted(set(expected) - set(ids))[:3]
    report.problems.append(
        f"image ids do not match {manifest.name}: {len(ids)} in store vs {len(expected)} in "
        "manifest"
        + (f"; only in store e.g. {extra}" if extra else "")
        + (f"; only in manifest e.g. {lost}" if lost else "")
        + ("" if extra or lost else "; same ids, other order")
    )


def verify_store(path: Path, manifest: Path | None = None) -> VerifyReport:
    """Find incomplete, damaged or truncated stores and image ids that no longer match."""
    report = VerifyReport(path=path, kind="?")
    try:
        group = zarr.open_group(path, mode="r")
        attrs = dict(group.attrs)
    except Exception as err:
        report.problems.append(f"cannot open store: {err}")
        return report
    kind = str(attrs.get("kind", ""))
    report.kind = "features" if "feature" in kind else "images" if "image" in kind else "?"
    data_name = _data_name(report.kind)
    missing = [n for n in (data_name, "image_id", "done") if n not in group]
    if missing:
        report.problems.append(f"array(s) {', '.join(missing)} missing")
        return report
    if not attrs.get("complete"):
        report.problems.append(f"not complete (interrupted build); rerun: {rebuild_command(attrs)}")
    done = np.asarray(array_in(group, "done")[:])
    if not done.all():
        report.problems.append(f"{int((~done).sum())} of {len(done)} rows not done")
    data = array_in(group, data_name)
    _scan_chunks(report, data)
    ids = read_strings(array_in(group, "image_id"))
    if len(ids) != data.shape[0]:
        report.problems.append(f"{len(ids)} image ids for {data.shape[0]} rows")
    manifest_path = manifest or (Path(str(attrs["manifest"])) if attrs.get("manifest") else None)
    if manifest_path is not None:
        _check_ids(report, ids, manifest_path)
    return report


Rebuild = Callable[[Path, dict[str, Any]], None]


def repair_store(path: Path, report: VerifyReport, rebuild: Rebuild) -> VerifyReport:
    """Delete the bad chunks of `report`, mark their rows not done, and rebuild them with
    `rebuild(path, attrs)` (progbench.extract.rebuild.rebuild_store)."""
    group = open_writable(path)
    attrs = dict(group.attrs)
    data = array_in(group, _data_name(report.kind))
    step = data.chunks[0]
    done = np.asarray(array_in(group, "done")[:])
    for c in report.bad_chunks:
        root = chunk_folder(data) / str(c)
        if root.exists():
            shutil.rmtree(root) if root.is_dir() else root.unlink()
        done[c * step : (c + 1) * step] = False
    array_in(group, "done")[:] = done
    group.attrs["complete"] = False
    repaired = int((~done).sum())
    rebuild(path, attrs)
    after = verify_store(path)
    after.repaired = repaired
    return after
