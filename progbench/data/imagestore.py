"""The image store: every image of a manifest decoded once into a uint8 Zarr v3 array (N, S, S).

Keyed by the manifest fingerprint and the preprocessing, so a changed manifest or `--size` makes a
new store and an unchanged one is reused. Built by parallel worker processes; a `done` mask is
written after each block of images, so an interrupted build resumes where it stopped. `complete`
is set last, together with a fingerprint of the pixel content that feature stores key on.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from filelock import FileLock

from progbench.cache.paths import image_store_dir
from progbench.cache.zarr_io import read_strings, write_strings
from progbench.data.images import load_image
from progbench.data.manifest import Manifest
from progbench.errors import CacheError
from progbench.provenance import fingerprint, library_versions, now_iso

IMAGE_FORMAT_VERSION = 1
BLOCK = 64  # images between two writes of the done mask
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ImageStoreParams:
    size: int = 224
    crop: bool = True  # crop to the lung box when the manifest has box columns

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "crop": self.crop, "format_version": IMAGE_FORMAT_VERSION}


@dataclass(frozen=True)
class BuildResult:
    path: Path
    key: str
    n_images: int
    computed: int  # images decoded by this call; 0 when a complete store was reused


class ImageStore:
    """Read access to a complete image store."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise CacheError(
                f"no image store at {self.path}", "Build it with `progbench cache images`."
            )
        self.group = zarr.open_group(self.path, mode="r")
        self.attrs: dict[str, Any] = dict(self.group.attrs)
        if not self.attrs.get("complete"):
            raise CacheError(
                f"image store {self.path} is incomplete",
                "Run `progbench cache images` again to finish it.",
            )
        self.images = self.group["images"]
        self.image_ids: np.ndarray = read_strings(self.group["image_id"])
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
                "The manifest changed since the store was built; rebuild with `progbench cache images`.",
            ) from err

    def read(self, idx: np.ndarray) -> np.ndarray:
        """uint8 (len(idx), S, S) for store rows `idx` (sorted reads are fastest)."""
        idx = np.asarray(idx)
        if len(idx) == 0:
            return np.empty((0, self.size, self.size), dtype=np.uint8)
        if idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
            return self.images[int(idx[0]) : int(idx[-1]) + 1]  # a range: one slice read, faster
        order = np.argsort(idx)
        out = np.empty((len(idx), self.size, self.size), dtype=np.uint8)
        out[order] = self.images.get_orthogonal_selection((idx[order], slice(None), slice(None)))
        return out


def image_store_key(manifest: Manifest, params: ImageStoreParams) -> str:
    return fingerprint({"manifest": manifest.fingerprint(), "params": params.to_dict()})


def _load_one(args: tuple[str, int, tuple[float, float, float, float] | None]) -> np.ndarray:
    path, size, box = args
    return load_image(Path(path), size=size, box=box)


def _blocks(todo: np.ndarray, block: int) -> Iterator[np.ndarray]:
    for start in range(0, len(todo), block):
        yield todo[start : start + block]


def _create(path: Path, manifest: Manifest, params: ImageStoreParams, key: str) -> zarr.Group:
    n, s = len(manifest.frame), params.size
    group = zarr.open_group(path, mode="w")
    group.create_array("images", shape=(n, s, s), chunks=(1, s, s), dtype="uint8", fill_value=0)
    write_strings(group, "image_id", manifest.frame["image_id"].tolist())
    group.create_array("done", shape=(n,), dtype=bool, fill_value=False)
    group.attrs.update(
        {
            "kind": "progbench-image-store",
            "key": key,
            "manifest": str(manifest.source),
            "manifest_fingerprint": manifest.fingerprint(),
            **params.to_dict(),
            "n": n,
            "created": now_iso(),
            "versions": library_versions(),
            "complete": False,
        }
    )
    return group


def content_fingerprint(group: zarr.Group) -> str:
    """sha256 over the image ids and pixels, in store order."""
    h = hashlib.sha256()
    images = group["images"]
    for iid in read_strings(group["image_id"]):
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
    """Decode every image of `manifest` into its store, resuming a partial store; reuse a complete one."""
    params = params or ImageStoreParams()
    key = image_store_key(manifest, params)
    path = image_store_dir(cache_dir) / f"{key}.zarr"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / "zarr.json").is_file():
            group = zarr.open_group(path, mode="r+")
            if group.attrs.get("key") != key:
                raise CacheError(
                    f"store {path} has key {group.attrs.get('key')!r}, expected {key!r}"
                )
            if group.attrs.get("complete"):
                return BuildResult(path, key, len(manifest.frame), 0)
        else:
            group = _create(path, manifest, params, key)
        done = np.asarray(group["done"][:])
        todo = np.flatnonzero(~done)
        n = len(done)
        if progress:
            progress(n - len(todo), n)
        paths = [str(p) for p in manifest.image_paths()]
        boxes = manifest.boxes() if params.crop else [None] * n
        args = [(paths[i], params.size, boxes[i]) for i in todo]
        start = time.perf_counter()
        n_workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
        _fill(group, todo, args, n_workers, progress, n - len(todo), n)
        group.attrs.update(
            {
                "content_fingerprint": content_fingerprint(group),
                "build_seconds": round(time.perf_counter() - start, 3),
                "complete": True,
            }
        )
        return BuildResult(path, key, n, len(todo))


def _fill(
    group: zarr.Group,
    todo: np.ndarray,
    args: list[tuple[str, int, Any]],
    n_workers: int,
    progress: ProgressFn | None,
    already: int,
    n: int,
) -> None:
    images, done_arr = group["images"], group["done"]
    done = np.asarray(done_arr[:])
    pool = None
    if n_workers > 1 and len(todo) >= 2 * BLOCK:
        # forkserver: safe after torch or zarr threads have started in the parent.
        pool = ProcessPoolExecutor(n_workers, mp_context=get_context("forkserver"))
        results: Iterator[np.ndarray] = pool.map(_load_one, args, chunksize=4)
    else:
        results = map(_load_one, args)
    try:
        for block in _blocks(todo, BLOCK):
            for i in block:
                images[int(i)] = next(results)
            done[block] = True
            done_arr[:] = done  # after the pixels: a crash in between only re-decodes this block
            already += len(block)
            if progress:
                progress(already, n)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def find_image_store(
    manifest: Manifest, params: ImageStoreParams | None = None, cache_dir: str | Path | None = None
) -> Path | None:
    """The path of the complete store for `manifest`, or None."""
    params = params or ImageStoreParams()
    path = image_store_dir(cache_dir) / f"{image_store_key(manifest, params)}.zarr"
    if (path / "zarr.json").is_file() and zarr.open_group(path, mode="r").attrs.get("complete"):
        return path
    return None
