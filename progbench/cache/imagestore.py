"""The image store: every image of a manifest decoded once into a uint8 Zarr v3 array (N, S, S).

Keyed by the images' content (sha256 of every file, with its id, path and box) and the
preprocessing, so an image edited in place, another manifest or another `--size` makes a new
store and an unchanged one is reused. Built by parallel worker processes through the store
protocol (progbench.cache.store): atomic creation, a `done` mask written after each block of
images, chunk checks on reuse, `complete` last with a fingerprint of the pixels that feature
stores key on. Every image is decoded before a build fails, so one run lists every bad file.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import zarr

from progbench.cache.digests import file_digests
from progbench.cache.paths import image_store_dir
from progbench.cache.store import (
    array_in,
    create_array,
    discard_if_empty,
    lock_for,
    open_complete,
    open_for_build,
    read_checked,
    read_strings,
    repair_missing,
    write_strings,
)
from progbench.config.keys import IDENTITY, identity_of
from progbench.data.images import load_image
from progbench.data.manifest import BOX_COLUMNS, Manifest
from progbench.errors import CacheError, ImageDecodeError, ProgbenchError
from progbench.provenance import fingerprint, library_versions, now_iso
from progbench.workers import worker_pool

IMAGE_FORMAT_VERSION = 2  # 2: checksummed chunks, content-keyed
BLOCK = 64  # images between two writes of the done mask
MAX_LISTED = 20  # bad images named in one error; the count says how many more
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ImageStoreParams:
    """How images are preprocessed: every field is part of the store's key (config.keys)."""

    size: Annotated[int, IDENTITY] = 224
    # crop to the lung box when the manifest has box columns
    crop: Annotated[bool, IDENTITY] = True
    # global histogram equalisation (the reference study's AIforCOVID)
    equalize: Annotated[bool, IDENTITY] = False

    def to_dict(self) -> dict[str, Any]:
        return identity_of(self) | {"format_version": IMAGE_FORMAT_VERSION}


@dataclass(frozen=True)
class BuildResult:
    path: Path
    key: str
    n_images: int
    computed: int  # images decoded by this call; 0 when a complete store was reused
    repaired: int = 0  # rows whose missing chunks were decoded again


class ImageStore:
    """Read access to a complete, intact image store."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.group = open_complete(
            self.path, "images", "image store", "Build it with `progbench cache images`."
        )
        self.attrs: dict[str, Any] = dict(self.group.attrs)
        self.images = array_in(self.group, "images")
        self.image_ids: np.ndarray = read_strings(array_in(self.group, "image_id"))
        self._pos = {iid: i for i, iid in enumerate(self.image_ids)}

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def size(self) -> int:
        return int(self.attrs["size"])

    @property
    def content_fingerprint(self) -> str:
        return str(self.attrs["content_fingerprint"])

    def indices(self, image_ids: list[str] | np.ndarray) -> np.ndarray:
        try:
            return np.array([self._pos[i] for i in image_ids], dtype=np.int64)
        except KeyError as err:
            raise CacheError(
                f"image {err.args[0]!r} is not in image store {self.path}",
                "The manifest changed since the store was built; rebuild with "
                "`progbench cache images`.",
            ) from err

    def read(self, idx: np.ndarray) -> np.ndarray:
        """uint8 (len(idx), S, S) for store rows `idx` (sorted reads are fastest)."""
        idx = np.asarray(idx)
        if len(idx) == 0:
            return np.empty((0, self.size, self.size), dtype=np.uint8)
        if idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
            # A range: one slice read, faster.
            return read_checked(
                self.images, slice(int(idx[0]), int(idx[-1]) + 1), self.path, self.attrs
            )
        order = np.argsort(idx)
        out = np.empty((len(idx), self.size, self.size), dtype=np.uint8)
        sel = (idx[order], slice(None), slice(None))
        try:
            out[order] = self.images.get_orthogonal_selection(sel)
        except (ValueError, RuntimeError, OSError):
            # Name the damaged rows: read them one by one.
            for i in idx[order]:
                read_checked(self.images, slice(int(i), int(i) + 1), self.path, self.attrs)
            raise
        return out


def image_store_key(
    manifest: Manifest, params: ImageStoreParams, cache_dir: str | Path | None = None
) -> str:
    """The images' ids, paths, boxes and content (sha256 of each file), and the preprocessing."""
    cols = ["image_id", "path"] + ([*BOX_COLUMNS] if manifest.has_boxes else [])
    rows = manifest.frame[cols].astype(str).to_numpy().tolist()
    digests = file_digests(manifest.image_paths(), cache_dir)
    return fingerprint({"rows": rows, "content": digests, "params": params.to_dict()})


def _load_one(args: tuple[str, int, Any, bool]) -> np.ndarray | str:
    """The decoded image, or the error message (so a build can name every bad file)."""
    path, size, box, equalize = args
    try:
        return load_image(Path(path), size=size, box=box, equalize=equalize)
    except ProgbenchError as err:
        return err.message + (f" ({err.hint})" if err.hint else "")


