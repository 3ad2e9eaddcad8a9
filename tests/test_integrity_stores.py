"""Image and feature stores as a user meets them through the command line (issues 11 and 12): a
store is trusted only with its chunks, damage is named and repaired, half-made stores are taken
over, the image-store key follows file content, and bad images are reported together."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from progbench.cache.featurestore import FeatureStore
from progbench.cache.imagestore import ImageStore
from progbench.errors import CacheError
from tests.helpers.cli import TINY, CliResult, cli, cli_process, lp, task_of
from tests.helpers.cohorts import write_cohort


def only_store(cache: Path, kind: str) -> Path:
    (path,) = (cache / kind).glob("*.zarr")
    return path


@pytest.fixture
def extracted(tmp_path: Path) -> tuple[Path, Path, Path, np.ndarray]:
    """(manifest, cache, feature store, its features) after one `progbench extract`."""
    manifest = write_cohort(tmp_path / "cohort")
    cache = tmp_path / "cache"
    r = cli("extract", manifest, *TINY, "--cache-dir", cache)
    assert r.code == 0, r.text
    store = only_store(cache, "features")
    return manifest, cache, store, FeatureStore(store).load()


def lp_train(manifest: Path, cache: Path, runs: Path) -> CliResult:
    return lp(task_of(manifest), runs, cache)


def predictions(runs: Path) -> pd.DataFrame:
    parts = [pd.read_parquet(p) for p in sorted(runs.rglob("predictions.parquet"))]
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------- 9. a complete store needs its chunks


@pytest.mark.slow
def test_deleted_feature_chunk_is_recomputed_not_reused(
    extracted: tuple[Path, Path, Path, np.ndarray],
) -> None:
    manifest, cache, store, before = extracted
    (store / "features" / "c" / "1" / "0").unlink()
    r = cli("extract", manifest, *TINY, "--cache-dir", cache)
    assert r.code == 0, r.text
    assert "reused" not in r.out and "extracted 30 images" in r.out, r.out
    np.testing.assert_array_equal(FeatureStore(store).load(), before)


@pytest.mark.slow
def test_lp_never_trains_on_the_zeros_of_a_missing_chunk(
    extracted: tuple[Path, Path, Path, np.ndarray], tmp_path: Path
) -> None:
    manifest, cache, store, before = extracted
    assert lp_train(manifest, cache, tmp_path / "intact").code == 0
    (store / "features" / "c" / "0" / "0").unlink()
    r = lp_train(manifest, cache, tmp_path / "after")
    assert r.code == 0, r.text
    assert "extracted 64 images" in r.out and "reused feature store" not in r.out
    pd.testing.assert_frame_equal(predictions(tmp_path / "after"), predictions(tmp_path / "intact"))
    np.testing.assert_array_equal(FeatureStore(store).load(), before)


def truncate(store: Path) -> None:
    chunk = store / "features" / "c" / "1" / "0"
    chunk.write_bytes(chunk.read_bytes()[:100])


@pytest.mark.slow
def test_truncated_chunk_is_never_reused_by_extract_or_train(
    extracted: tuple[Path, Path, Path, np.ndarray], tmp_path: Path
) -> None:
    """Issue 22.9: extract makes the reuse check train and cache verify make (every done chunk
    on disk and readable), so a damaged store is recomputed, never "reused complete"."""
    manifest, cache, store, before = extracted
    assert lp_train(manifest, cache, tmp_path / "intact").code == 0
    truncate(store)
    r = cli("extract", manifest, *TINY, "--cache-dir", cache)
    assert r.code == 0, r.text
    assert "reused" not in r.out, r.out
    assert "re-extracted 30 images whose chunks were missing or damaged" in r.out, r.out
    assert "extracted 30 images" in r.out
    np.testing.assert_array_equal(FeatureStore(store).load(), before)
    assert cli("cache", "verify", "--cache-dir", cache).code == 0

    truncate(store)  # train extracts through the same check
    r = lp_train(manifest, cache, tmp_path / "after")
    assert r.code == 0, r.text
    assert "30 images whose chunks were missing or damaged extracted again" in r.out, r.out
    assert "reused feature store" not in r.out
    pd.testing.assert_frame_equal(predictions(tmp_path / "after"), predictions(tmp_path / "intact"))


@pytest.mark.slow
def test_truncated_chunk_is_one_line_naming_store_and_rows_then_repaired(
    extracted: tuple[Path, Path, Path, np.ndarray],
) -> None:
    _, cache, store, before = extracted
    truncate(store)
    with pytest.raises(CacheError) as err:  # any reader of the store
        FeatureStore(store).load()
    assert str(store) in err.value.message and "rows 64-93" in err.value.message
    assert f"progbench cache verify {store.stem} --repair --cache-dir {cache}" in str(
        err.value.hint
    )

    r = cli("cache", "verify", "--cache-dir", cache)
    assert r.code != 0
    assert f"FAIL features {store.stem}" in r.out and "corrupt: 1 of 2 chunks" in r.out
    hint = next(x for x in r.err.splitlines() if x.startswith("hint:"))
    command = hint.split(": ", 2)[2].split(";")[0].split(". Or")[0]
    assert command == f"progbench cache verify {store.stem} --repair --cache-dir {cache}"
    r = cli(*command.split()[1:])  # the hint, run as given
    assert r.code == 0, r.text
    assert "repaired 30 rows" in r.out
    np.testing.assert_array_equal(FeatureStore(store).load(), before)
    assert cli("cache", "verify", "--cache-dir", cache).code == 0


@pytest.mark.slow
def test_missing_image_chunk_is_decoded_again_not_black(
    extracted: tuple[Path, Path, Path, np.ndarray],
) -> None:
    manifest, cache, store, before = extracted
    images = only_store(cache, "images")
    pixels = ImageStore(images).read(np.array([5]))
    assert pixels.any()
    shutil.rmtree(images / "images" / "c" / "5")
    shutil.rmtree(store)  # a new feature store must be built from the image store
    r = cli("extract", manifest, *TINY, "--cache-dir", cache)
    assert r.code == 0, r.text
    assert only_store(cache, "features") == store  # its key follows the image content
    np.testing.assert_array_equal(ImageStore(images).read(np.array([5])), pixels)
    np.testing.assert_array_equal(FeatureStore(store).load(), before)
    assert cli("cache", "verify", "--cache-dir", cache).code == 0


# ------------------------------------------------------ 11. half-made stores are taken over


@pytest.mark.slow
@pytest.mark.parametrize("half", ["no zarr.json", "zarr.json without key"])
def test_half_created_store_needs_no_cleaning(tmp_path: Path, half: str) -> None:
    from progbench.cache.imagestore import ImageStoreParams, image_store_key
    from progbench.data.manifest import load_manifest

    manifest = write_cohort(tmp_path / "cohort")
    cache = tmp_path / "cache"
    key = image_store_key(load_manifest(manifest), ImageStoreParams(size=32), cache)
    path = cache / "images" / f"{key}.zarr"
    (path / "images" / "c" / "0" / "0").mkdir(parents=True)
    (path / "images" / "c" / "0" / "0" / "0").write_bytes(b"half a chunk")
    if half == "zarr.json without key":
        meta = {"zarr_format": 3, "node_type": "group", "attributes": {"kind": "x"}}
        (path / "zarr.json").write_text(json.dumps(meta))
    r = cli("cache", "images", manifest, "--size", "32", "--cache-dir", cache)
    assert r.code == 0, r.text
    assert "decoded 94 images" in r.out
    assert ImageStore(path).attrs["key"] == key
    assert cli("cache", "verify", "--cache-dir", cache).code == 0


@pytest.mark.slow
def test_half_created_feature_store_needs_no_cleaning(
    extracted: tuple[Path, Path, Path, np.ndarray],
) -> None:
    manifest, cache, store, before = extracted
    shutil.rmtree(store)
    store.mkdir()
    (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    r = cli("extract", manifest, *TINY, "--cache-dir", cache)
    assert r.code == 0, r.text
    assert "extracted 94 images" in r.out
    np.testing.assert_array_equal(FeatureStore(store).load(), before)


# ------------------------------------------------ 13. the image-store key reads file content


@pytest.mark.slow
@pytest.mark.parametrize("restore_mtime", [False, True])
def test_image_edited_in_place_at_the_same_size_makes_another_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_mtime: bool
) -> None:
    """Issue 22.9: with its size and mtime restored by hand too (ctime and inode cannot be)."""
    from progbench.cache import digests

    # Files this fresh are "racy" (hashed every time); this test is about remembered digests.
    monkeypatch.setattr(digests, "RACY_S", 0.0, raising=False)
    manifest = write_cohort(tmp_path / "cohort")
    cache = tmp_path / "cache"
    png = manifest.parent / "images" / "P001-0.png"
    Image.open(png).save(png, compress_level=0)  # stored, not deflated: size = f(shape)
    size = png.stat().st_size
    hashed: list[Path] = []
    real = digests.file_sha256

    def counting(path: Path) -> str:
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(digests, "file_sha256", counting)
    assert cli("cache", "images", manifest, "--size", "32", "--cache-dir", cache).code == 0
    assert len(hashed) == 94
    old = only_store(cache, "images")
    row = int(np.flatnonzero(ImageStore(old).image_ids == "P001-0")[0])

    hashed.clear()
    r = cli("cache", "images", manifest, "--size", "32", "--cache-dir", cache)
    assert r.code == 0 and "reused image store" in r.out
    assert hashed == []  # size and mtime unchanged: not read again

    pixels = np.asarray(Image.open(png))
    st = png.stat()
    Image.fromarray(255 - pixels).save(png, compress_level=0)
    assert png.stat().st_size == size
    if restore_mtime:
        os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert png.stat().st_mtime_ns == st.st_mtime_ns and png.stat().st_ino == st.st_ino
    r = cli("cache", "images", manifest, "--size", "32", "--cache-dir", cache)
    assert r.code == 0, r.text
    assert hashed == [png.resolve()]  # only the edited file is read again
    new = next(p for p in (cache / "images").glob("*.zarr") if p != old)
    a, b = ImageStore(old).read(np.arange(94)), ImageStore(new).read(np.arange(94))
    assert not np.array_equal(a[row], b[row])
    np.testing.assert_array_equal(np.delete(a, row, 0), np.delete(b, row, 0))


def test_digest_of_a_file_changed_just_now_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit in the clock tick of the last hash would leave size, mtime and ctime equal: a
    file whose status changed within RACY_S seconds is hashed every time."""
    from progbench.cache import digests

    path = tmp_path / "a.png"
    path.write_bytes(b"one")
    hashed: list[Path] = []
    real = digests.file_sha256
    monkeypatch.setattr(digests, "file_sha256", lambda p: hashed.append(p) or real(p))
    for _ in range(2):
        digests.file_digests([path], tmp_path / "cache")
    assert len(hashed) == 2
    monkeypatch.setattr(digests, "RACY_S", 0.0)
    for _ in range(2):
        digests.file_digests([path], tmp_path / "cache")
    assert len(hashed) == 3  # settled: remembered


