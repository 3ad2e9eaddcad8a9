"""Feature extraction and feature stores: keys, reuse, resume after SIGKILL, locking, verify, export."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import zarr

from progbench.accel import resolve_accel
from progbench.cache.export import export_store
from progbench.cache.featurestore import FeatureKey, FeatureStore
from progbench.cache.imagestore import ImageStore, ImageStoreParams, build_image_store
from progbench.cache.listing import list_stores
from progbench.cache.verify import verify_store
from progbench.data.manifest import load_manifest
from progbench.extract.features import encode, extract_features, feature_key
from progbench.models.loaders import load_backbone
from tests.helpers.cohorts import write_cohort

PARAMS = ImageStoreParams(size=64)


@pytest.fixture(scope="module")
def tiny():
    return load_backbone("tiny-resnet", "random")


@pytest.mark.slow
def test_extract_matches_direct_forward_and_reuses(cohort: Path, cache_dir: Path, tiny) -> None:
    m = load_manifest(cohort)
    res = extract_features(
        m, "tiny-resnet", "random", batch_size=16, image_params=PARAMS, loaded=tiny
    )
    assert res.computed == len(m.frame)
    store = FeatureStore(res.path)
    feats = store.load()
    assert feats.shape == (len(m.frame), tiny.spec.feature_dim) and feats.dtype == np.float32
    images = ImageStore(build_image_store(m, PARAMS).path)
    direct = encode(
        tiny, resolve_accel("cpu", "fp32"), torch.from_numpy(images.read(np.arange(16)))
    )
    np.testing.assert_allclose(feats[:16], direct, rtol=1e-5, atol=1e-6)
    again = extract_features(
        m, "tiny-resnet", "random", batch_size=16, image_params=PARAMS, loaded=tiny
    )
    assert again.path == res.path and again.computed == 0
    attrs = store.attrs
    for k in (
        "versions",
        "created",
        "host",
        "device",
        "seconds",
        "images_per_s",
        "weights_fingerprint",
    ):
        assert k in attrs, k
    assert attrs["complete"] is True


def test_load_aligned_to_manifest_order(cohort: Path, cache_dir: Path, tiny) -> None:
    m = load_manifest(cohort)
    store = FeatureStore(
        extract_features(m, "tiny-resnet", "random", image_params=PARAMS, loaded=tiny).path
    )
    ids = list(m.frame["image_id"])[::-1]
    np.testing.assert_array_equal(store.load(ids), store.load()[::-1])


@pytest.mark.slow
def test_key_changes_on_every_input(cohort: Path, cache_dir: Path, tiny) -> None:
    m = load_manifest(cohort)
    store = ImageStore(build_image_store(m, PARAMS).path)
    base = feature_key(store, tiny, resolve_accel("cpu", "fp32"))
    variants = [
        dataclasses.replace(base, image_store="other"),
        dataclasses.replace(base, backbone="tiny-other"),
        dataclasses.replace(base, weights_fingerprint="other"),
        dataclasses.replace(
            base, transform=base.transform | {"input_size": base.transform["input_size"] + 16}
        ),
        dataclasses.replace(base, transform=base.transform | {"mean": [0.5, 0.5, 0.5]}),
        dataclasses.replace(base, transform=base.transform | {"crop": not base.transform["crop"]}),
        dataclasses.replace(base, feature=base.feature | {"feature": {"pooling": "cls"}}),
        dataclasses.replace(base, dtype="bf16"),
        dataclasses.replace(base, format_version=base.format_version + 1),
    ]
    keys = {base.key, *(v.key for v in variants)}
    assert len(keys) == len(variants) + 1
    # Real inputs: other weights, other image size, other dtype.
    other_weights = load_backbone("tiny-resnet", "random", seed=1)
    assert feature_key(store, other_weights, resolve_accel("cpu", "fp32")).key != base.key
    store32 = ImageStore(build_image_store(m, ImageStoreParams(size=32)).path)
    assert feature_key(store32, tiny, resolve_accel("cpu", "fp32")).key != base.key
    assert feature_key(store, tiny, resolve_accel("cpu", "bf16")).key != base.key
    assert isinstance(base, FeatureKey)


def test_bf16_close_to_fp32(cohort: Path, cache_dir: Path, tiny) -> None:
    m = load_manifest(cohort)
    images = ImageStore(build_image_store(m, PARAMS).path)
    batch = torch.from_numpy(images.read(np.arange(8)))
    f32 = encode(tiny, resolve_accel("cpu", "fp32"), batch)
    bf16 = encode(tiny, resolve_accel("cpu", "bf16"), batch)
    cos = (f32 * bf16).sum(1) / (np.linalg.norm(f32, axis=1) * np.linalg.norm(bf16, axis=1))
    assert cos.min() > 0.99


# resnet18 at 64 px in the process tests: a full-size network, a quarter of 96 px's cost.
RESNET_SIZE = 64


def _extract_cmd(manifest: Path, batch: int) -> list[str]:
    cli = [sys.executable, "-m", "progbench.cli", "extract", str(manifest)]
    return [
        *cli,
        "--backbone",
        "resnet18",
        "--weights",
        "random",
        "--batch-size",
        str(batch),
        "--image-size",
        str(RESNET_SIZE),
        "--device",
        "cpu",
    ]


@pytest.mark.slow
def test_sigkill_resume_is_bit_identical(tmp_path: Path, cache_dir: Path) -> None:
    # 172 images in 22 chunks of 8: the kill after 2 chunks leaves ~20 to resume.
    manifest = write_cohort(tmp_path / "k", patients=120, size=RESNET_SIZE)
    m = load_manifest(manifest)
    build_image_store(m, ImageStoreParams(size=RESNET_SIZE))
    env = os.environ | {"PROGBENCH_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _extract_cmd(manifest, 8), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    done, deadline = 0, time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        stores = list((cache_dir / "features").glob("*.zarr"))
        if stores and (stores[0] / "done" / "zarr.json").exists():
            try:
                done = int(np.sum(zarr.open_group(stores[0], mode="r")["done"][:]))
            except Exception:  # caught mid-write
                done = 0
            if done >= 16:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < done < len(m.frame), f"kill landed at {done} rows"
    path = next((cache_dir / "features").glob("*.zarr"))
    assert not verify_store(path).ok
    resumed = extract_features(
        m,
        "resnet18",
        "random",
        batch_size=8,
        device="cpu",
        image_params=ImageStoreParams(size=RESNET_SIZE),
    )
    assert resumed.path == path and 0 < resumed.computed < len(m.frame)
    first = FeatureStore(path).load()
    clean = extract_features(
        m,
        "resnet18",
        "random",
        batch_size=8,
        device="cpu",
        image_params=ImageStoreParams(size=RESNET_SIZE),
        cache_dir=tmp_path / "clean",
    )
    np.testing.assert_array_equal(first, FeatureStore(clean.path).load())  # bit-identical
    assert verify_store(path).ok


@pytest.mark.slow
def test_two_concurrent_extracts(cohort: Path, cache_dir: Path) -> None:
    build_image_store(load_manifest(cohort), ImageStoreParams(size=RESNET_SIZE))
    env = os.environ | {"PROGBENCH_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            _extract_cmd(cohort, 8),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    stdout = "".join(o[0] for o in outs)
    assert stdout.count("extracted") == 1 and stdout.count("reused") == 1
    stores = [s for s in list_stores() if s["kind"] == "features"]
    assert len(stores) == 1 and stores[0]["complete"]
    assert verify_store(Path(stores[0]["path"])).ok


@pytest.mark.slow
def test_verify_catches_truncated_and_mismatched(cohort: Path, cache_dir: Path, tiny) -> None:
    m = load_manifest(cohort)
    res = extract_features(
        m, "tiny-resnet", "random", batch_size=16, image_params=PARAMS, loaded=tiny
    )
    assert verify_store(res.path).ok
    chunk = sorted((res.path / "features" / "c").rglob("*"))
    victim = [c for c in chunk if c.is_file()][1]
    victim.unlink()
    report = verify_store(res.path)
    assert any("truncated" in p for p in report.problems)
    # Image ids that no longer match the manifest.
    import pandas as pd

    df = pd.read_csv(cohort)
    df.iloc[:-1].to_csv(cohort, index=False)
    report = verify_store(res.path)
    assert any("do not match" in p for p in report.problems)


def test_verify_catches_corrupt_chunk(cohort: Path, cache_dir: Path, tiny) -> None:
    res = extract_features(
        load_manifest(cohort),
        "tiny-resnet",
        "random",
        batch_size=16,
        image_params=PARAMS,
        loaded=tiny,
    )
    victim = next(c for c in sorted((res.path / "features" / "c").rglob("*")) if c.is_file())
    victim.write_bytes(victim.read_bytes()[:10])
    assert any("corrupt" in p for p in verify_store(res.path).problems)


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_export_round_trip(cohort: Path, cache_dir: Path, tmp_path: Path, tiny, fmt: str) -> None:
    res = extract_features(
        load_manifest(cohort), "tiny-resnet", "random", image_params=PARAMS, loaded=tiny
    )
    store = FeatureStore(res.path)
    out = export_store(res.path, fmt, tmp_path / f"f.{fmt}")
    if fmt == "npz":
        z = np.load(out)
        feats, ids = z["features"], list(z["image_id"])
    else:
        with h5py.File(out) as h5:
            feats = h5["features"][:]
            ids = [s.decode() for s in h5["image_id"][:]]
    np.testing.assert_array_equal(feats, store.load())
    assert ids == list(store.image_ids)


@pytest.mark.slow
def test_cli_cache_commands(cohort: Path, cache_dir: Path, tmp_path: Path, tiny) -> None:
    from typer.testing import CliRunner

    from progbench.cli import app

    res = extract_features(
        load_manifest(cohort), "tiny-resnet", "random", image_params=PARAMS, loaded=tiny
    )
    runner = CliRunner()
    ls = runner.invoke(app, ["cache", "ls", "--json"])
    assert ls.exit_code == 0 and res.key in ls.output
    info = runner.invoke(app, ["cache", "info", res.key[:6]])
    assert info.exit_code == 0 and "weights_fingerprint" in info.output
    assert runner.invoke(app, ["cache", "verify"]).exit_code == 0
    out = tmp_path / "x.npz"
    assert runner.invoke(app, ["cache", "export", res.key, "--out", str(out)]).exit_code == 0
    assert out.is_file()
    assert runner.invoke(app, ["cache", "rm", res.key]).exit_code == 0
    assert not res.path.exists()


def _hidden_state_tokens(loaded, x: torch.Tensor, blocks: int) -> list[torch.Tensor]:
    """The class tokens of the last `blocks` blocks and the last block's patch mean, taken by
    hand: transformers' hidden_states with the final norm, or forward hooks on timm's blocks."""
    enc = loaded.encoder
    if loaded.spec.library == "transformers":
        model = enc.model
        hidden = model(pixel_values=x, output_hidden_states=True).hidden_states[1:]
        norm = model.layernorm if hasattr(model, "layernorm") else model.post_layernorm
        head = torch.nn.Identity()
    else:  # open_clip TimmModel around a timm ViT
        hidden = []
        hooks = [
            b.register_forward_hook(lambda m, i, o: hidden.append(o)) for b in enc.trunk.blocks
        ]
        enc(x)
        for h in hooks:
            h.remove()
        norm, head = enc.trunk.norm, enc.head
    tokens = [head(norm(h)[:, 0]) for h in hidden[-blocks:]]
    return [*tokens, head(norm(hidden[-1])[:, 1:].mean(1))]


@pytest.mark.parametrize("name", ["tiny-dinov2", "tiny-clip", "tiny-openclip"])
def test_token_variants_are_the_hidden_states_taken_by_hand(name: str) -> None:
    from progbench.config import DEFAULT_VARIANT, Variant
    from progbench.extract.features import token_layout
    from progbench.models.sources import encoder_tokens

    loaded = load_backbone(name, "random")
    layout = token_layout(loaded.spec)
    blocks = max(loaded.spec.variants.n_last_blocks)
    assert layout.tokens()[-1] == "patch_mean" and layout.blocks == blocks > 1
    x = torch.randn(3, 3, loaded.spec.input_size, loaded.spec.input_size)
    with torch.no_grad():
        rows = encoder_tokens(loaded.spec, loaded.encoder, x, layout).numpy()
        by_hand = [t.numpy() for t in _hidden_state_tokens(loaded, x, blocks)]
        own = loaded.encoder(x).numpy()
    np.testing.assert_allclose(rows, np.concatenate(by_hand, 1), rtol=1e-5, atol=1e-6)
    # cls1 (n = 1, no avgpool) is the backbone's single feature, `feature:` in its YAML.
    np.testing.assert_array_equal(layout.select(rows, DEFAULT_VARIANT), own)
    cls_n_avg = layout.select(rows, Variant(blocks, True))
    np.testing.assert_array_equal(cls_n_avg, rows)
    np.testing.assert_array_equal(layout.select(rows, Variant(1, True)), rows[:, -2 * 32 :])


@pytest.mark.slow
def test_a_vit_store_holds_every_variant_and_a_cnn_store_one_feature(
    cohort: Path, cache_dir: Path, tiny
) -> None:
    from progbench.config import DEFAULT_VARIANT, Variant

    m = load_manifest(cohort)
    vit = load_backbone("tiny-dinov2", "random")
    res = extract_features(
        m, "tiny-dinov2", "random", batch_size=16, image_params=PARAMS, loaded=vit
    )
    store = FeatureStore(res.path)
    assert store.attrs["layout"]["tokens"] == ["cls_block_-2", "cls_block_-1", "patch_mean"]
    assert store.attrs["feature"]["layout"] == store.attrs["layout"]  # part of the key
    assert store.load().shape == (len(m.frame), 3 * 32)
    images = ImageStore(build_image_store(m, PARAMS).path)
    direct = encode(vit, resolve_accel("cpu", "fp32"), torch.from_numpy(images.read(np.arange(16))))
    np.testing.assert_allclose(
        store.load_variant(DEFAULT_VARIANT)[:16], direct, rtol=1e-5, atol=1e-6
    )
    assert store.load_variant(Variant(2, False)).shape == (len(m.frame), 64)
    cnn = FeatureStore(
        extract_features(m, "tiny-resnet", "random", image_params=PARAMS, loaded=tiny).path
    )
    assert cnn.layout.offer == (DEFAULT_VARIANT,) and cnn.load().shape[1] == tiny.spec.feature_dim
    with pytest.raises(Exception, match="not in this store"):
        cnn.load_variant(Variant(1, True))
    # The dimension shown is per variant (32 per token here), never the row width (96).
    assert res.dims == "cls1 32, cls1+avg 64, cls2 64, cls2+avg 96"
    assert store.layout.variant_dims() == {"cls1": 32, "cls1+avg": 64, "cls2": 64, "cls2+avg": 96}
    listed = {s["key"]: s["dims"] for s in list_stores()}
    assert listed[res.key] == res.dims and listed[cnn.key] == str(tiny.spec.feature_dim)
    from progbench.commands.render import stores_table

    text = _rendered(stores_table(list_stores()))
    assert "cls1 32, cls1+avg 64, cls2 64, cls2+avg 96" in text


def _rendered(table: object) -> str:
    from rich.console import Console

    console = Console(width=400, record=True)
    console.print(table)
    return console.export_text()