def _blocks(todo: np.ndarray, block: int) -> Iterator[np.ndarray]:
    for start in range(0, len(todo), block):
        yield todo[start : start + block]


def _creator(manifest: Manifest, params: ImageStoreParams, key: str) -> Callable[[Path], None]:
    def create(tmp: Path) -> None:
        n, s = len(manifest.frame), params.size
        group = zarr.open_group(tmp, mode="w")
        create_array(group, "images", (n, s, s), (1, s, s), "uint8", 0)
        write_strings(group, "image_id", manifest.frame["image_id"].tolist())
        create_array(group, "done", (n,), (max(n, 1),), bool, False)
        group.attrs.update(
            {
                "kind": "progbench-image-store",
                "key": key,
                "manifest": str(manifest.source),
                **params.to_dict(),
                "n": n,
                "created": now_iso(),
                "versions": library_versions(),
                "complete": False,
            }
        )

    return create


def content_fingerprint(group: zarr.Group) -> str:
    """sha256 over the image ids and pixels, in store order."""
    h = hashlib.sha256()
    images = array_in(group, "images")
    for iid in read_strings(array_in(group, "image_id")):
        h.update(iid.encode() + b"\0")
    for start in range(0, images.shape[0], 256):
        h.update(np.ascontiguousarray(images[start : start + 256]).tobytes())
    return h.hexdigest()[:16]


def build_image_store(
    manifest: Manifest,
    params: ImageStoreParams | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> BuildResult:
    """Decode every image of `manifest` into its store, resuming a partial store; reuse a complete
    one. Bad images are all decoded first, then named together in one ImageDecodeError."""
    params = params or ImageStoreParams()
    key = image_store_key(manifest, params, cache_dir)
    path = image_store_dir(cache_dir) / f"{key}.zarr"
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock_for(path):
        group = open_for_build(path, key, _creator(manifest, params, key))
        repaired = repair_missing(group, "images")
        if group.attrs.get("complete"):
            return BuildResult(path, key, len(manifest.frame), 0)
        done = np.asarray(array_in(group, "done")[:])
        todo = np.flatnonzero(~done)
        n = len(done)
        if progress:
            progress(n - len(todo), n)
        paths = [str(p) for p in manifest.image_paths()]
        boxes = manifest.boxes() if params.crop else [None] * n
        args = [(paths[i], params.size, boxes[i], params.equalize) for i in todo]
        start = time.perf_counter()
        n_workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
        bad = _fill(group, todo, args, n_workers, progress, n - len(todo), n)
        if bad:
            _fail(path, manifest, bad)
        group.attrs.update(
            {
                "content_fingerprint": content_fingerprint(group),
                "build_seconds": round(time.perf_counter() - start, 3),
                "complete": True,
            }
        )
        return BuildResult(path, key, n, len(todo), repaired)


def _fail(path: Path, manifest: Manifest, bad: list[tuple[int, str]]) -> None:
    removed = discard_if_empty(path)
    shown = "\n".join(f"  - {msg}" for _, msg in bad[:MAX_LISTED])
    more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    kept = (
        ""
        if removed
        else " The images that decoded are kept: a rerun after installing a missing decoder "
        "resumes; `progbench cache prune` removes stores a fixed manifest no longer uses."
    )
    raise ImageDecodeError(
        f"{len(bad)} of {len(manifest.frame)} image(s) of {manifest.source} cannot be decoded:\n"
        f"{shown}{more}",
        "Fix or re-export these files (uncompressed DICOM or PNG), or drop their rows from the "
        f"manifest, then run the command again.{kept}",
    )


def _fill(
    group: zarr.Group,
    todo: np.ndarray,
    args: list[tuple[str, int, Any, bool]],
    n_workers: int,
    progress: ProgressFn | None,
    already: int,
    n: int,
) -> list[tuple[int, str]]:
    """Decode and write the rows in `todo`; return (row, error) for every image that failed."""
    images, done_arr = array_in(group, "images"), array_in(group, "done")
    done = np.asarray(done_arr[:])
    bad: list[tuple[int, str]] = []
    pool = worker_pool(n_workers) if n_workers > 1 and len(todo) >= 2 * BLOCK else None
    results = pool.map(_load_one, args, chunksize=4) if pool is not None else map(_load_one, args)
    try:
        for block in _blocks(todo, BLOCK):
            ok = []
            for i in block:
                out = next(results)
                if isinstance(out, str):
                    bad.append((int(i), out))
                else:
                    images[int(i)] = out
                    ok.append(int(i))
            done[ok] = True
            done_arr[:] = done  # after the pixels: a crash in between only re-decodes this block
            already += len(block)
            if progress:
                progress(already, n)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return bad


def find_image_store(
    manifest: Manifest, params: ImageStoreParams | None = None, cache_dir: str | Path | None = None
) -> Path | None:
    """The path of the complete store for `manifest`, or None."""
    params = params or ImageStoreParams()
    path = image_store_dir(cache_dir) / f"{image_store_key(manifest, params, cache_dir)}.zarr"
    if (path / "zarr.json").is_file() and zarr.open_group(path, mode="r").attrs.get("complete"):
        return path
    return None
