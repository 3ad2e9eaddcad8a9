"""Rebuilding a damaged store from the inputs its attributes record (`cache verify --repair`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from progbench.cache.store import rebuild_command
from progbench.data.manifest import load_manifest
from progbench.errors import CacheError, ProgbenchError


def rebuild_store(path: Path, attrs: dict[str, Any], cache_dir: Path | None = None) -> None:
    """Finish the store with the command that made it (its attrs record the inputs)."""
    manifest_path = attrs.get("manifest")
    hint = f"Rebuild it by hand: {rebuild_command(attrs)}"
    if not manifest_path or not Path(manifest_path).is_file():
        raise CacheError(f"cannot repair {path}: its manifest {manifest_path} is gone", hint)
    manifest = load_manifest(manifest_path)
    root = cache_dir if cache_dir is not None else path.parent.parent
    try:
        if "feature" in str(attrs.get("kind")):
            from progbench.cache.imagestore import ImageStoreParams
            from progbench.extract.features import extract_features

            transform = attrs.get("transform") or {}
            dtype = str(attrs.get("dtype", "fp32")).replace("-weights", "")
            params = ImageStoreParams(
                int(transform.get("store_size", 224)), bool(transform.get("crop", True))
            )
            made = extract_features(
                manifest, str(attrs["backbone"]), str(attrs["weights"]),
                batch_size=int(attrs["rows_per_chunk"]), dtype=dtype, cache_dir=root, image_params=params,
            ).path  # fmt: skip
        else:
            from progbench.cache.imagestore import ImageStoreParams, build_image_store

            params = ImageStoreParams(
                int(attrs["size"]), bool(attrs.get("crop", True)), bool(attrs.get("equalize"))
            )
            made = build_image_store(manifest, params, root).path
    except ProgbenchError as err:
        raise CacheError(f"cannot repair {path}: {err.message}", hint) from err
    if made != path:
        raise CacheError(
            f"cannot repair {path}: its inputs changed (they now make store {made.stem})",
            "Remove the old store with `progbench cache rm` or `progbench cache prune`.",
        )