def test_digest_cache_of_the_old_format_misses_and_never_crashes(tmp_path: Path) -> None:
    """A cache written before ctime and inode were part of the key (table `digests`: path, size,
    mtime) is never trusted: its entries miss and the file is hashed again."""
    import hashlib
    import sqlite3

    from progbench.cache import digests

    path = tmp_path / "a.png"
    path.write_bytes(b"edited, size and mtime restored")
    st = path.stat()
    db_path = tmp_path / "cache" / digests.DB_NAME
    db_path.parent.mkdir()
    with sqlite3.connect(db_path) as db:
        db.execute(
            "CREATE TABLE digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
            "sha256 TEXT)"
        )
        db.execute(
            "INSERT INTO digests VALUES (?, ?, ?, ?)",
            (str(path.resolve()), st.st_size, st.st_mtime_ns, "0" * 64),  # the old content's
        )
    db.close()
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digests.file_digests([path], tmp_path / "cache") == [expected]
    assert digests.file_digests([path], tmp_path / "cache") == [expected]


# -------------------------------------------------------------- 12.3. bad images, prune, rm


def spoil(manifest: Path, image_ids: list[str]) -> list[Path]:
    paths = [manifest.parent / "images" / f"{i}.png" for i in image_ids]
    for p in paths:
        p.write_bytes(b"this is not a PNG")
    return paths


