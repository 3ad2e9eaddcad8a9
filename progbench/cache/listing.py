"""Finding, listing, removing and pruning stores under a cache root (`progbench cache ls|rm|prune`).

A store is *incomplete* when its build never finished, and *orphaned* when nothing can use it
any more: an image store whose manifest file is gone or whose key no longer matches that
manifest's current content, or a feature store whose image store is gone. `prune` removes both
kinds, except stores being built right now (their lock is held).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr
from filelock import Timeout

from progbench.cache.paths import feature_store_dir, image_store_dir
from progbench.cache.store import lock_for
from progbench.config.variants import TokenLayout
from progbench.errors import CacheError, ConfigError, ProgbenchError
from progbench.locking import holder_file

KINDS = ("images", "features")


def _roots(cache_dir: str | Path | None) -> dict[str, Path]:
    return {"images": image_store_dir(cache_dir), "features": feature_store_dir(cache_dir)}


def store_paths(cache_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """(kind, path) of every store, image stores first, each kind sorted by key."""
    return [
        (kind, p)
        for kind, root in _roots(cache_dir).items()
        if root.is_dir()
        for p in sorted(root.glob("*.zarr"))
    ]


def find_store(key: str, cache_dir: str | Path | None = None) -> Path:
    """Resolve a full key or a unique prefix to a store path."""
    hits = [p for _, p in store_paths(cache_dir) if p.stem.startswith(key)]
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


def _size_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 2)


def _dims(attrs: dict[str, Any]) -> str | None:
    """What the table shows: an image store's side, or a feature store's dimension per variant
    (`cls1 384, ..., cls4+avg 1920`, not the row width that holds them all)."""
    if "dim" not in attrs:
        size = attrs.get("size")
        return None if size is None else str(size)
    try:
        return TokenLayout.from_dict(attrs.get("layout"), int(attrs["dim"])).describe()
    except (KeyError, TypeError, ValueError, ConfigError):
        return str(attrs["dim"])


def list_stores(cache_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One summary dict per store found under the cache root."""
    out = []
    for kind, p in store_paths(cache_dir):
        try:
            attrs = store_attrs(p)
        except CacheError as err:  # a broken store must still be listed
            attrs = {"error": err.message}
        out.append(
            {
                "kind": kind,
                "key": p.stem,
                "backbone": attrs.get("backbone", "-"),
                "n": attrs.get("n"),
                "dim": attrs.get("dim", attrs.get("size")),  # a feature row's full width
                "dims": _dims(attrs),
                "complete": bool(attrs.get("complete")),
                "created": attrs.get("created"),
                "manifest": attrs.get("manifest"),
                "mb": _size_mb(p),
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
    holder_file(lock).unlink(missing_ok=True)


@dataclass(frozen=True)
class PruneCandidate:
    kind: str
    path: Path
    reason: str
    mb: float


def _being_built(path: Path) -> bool:
    lock = lock_for(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def _image_store_orphaned(
    path: Path, attrs: dict[str, Any], cache_dir: str | Path | None
) -> str | None:
    from progbench.cache.imagestore import ImageStoreParams, image_store_key
    from progbench.data.manifest import load_manifest

    manifest = attrs.get("manifest")
    if not manifest or not Path(manifest).is_file():
        return f"its manifest {manifest} no longer exists"
    try:
        current = load_manifest(manifest)
        params = ImageStoreParams(
            int(attrs.get("size", 224)), bool(attrs.get("crop", True)), bool(attrs.get("equalize"))
        )
        key = image_store_key(current, params, cache_dir)
    except ProgbenchError as err:
        return f"its manifest {manifest} no longer loads ({err.message.splitlines()[0]})"
    return None if key == path.stem else f"its manifest {manifest} or its images changed since"


def prune_candidates(cache_dir: str | Path | None = None) -> list[PruneCandidate]:
    """Incomplete and orphaned stores (see the module docstring), not being built now."""
    out = []
    image_stores = {p.stem: p for kind, p in store_paths(cache_dir) if kind == "images"}
    for kind, path in store_paths(cache_dir):
        if _being_built(path):
            continue
        try:
            attrs = store_attrs(path)
        except CacheError:
            out.append(PruneCandidate(kind, path, "unreadable", _size_mb(path)))
            continue
        reason = None if attrs.get("complete") else "incomplete (its build never finished)"
        if reason is None and kind == "images":
            reason = _image_store_orphaned(path, attrs, cache_dir)
        if reason is None and kind == "features":
            source = Path(str(attrs.get("image_store_path", ""))).stem
            if source not in image_stores:
                reason = f"its image store {source or '?'} is gone"
        if reason is not None:
            out.append(PruneCandidate(kind, path, reason, _size_mb(path)))
    return out


def prune(cache_dir: str | Path | None = None, dry_run: bool = False) -> list[PruneCandidate]:
    found = prune_candidates(cache_dir)
    if not dry_run:
        for c in found:
            remove_store(c.path)
    return found


def stores_of_manifest(manifest: Path, cache_dir: str | Path | None = None) -> list[Path]:
    """The stores made from `manifest`: its image stores and the feature stores built on them."""
    target = str(Path(manifest).resolve())
    paths = store_paths(cache_dir)
    images = {
        p.stem
        for kind, p in paths
        if kind == "images" and str(store_attrs(p).get("manifest")) == target
    }
    feats = [
        p
        for kind, p in paths
        if kind == "features"
        and (
            Path(str(store_attrs(p).get("image_store_path", ""))).stem in images
            or str(store_attrs(p).get("manifest")) == target
        )
    ]
    return [p for kind, p in paths if kind == "images" and p.stem in images] + feats
