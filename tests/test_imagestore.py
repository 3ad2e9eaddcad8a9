"""The image store: content, keying, reuse, and resume after an interruption or a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from progbench.cache.imagestore import (
    ImageStore,
    ImageStoreParams,
    build_image_store,
    find_image_store,
    image_store_key,
)
from progbench.data.images import load_image
from progbench.data.manifest import load_manifest
from progbench.errors import CacheError
from tests.helpers.cohorts import write_cohort


def test_store_holds_preprocessed_images(cohort: Path, cache_dir: Path) -> None:
    m = load_manifest(cohort)
    res = build_image_store(m, ImageStoreParams(size=32), workers=1)
    store = ImageStore(res.path)
    assert res.computed == len(m.frame) == len(store)
    assert list(store.image_ids) == list(m.frame["image_id"])
    i = 5
    expected = load_image(m.image_paths()[i], size=32)
    assert np.array_equal(store.read(np.array([i]))[0], expected)
    assert store.images.dtype == np.uint8 and store.images.shape[1:] == (32, 32)
    assert find_image_store(m, ImageStoreParams(size=32)) == res.path


def test_reuse_and_key_changes(cohort: Path, cache_dir: Path) -> None:
    m = load_manifest(cohort)
    a = build_image_store(m, ImageStoreParams(size=24), workers=1)
    again = build_image_store(m, ImageStoreParams(size=24), workers=1)
    assert again.path == a.path and again.computed == 0
    assert image_store_key(m, ImageStoreParams(size=32)) != a.key
    assert image_store_key(m, ImageStoreParams(size=24, crop=False)) != a.key
    df = pd.read_csv(cohort)
    df.drop(index=0).to_csv(cohort, index=False)
    assert image_store_key(load_manifest(cohort), ImageStoreParams(size=24)) != a.key


def test_box_crop_is_applied(tmp_path: Path, cache_dir: Path) -> None:
    m = load_manifest(write_cohort(tmp_path / "b", patients=6, boxes=True))
    with_crop = ImageStore(build_image_store(m, ImageStoreParams(size=16), workers=1).path)
    no_crop = ImageStore(
        build_image_store(m, ImageStoreParams(size=16, crop=False), workers=1).path
    )
    assert not np.array_equal(with_crop.read(np.arange(3)), no_crop.read(np.arange(3)))


@pytest.mark.slow
def test_parallel_equals_serial(tmp_path: Path, cache_dir: Path) -> None:
    m = load_manifest(write_cohort(tmp_path / "p", patients=100))
    a = build_image_store(m, ImageStoreParams(size=20), workers=1)
    fp_serial = ImageStore(a.path).content_fingerprint
    import shutil

    shutil.rmtree(a.path)
    b = build_image_store(m, ImageStoreParams(size=20), workers=2)
    assert ImageStore(b.path).content_fingerprint == fp_serial


@pytest.mark.slow
def test_interrupted_build_resumes_only_missing(tmp_path: Path, cache_dir: Path) -> None:
    m = load_manifest(write_cohort(tmp_path / "r", patients=120))
    n = len(m.frame)

    def stop_after_first_block(done: int, total: int) -> None:
        if done >= 64:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_image_store(m, ImageStoreParams(size=20), workers=1, progress=stop_after_first_block)
    path = next((cache_dir / "images").glob("*.zarr"))
    with pytest.raises(CacheError, match="incomplete"):
        ImageStore(path)
    assert int(np.sum(zarr.open_group(path)["done"][:])) == 64
    res = build_image_store(m, ImageStoreParams(size=20), workers=1)
    assert res.computed == n - 64
    fp = ImageStore(res.path).content_fingerprint
    res.path.rename(res.path.with_suffix(".old"))
    clean = build_image_store(m, ImageStoreParams(size=20), workers=1)
    assert ImageStore(clean.path).content_fingerprint == fp


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path: Path, cache_dir: Path) -> None:
    manifest = write_cohort(tmp_path / "k", patients=300, size=96)
    cmd = [sys.executable, "-m", "progbench.cli", "cache", "images", str(manifest), "--size", "96"]
    cmd += ["--workers", "1"]
    env = os.environ | {"PROGBENCH_CACHE": str(cache_dir)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline and proc.poll() is None:
        stores = list((cache_dir / "images").glob("*.zarr"))
        if stores and (stores[0] / "done" / "zarr.json").exists():
            try:
                done = int(np.sum(zarr.open_group(stores[0], mode="r")["done"][:]))
            except Exception:  # read while being written
                done = 0
            if done > 0:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done > 0, "the build never wrote a block before the deadline"
    m = load_manifest(manifest)
    res = build_image_store(m, ImageStoreParams(size=96), workers=1)
    assert 0 < res.computed < len(m.frame)
    store = ImageStore(res.path)
    idx = np.arange(0, len(m.frame), 37)
    expected = np.stack([load_image(m.image_paths()[i], size=96) for i in idx])
    assert np.array_equal(store.read(idx), expected)


def test_unknown_image_id(cohort: Path, cache_dir: Path) -> None:
    store = ImageStore(
        build_image_store(load_manifest(cohort), ImageStoreParams(size=16), workers=1).path
    )
    with pytest.raises(CacheError, match="'nope' is not in image store"):
        store.indices(["nope"])