def test_every_bad_image_is_named_at_once(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path / "cohort")
    bad = spoil(manifest, ["P002-0", "P010-0", "P031-0"])
    r = cli("cache", "images", manifest, "--size", "32", "--cache-dir", tmp_path / "cache")
    assert r.code != 0 and "Traceback" not in r.text
    assert "3 of 94 image(s)" in r.err
    for p in bad:
        assert str(p) in r.err


def test_bad_images_beyond_the_listed_limit_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from progbench.cache import imagestore

    monkeypatch.setattr(imagestore, "MAX_LISTED", 2)
    manifest = write_cohort(tmp_path / "cohort")
    bad = spoil(manifest, ["P002-0", "P010-0", "P031-0"])
    r = cli("cache", "images", manifest, "--size", "32", "--cache-dir", tmp_path / "cache")
    assert r.code != 0
    assert sum(str(p) in r.err for p in bad) == 2 and "... and 1 more" in r.err


def test_failed_build_with_nothing_decoded_leaves_no_store(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path / "cohort", patients=4)
    ids = pd.read_csv(manifest)["image_id"].tolist()
    spoil(manifest, ids)
    cache = tmp_path / "cache"
    r = cli("cache", "images", manifest, "--size", "32", "--cache-dir", cache)
    assert r.code != 0 and f"{len(ids)} of {len(ids)} image(s)" in r.err
    assert not list((cache / "images").glob("*.zarr"))


