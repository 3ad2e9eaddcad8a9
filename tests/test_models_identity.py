"""A backbone's identity is built and hashed once per process for the same weights, follows a
changed checkpoint, and a store reuse needs no encoder (progbench.models.identity)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from progbench.cache.imagestore import ImageStoreParams
from progbench.data.manifest import load_manifest
from progbench.errors import WeightsError
from progbench.extract.features import extract_features
from progbench.models import identity
from progbench.models.identity import BackboneRef, backbone_ref
from progbench.models.loaders import load_backbone, save_backbone
from tests.helpers.cohorts import write_cohort


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names identity.py builds, one entry per build; the memo starts empty."""
    monkeypatch.setattr(identity, "_KNOWN", {})
    seen: list[str] = []

    def counting(name: str, weights: str = "pretrained", seed: int = 0):  # type: ignore[no-untyped-def]
        seen.append(name)
        return load_backbone(name, weights, seed)

    monkeypatch.setattr(identity, "load_backbone", counting)
    return seen


def test_random_weights_are_built_once_per_seed(builds: list[str]) -> None:
    first = backbone_ref("tiny-resnet", "random")
    assert first.built is not None and builds == ["tiny-resnet"]
    again = backbone_ref("tiny-resnet", "random")
    assert again.built is None and builds == ["tiny-resnet"]  # remembered
    assert again.weights_fingerprint == first.weights_fingerprint
    assert again.encoder_params == first.encoder_params == first.spec.encoder_params
    other = backbone_ref("tiny-resnet", "random", seed=1)
    assert other.weights_fingerprint != first.weights_fingerprint and len(builds) == 2
    loaded = again.load()  # built on demand, checked against the remembered fingerprint
    assert loaded.weights_fingerprint == first.weights_fingerprint and len(builds) == 3


def test_a_rewritten_checkpoint_is_hashed_again(builds: list[str], tmp_path: Path) -> None:
    saved = save_backbone(load_backbone("tiny-resnet", "random", seed=1), tmp_path / "w")
    a = backbone_ref("tiny-resnet", str(saved))
    assert backbone_ref("tiny-resnet", str(saved)).built is None
    (file,) = [p for p in saved.rglob("*") if p.is_file()]
    file.unlink()
    save_backbone(load_backbone("tiny-resnet", "random", seed=2), tmp_path / "w2")
    (tmp_path / "w2" / file.name).rename(file)
    os.utime(file, ns=(1, 1))  # another size or time: another key, whatever the clock says
    b = backbone_ref("tiny-resnet", str(saved))
    assert b.built is not None and b.weights_fingerprint != a.weights_fingerprint


def test_a_checkpoint_edited_in_place_with_size_and_mtime_restored_is_hashed_again(
    builds: list[str], tmp_path: Path
) -> None:
    """Issue 22.9: the memo's key holds the ctime (and inode) a user cannot set back."""
    saved = save_backbone(load_backbone("tiny-resnet", "random", seed=1), tmp_path / "w")
    a = backbone_ref("tiny-resnet", str(saved))
    (file,) = [p for p in saved.rglob("*") if p.is_file()]
    st = file.stat()
    other = save_backbone(load_backbone("tiny-resnet", "random", seed=2), tmp_path / "w2")
    data = (other / file.name).read_bytes()
    assert len(data) == st.st_size
    with open(file, "r+b") as fh:  # in place: same inode
        fh.write(data)
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (file.stat().st_size, file.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    b = backbone_ref("tiny-resnet", str(saved))
    assert b.built is not None and b.weights_fingerprint != a.weights_fingerprint


def test_weights_changed_under_a_reference_are_refused() -> None:
    real = backbone_ref("tiny-resnet", "random")
    stale = BackboneRef(real.spec, "random", "0" * 20, real.encoder_params)
    with pytest.raises(WeightsError, match="changed while this process ran"):
        stale.load()


def test_a_store_reuse_builds_no_encoder(
    builds: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROGBENCH_CACHE", str(tmp_path / "cache"))
    m = load_manifest(write_cohort(tmp_path / "c", patients=12, size=32))
    params = ImageStoreParams(size=32)
    first = extract_features(m, "tiny-resnet", "random", device="cpu", image_params=params)
    assert first.computed == len(m.frame) and builds == ["tiny-resnet"]
    again = extract_features(m, "tiny-resnet", "random", device="cpu", image_params=params)
    assert again.computed == 0 and again.key == first.key and builds == ["tiny-resnet"]
