"""Stage one: run a frozen backbone over an image store and write a feature store.

Resumable chunk by chunk, locked against a second process extracting the same key, and keyed so
that identical inputs reuse the store and any change (images, weights, transform, feature
definition and token layout, dtype, format) makes a new one. One store serves every feature
variant the backbone offers: each row holds the tokens they need (progbench.config.TokenLayout),
taken by the backbone's source (progbench.models.sources.encoder_tokens).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progbench.accel import Accel, prepare_model, resolve_accel, to_input
from progbench.cache.featurestore import FeatureKey, create_store
from progbench.cache.imagestore import ImageStore, ImageStoreParams, build_image_store
from progbench.cache.loader import PrefetchLoader
from progbench.cache.paths import feature_store_dir
from progbench.cache.store import lock_for, open_for_build, repair_damaged
from progbench.config import BackboneSpec, TokenLayout
from progbench.data.manifest import Manifest
from progbench.errors import CacheError
from progbench.models.identity import BackboneRef, backbone_ref
from progbench.models.loaders import LoadedBackbone
from progbench.models.sources import encoder_tokens
from progbench.provenance import git_sha, host_info, library_versions, now_iso

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ExtractResult:
    path: Path
    key: str
    n_images: int
    computed: int  # rows computed by this call (0 = reused a complete store)
    seconds: float
    images_per_s: float | None
    repaired: int = 0  # rows found done whose chunks were missing or damaged (recomputed)
    dims: str = ""  # the feature dimension per variant (TokenLayout.describe)
    # The key progbench up to babab05 gave these features (legacy_feature_key), when not `key`:
    # runs recorded on it are runs on these features (LP runs accept it, runs.spec.ALIASES).
    legacy_key: str | None = None


def feature_key(
    store: ImageStore, loaded: LoadedBackbone | BackboneRef, accel: Accel
) -> FeatureKey:
    """Derived from the backbone's declarations (progbench.config.keys): its `feature` fields
    (the feature definition), `transform` fields and token layout; never its descriptions."""
    spec = loaded.spec
    return FeatureKey(
        image_store=store.content_fingerprint,
        backbone=spec.name,
        weights_fingerprint=loaded.weights_fingerprint,
        transform=spec.transform()
        | {"crop": bool(store.attrs.get("crop")), "store_size": store.size},
        feature=spec.feature_definition() | {"layout": token_layout(spec).to_dict()},
        dtype=accel.dtype if not accel.cast_weights else "bf16-weights",
    )


def legacy_feature_key(key: FeatureKey, spec: BackboneSpec) -> FeatureKey:
    """The key progbench up to commit babab05 gave the same store: its feature definition held
    the feature block whole, its descriptive `note` included. A complete or partial store found
    under it (and none under `key`) is used as it is: same inputs, same features."""
    return dataclasses.replace(
        key, feature=key.feature | {"feature": spec.feature.model_dump(mode="json")}
    )


def store_for(
    cache_dir: str | Path | None, key: FeatureKey, spec: BackboneSpec
) -> tuple[Path, FeatureKey]:
    """Where the store of `key` is: its own path, or the path of its legacy key when only a
    store made by an older progbench is there."""
    root = feature_store_dir(cache_dir)
    path = root / f"{key.key}.zarr"
    if not (path / "zarr.json").is_file():
        old = legacy_feature_key(key, spec)
        old_path = root / f"{old.key}.zarr"
        if (old_path / "zarr.json").is_file():
            return old_path, old
    return path, key


def token_layout(spec: BackboneSpec) -> TokenLayout:
    """What a store row of this backbone holds: every token its offered variants need."""
    return TokenLayout.of(spec.variants, spec.feature_dim)


@torch.inference_mode()
def encode_tokens(
    loaded: LoadedBackbone, accel: Accel, batch: torch.Tensor, layout: TokenLayout
) -> np.ndarray:
    """uint8 (B, S, S) -> float32 store rows (B, layout.width); the one forward extract, parity
    and predict use. A single-feature layout is the encoder's own forward."""
    spec = loaded.spec
    x = to_input(batch, spec.input_size, spec.mean, spec.std, accel)
    with accel.autocast():
        f = encoder_tokens(spec, loaded.encoder, x, layout)
    # Under autocast, some encoders end in bf16 and some in fp32: store float32 always.
    return f.float().cpu().numpy()


def encode(loaded: LoadedBackbone, accel: Accel, batch: torch.Tensor) -> np.ndarray:
    """uint8 (B, S, S) -> the backbone's single feature (variant cls1), float32 (B, D)."""
    return encode_tokens(loaded, accel, batch, TokenLayout.single(loaded.spec.feature_dim))