@pytest.mark.slow
def test_verify_manifest_checks_only_its_stores(tmp_path: Path) -> None:
    a = write_cohort(tmp_path / "a", seed=1)
    b = write_cohort(tmp_path / "b", seed=2)
    cache = tmp_path / "cache"
    keys = {}
    for m in (a, b):
        known = {p.stem for p in cache.rglob("*.zarr")}
        assert cli("extract", m, *TINY, "--cache-dir", cache).code == 0
        keys[m] = {p.stem for p in cache.rglob("*.zarr")} - known
    for m in (a, b):
        r = cli("cache", "verify", "--manifest", m, "--cache-dir", cache)
        assert r.code == 0, r.text
        checked = {line.split()[-1] for line in r.out.splitlines() if line.startswith("ok")}
        assert checked == keys[m] and len(checked) == 2  # its image and feature store


@pytest.mark.slow
def test_prune_removes_incomplete_and_orphaned_stores(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    keep = write_cohort(tmp_path / "keep", seed=1)
    gone = write_cohort(tmp_path / "gone", seed=2)
    broken = write_cohort(tmp_path / "broken", seed=3)
    assert cli("extract", keep, *TINY, "--cache-dir", cache).code == 0
    assert cli("cache", "images", gone, "--size", "32", "--cache-dir", cache).code == 0
    spoil(broken, ["P004-0"])  # 93 images decode: an incomplete store stays
    assert cli("cache", "images", broken, "--size", "32", "--cache-dir", cache).code != 0
    before = {p.stem for p in cache.rglob("*.zarr")}
    assert len(before) == 4
    gone.unlink()  # its image store is now an orphan

    r = cli("cache", "prune", "--dry-run", "--cache-dir", cache)
    assert r.code == 0, r.text
    assert "would remove 2 store(s)" in r.out
    assert "incomplete" in r.out and "no longer exists" in r.out
    assert {p.stem for p in cache.rglob("*.zarr")} == before  # a dry run removes nothing
    r = cli("cache", "prune", "--cache-dir", cache)
    assert r.code == 0 and "removed 2 store(s)" in r.out
    left = {p.stem for p in cache.rglob("*.zarr")}
    assert len(left) == 2 and left < before
    assert cli("cache", "verify", "--manifest", keep, "--cache-dir", cache).code == 0


@pytest.mark.slow
def test_rm_takes_several_keys(extracted: tuple[Path, Path, Path, np.ndarray]) -> None:
    _, cache, store, _ = extracted
    image = only_store(cache, "images")
    r = cli("cache", "rm", image.stem[:6], store.stem, "--cache-dir", cache)
    assert r.code == 0, r.text
    assert not image.exists() and not store.exists()
    assert r.out.count("removed") == 2


@pytest.mark.slow
def test_rm_resolves_every_key_before_removing(
    extracted: tuple[Path, Path, Path, np.ndarray],
) -> None:
    _, cache, store, _ = extracted
    r = cli("cache", "rm", store.stem, "nosuchkey", "--cache-dir", cache)
    assert r.code != 0 and "'nosuchkey'" in r.err
    assert store.exists()


# ------------------------------------------------------- 12.4. a DICOM without its decoder


@pytest.mark.slow  # subprocesses or a full report
def test_compressed_dicom_without_decoder_names_syntax_and_plugin(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    root = tmp_path / "cohort"
    root.mkdir()
    shutil.copy(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"), root / "mr.dcm")
    pd.DataFrame(
        [{"image_id": "mr", "path": "mr.dcm", "patient_id": "p1", "center": "c", "y": 1}]
    ).to_csv(root / "manifest.csv", index=False)
    r = cli_process("cache", "images", root / "manifest.csv", "--size", "32",
                    cache=tmp_path / "cache")  # fmt: skip
    assert r.returncode != 0
    assert "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in r.stderr
    assert "pip install pylibjpeg" in r.stderr
    assert "Traceback" not in r.stderr
    assert "Warning" not in r.stderr and "warn" not in r.stderr.lower()