def extract_features(
    manifest: Manifest,
    backbone: str,
    weights: str = "pretrained",
    batch_size: int = 64,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: str | Path | None = None,
    image_params: ImageStoreParams | None = None,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    loaded: LoadedBackbone | BackboneRef | None = None,
) -> ExtractResult:
    """Features of every image of `manifest`, computing only rows that are not done yet. The
    encoder is built only when rows are missing (`loaded` may be a BackboneRef)."""
    if batch_size < 1:
        raise CacheError(f"--batch-size must be positive, got {batch_size}")
    built = build_image_store(manifest, image_params, cache_dir, workers)
    store = ImageStore(built.path)
    loaded = loaded or backbone_ref(backbone, weights)
    spec = loaded.spec
    accel = resolve_accel(device, dtype, spec.is_cnn, spec.bf16_cast_weights)
    new = feature_key(store, loaded, accel)
    path, key = store_for(cache_dir, new, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock_for(path):
        res = _extract_locked(
            path, key, store, loaded, accel, batch_size, built.path, manifest, progress
        )
    legacy = legacy_feature_key(new, spec).key
    return dataclasses.replace(res, legacy_key=legacy if legacy != res.key else None)


def _extract_locked(
    path: Path,
    key: FeatureKey,
    store: ImageStore,
    loaded: LoadedBackbone | BackboneRef,
    accel: Accel,
    batch_size: int,
    image_store_path: Path,
    manifest: Manifest,
    progress: ProgressFn | None,
) -> ExtractResult:
    n = len(store)
    layout = token_layout(loaded.spec)

    def create(tmp: Path) -> None:
        attrs: dict[str, Any] = {
            "weights": loaded.weights,
            "manifest": str(manifest.source),
            "image_store_path": str(image_store_path),
            "versions": library_versions(),
            "git_sha": git_sha(),
            **host_info(),
            "created": now_iso(),
        }
        create_store(tmp, key, list(store.image_ids), layout, batch_size, attrs)

    group = open_for_build(path, key.key, create)
    # The reuse check `train` and `cache verify` make: every done chunk on disk and readable.
    repaired = repair_damaged(group, "features")
    if group.attrs.get("complete"):
        return ExtractResult(path, key.key, n, 0, 0.0, None, dims=layout.describe())
    rows_per_chunk = int(group.attrs["rows_per_chunk"])  # a resume keeps the original batches
    done = np.asarray(group["done"][:])
    chunks = [np.arange(s, min(s + rows_per_chunk, n)) for s in range(0, n, rows_per_chunk)]
    todo = [c for c in chunks if not done[c].all()]
    features, done_arr = group["features"], group["done"]
    if isinstance(loaded, BackboneRef):
        loaded = loaded.load()
    model = prepare_model(loaded.encoder.eval(), accel)
    loaded = LoadedBackbone(model, loaded.spec, loaded.weights, loaded.weights_fingerprint)
    if progress:
        progress(int(done.sum()), n)
    start = time.perf_counter()
    computed = 0
    for rows, batch in PrefetchLoader(store, todo, pin_memory=accel.pin_memory):
        feats = encode_tokens(loaded, accel, batch, layout)
        if feats.shape != (len(rows), layout.width):
            raise CacheError(
                f"{loaded.spec.name} returned features of shape {feats.shape}, "
                f"expected ({len(rows)}, {layout.width}: {layout.slots} token(s) of "
                f"{layout.token_dim})",
                "Fix feature_dim in the backbone's YAML file.",
            )
        features[rows[0] : rows[-1] + 1] = feats  # one whole chunk: no read-modify-write
        done[rows] = True
        done_arr[:] = done  # after the features: a kill in between only recomputes this chunk
        computed += len(rows)
        if progress:
            progress(int(done.sum()), n)
    seconds = time.perf_counter() - start
    ips = computed / seconds if seconds > 0 and computed else None
    group.attrs.update(
        {
            "device": accel.describe(),
            "seconds": round(seconds, 3),
            "images_per_s": None if ips is None else round(ips, 2),
            "finished": now_iso(),
            "complete": True,
        }
    )
    return ExtractResult(
        path, key.key, n, computed, seconds, ips, repaired=repaired, dims=layout.describe()
    )


def stream_features(
    store: ImageStore,
    loaded: LoadedBackbone,
    accel: Accel,
    image_ids: list[str],
    batch_size: int = 32,
    layout: TokenLayout | None = None,
) -> np.ndarray:
    """Store rows computed on the fly, without a feature store (the cache parity test); the
    single feature unless a `layout` is given."""
    layout = layout or TokenLayout.single(loaded.spec.feature_dim)
    rows = store.indices(image_ids)
    model = prepare_model(loaded.encoder.eval(), accel)
    loaded = LoadedBackbone(model, loaded.spec, loaded.weights, loaded.weights_fingerprint)
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    out = [
        encode_tokens(loaded, accel, b, layout)
        for _, b in PrefetchLoader(store, batches, pin_memory=accel.pin_memory)
    ]
    return np.concatenate(out) if out else np.empty((0, layout.width), np.float32)
