"""Weights folders for machines without a network: fetch (with a fake downloader), load back
through `weights_dir` / $PROGBENCH_WEIGHTS_DIR with the network disabled, `weights ls`, and the
fast failure when neither a network nor local weights exist. Nothing here downloads anything."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from progbench.cli import main
from progbench.config import BackboneSpec
from progbench.errors import RegistryError, WeightsError
from progbench.models.loaders import LoadedBackbone, load_backbone
from progbench.models.registry import get_backbone_spec, list_backbones
from progbench.models.sources import network
from progbench.models.sources.open_clip import CONFIG as OPEN_CLIP_CONFIG
from progbench.models.sources.open_clip import pick_hub_files
from progbench.models.sources.private import PRIVATE_SYMBOLS, PrivateSymbol, resolve
from progbench.models.sources.torchvision import classifier_attr
from progbench.models.sources.transformers import pick_weight_files
from progbench.models.weights import (
    expand_backbones,
    fetch_weights,
    read_manifest,
    weights_status,
)
from tests.helpers.twins import TWINS


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No weights folder, cache or probe answer from outside the test."""
    import huggingface_hub.constants

    monkeypatch.delenv("PROGBENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("PROGBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    network.clear_probe_cache()
    yield
    network.clear_probe_cache()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every DNS lookup or connect fails, and is recorded."""
    calls: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(repr(args[:2]))
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return calls


def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not offline, and every host answers the probe (the downloads themselves are faked)."""
    import huggingface_hub.constants

    for var in network.OFFLINE_ENVS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(network, "unreachable_reason", lambda url: None)


def _x(loaded: LoadedBackbone) -> torch.Tensor:
    size = loaded.spec.input_size
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))


def _text_tower(prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}embeddings.weight": torch.randn(10, 4), "logit_scale": torch.tensor(2.66)}


def write_hub_layout(loaded: LoadedBackbone, folder: Path) -> None:
    """The files `weights fetch` downloads for the backbone's library, from a loaded model."""
    from progbench.models.loaders import save_backbone

    spec, sd = loaded.spec, dict(loaded.encoder.state_dict())
    if spec.library == "transformers" and spec.weights_format == "native":
        save_backbone(loaded, folder)  # save_pretrained: the hub snapshot's layout
        return
    folder.mkdir(parents=True)
    if spec.weights_format == "medclip":  # the release's whole MedClipModel
        inner = "vision_model.model." if spec.library == "torchvision" else "vision_model."
        whole = {inner + k: v for k, v in sd.items()} | _text_tower("text_model.model.")
        torch.save(whole, folder / "pytorch_model.bin")
    elif spec.library == "torchvision":  # torchvision's file, ImageNet classifier included
        attr = classifier_attr(loaded.encoder)
        sd |= {
            f"{attr}.weight": torch.zeros(1000, spec.feature_dim),
            f"{attr}.bias": torch.zeros(1000),
        }
        torch.save(sd, folder / f"{spec.name}-0123abcd.pth")
    else:  # open_clip's hub repo: its config and the whole CLIP model
        cfg = {"model_cfg": spec.config_overrides, "preprocess_cfg": {"mean": list(spec.mean)}}
        (folder / OPEN_CLIP_CONFIG).write_text(json.dumps(cfg))
        whole = {f"visual.{k}": v for k, v in sd.items()} | _text_tower("text.")
        torch.save(whole, folder / "open_clip_pytorch_model.bin")


def copying_fetcher(sources: dict[str, Path]) -> Callable[[BackboneSpec, Path], None]:
    """A downloader that copies a saved model instead of downloading it."""

    def fetch(spec: BackboneSpec, to_dir: Path) -> None:
        shutil.copytree(sources[spec.name], to_dir, dirs_exist_ok=True)

    return fetch


def _fetch_twins(
    names: list[str], root: Path, tmp: Path, seed: int = 11
) -> dict[str, LoadedBackbone]:
    refs = {n: load_backbone(n, "random", seed=seed) for n in names}
    for n, ref in refs.items():
        write_hub_layout(ref, tmp / "hub" / n)
    fetch_weights(names, root, fetcher=copying_fetcher({n: tmp / "hub" / n for n in names}))
    return refs


@pytest.mark.parametrize("name", TWINS)
def test_fetched_weights_load_back_without_a_network(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    ref = load_backbone(name, "random", seed=11)
    hub = tmp_path / "hub" / name
    write_hub_layout(ref, hub)
    root = tmp_path / "weights"
    [result] = fetch_weights([name], root, fetcher=copying_fetcher({name: hub}))
    assert (result.status, result.path) == ("fetched", root / name)

    entry = read_manifest(root)[name]
    want = sorted(p.name for p in hub.iterdir())
    assert sorted(entry["files"]) == want == sorted(p.name for p in (root / name).iterdir())
    for rel, rec in entry["files"].items():
        data = (hub / rel).read_bytes()
        assert rec == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert entry["library"] == ref.spec.library

    got = load_backbone(name, "pretrained", weights_dir=root)
    assert got.weights == "pretrained"
    assert got.weights_fingerprint == ref.weights_fingerprint
    with torch.no_grad():
        assert torch.equal(got.encoder(_x(got)), ref.encoder(_x(ref)))
    monkeypatch.setenv("PROGBENCH_WEIGHTS_DIR", str(root))
    assert load_backbone(name).weights_fingerprint == ref.weights_fingerprint
    assert no_network == []


def test_the_default_folder_is_used_only_when_it_holds_the_backbone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    ref = load_backbone("tiny-resnet", "random", seed=2)
    write_hub_layout(ref, tmp_path / "hub")
    [result] = fetch_weights(
        ["tiny-resnet"], fetcher=copying_fetcher({"tiny-resnet": tmp_path / "hub"})
    )
    assert result.path == tmp_path / "cache" / "weights" / "tiny-resnet"  # <cache root>/weights
    assert load_backbone("tiny-resnet", "pretrained").weights_fingerprint == ref.weights_fingerprint
    with pytest.raises(WeightsError, match="no pretrained weights"):  # the library's own path
        load_backbone("tiny-dinov2", "pretrained")
    # $PROGBENCH_WEIGHTS_DIR is the fetch default too, and then the only folder looked at.
    monkeypatch.setenv("PROGBENCH_WEIGHTS_DIR", str(tmp_path / "elsewhere"))
    [result] = fetch_weights(
        ["tiny-resnet"], fetcher=copying_fetcher({"tiny-resnet": tmp_path / "hub"})
    )
    assert result.path == tmp_path / "elsewhere" / "tiny-resnet"
    shutil.rmtree(result.path)
    with pytest.raises(WeightsError, match="not in the weights folder"):
        load_backbone("tiny-resnet", "pretrained")
    assert no_network == []


def test_a_backbone_missing_from_the_weights_folder_names_the_fetch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    root = tmp_path / "weights"
    _fetch_twins(["tiny-resnet"], root, tmp_path)
    for kwargs in ({"weights_dir": root}, {}):
        if not kwargs:
            monkeypatch.setenv("PROGBENCH_WEIGHTS_DIR", str(root))
        t0 = time.perf_counter()
        with pytest.raises(WeightsError) as err:
            load_backbone("dinov2-s", "pretrained", **kwargs)
        assert time.perf_counter() - t0 < 5
        assert f"not in the weights folder {root}" in err.value.message
        hint = err.value.hint or ""
        assert "`progbench weights fetch dinov2-s --to DIR`" in hint and f"{root}/" in hint
    with pytest.raises(WeightsError, match="does not exist"):
        load_backbone("dinov2-s", "pretrained", weights_dir=tmp_path / "nowhere")
    assert no_network == []


def test_weights_ls_reports_present_missing_and_changed_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "weights"
    _fetch_twins(["tiny-resnet", "tiny-dinov2"], root, tmp_path)
    rows = {r.backbone: r for r in weights_status(root)}
    assert list(rows)[: len(list_backbones())] == list_backbones()  # the registry, twins after
    assert all(not rows[n].present and rows[n].state == "missing" for n in list_backbones())
    for twin in ("tiny-resnet", "tiny-dinov2"):
        st = rows[twin]
        assert st.present and st.state == "ok" and not st.problems
        assert st.size == sum(p.stat().st_size for p in (root / twin).iterdir())
    assert "tiny-clip" not in rows  # twins only when the folder holds them

    weights = root / "tiny-dinov2" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes
    weights.write_bytes(bytes(data))
    st = {r.backbone: r for r in weights_status(root)}["tiny-dinov2"]
    assert st.state == "changed" and st.problems == [
        "model.safetensors: sha256 differs from weights.json"
    ]
    assert {r.backbone: r for r in weights_status(root, verify=False)}[
        "tiny-dinov2"
    ].state == "unchecked"

    code, out, err = _cli(["weights", "ls", str(root), "--json"], capsys)
    listed = {b["backbone"]: b for b in json.loads(out)["backbones"]}
    assert listed["tiny-resnet"]["state"] == "ok" and listed["resnet18"]["state"] == "missing"
    assert listed["tiny-dinov2"]["state"] == "changed"
    assert code != 0 and "tiny-dinov2" in err  # a changed folder fails the command
    code, out, _ = _cli(["weights", "ls", str(root)], capsys)
    assert "CHANGED" in out and "verified" in out and "missing" in out

    weights.write_bytes(bytes(data[:-10]))  # a truncated copy fails at load time, cheaply
    with pytest.raises(WeightsError, match="incomplete or changed"):
        load_backbone("tiny-dinov2", "pretrained", weights_dir=root)


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_fetch_keeps_a_verified_folder_refuses_a_changed_one_and_leaves_nothing_on_failure(
    tmp_path: Path,
) -> None:
    root = tmp_path / "weights"
    refs = _fetch_twins(["tiny-resnet"], root, tmp_path)
    fetcher = copying_fetcher({"tiny-resnet": tmp_path / "hub" / "tiny-resnet"})
    [again] = fetch_weights(["tiny-resnet"], root, fetcher=fetcher)
    assert again.status == "present"

    (root / "tiny-resnet" / "stray.txt").write_text("x")
    with pytest.raises(WeightsError, match="does not match") as err:
        fetch_weights(["tiny-resnet"], root, fetcher=fetcher)
    assert "--force" in (err.value.hint or "")
    [forced] = fetch_weights(["tiny-resnet"], root, fetcher=fetcher, force=True)
    assert forced.status == "fetched" and not (root / "tiny-resnet" / "stray.txt").exists()
    got = load_backbone("tiny-resnet", "pretrained", weights_dir=root)
    assert got.weights_fingerprint == refs["tiny-resnet"].weights_fingerprint

    def empty(spec: BackboneSpec, to_dir: Path) -> None:
        (to_dir / "README.md").write_text("no weights here")

    with pytest.raises(WeightsError, match="no checkpoint files"):
        fetch_weights(["tiny-densenet"], root, fetcher=empty)
    assert not (root / "tiny-densenet").exists()
    assert "tiny-densenet" not in read_manifest(root)
    assert [p.name for p in root.iterdir() if p.is_dir()] == ["tiny-resnet"]  # no temp folders


def test_groups_follow_the_registry() -> None:
    full = list_backbones()
    cnn = [n for n in full if get_backbone_spec(n).is_cnn]
    assert expand_backbones(["all"]) == full
    assert expand_backbones(["cnn"]) == cnn and "medclip-r50" in cnn
    assert expand_backbones(["fm"]) == [n for n in full if n not in cnn]
    assert expand_backbones(["dinov2-s", "fm", "resnet18"]) == [
        "dinov2-s",
        *[n for n in full if n not in cnn and n != "dinov2-s"],
        "resnet18",
    ]
    with pytest.raises(RegistryError, match="unknown backbone"):
        expand_backbones(["resnet-19"])


def test_fetch_asks_each_backbone_of_a_group_for_its_library_layout(tmp_path: Path) -> None:
    asked: list[str] = []

    def one_file(spec: BackboneSpec, to_dir: Path) -> None:
        asked.append(spec.name)
        (to_dir / "weights.pth").write_bytes(b"not really weights")

    results = fetch_weights(["cnn"], tmp_path / "w", fetcher=one_file)
    assert asked == [r.backbone for r in results] == expand_backbones(["cnn"])
    assert sorted(read_manifest(tmp_path / "w")) == sorted(asked)
    with pytest.raises(WeightsError, match=r"no config\.json"):  # a transformers folder needs one
        fetch_weights(["dinov2-s"], tmp_path / "w", fetcher=one_file)


def test_the_library_fetchers_write_the_layout_the_loader_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchvision's and MedCLIP's fetchers, with torch.hub's download function faked."""
    _online(monkeypatch)
    calls: list[tuple[str, str | None]] = []

    def fake_download(
        url: str, dst: str, hash_prefix: str | None = None, progress: bool = True
    ) -> None:
        calls.append((url, hash_prefix))
        if url.endswith(".zip"):  # MedCLIP's release: a folder with the whole model in it
            with zipfile.ZipFile(dst, "w") as zf:
                zf.writestr("medclip-pretrained/pytorch_model.bin", b"weights")
                zf.writestr("medclip-pretrained/../../evil.txt", b"never extracted")
        else:
            Path(dst).write_bytes(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    root = tmp_path / "w"
    fetch_weights(["resnet18", "medclip-r50"], root)
    assert calls[0] == ("https://download.pytorch.org/models/resnet18-f37072fd.pth", "f37072fd")
    assert [p.name for p in (root / "resnet18").iterdir()] == ["resnet18-f37072fd.pth"]
    assert [p.name for p in (root / "medclip-r50").iterdir()] == ["pytorch_model.bin"]
    assert read_manifest(root)["medclip-r50"]["files"]["pytorch_model.bin"]["size"] == 7
    assert not list(tmp_path.rglob("evil.txt"))


def test_fetch_refuses_offline_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set"):
        fetch_weights(["resnet18"], tmp_path / "w")


# `weights ls` and `weights fetch` of a folder already there read files and weights.json only;
# the last line of the script is what they loaded of these (seconds of imports, torch's alone).
HEAVY = ("torch", "torchvision", "transformers", "open_clip", "peft", "sklearn", "pandas")
IMPORTS_SCRIPT = f"""
import contextlib, io, json, sys
from progbench.cli import main

for args in (["weights", "ls", sys.argv[1]], ["weights", "fetch", "resnet18", "--to", sys.argv[1]]):
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            main(args)
    except SystemExit as exit_:
        assert not exit_.code, (args, exit_.code, out.getvalue())
    assert "resnet18" in out.getvalue(), out.getvalue()
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


@pytest.mark.slow  # a subprocess: a fresh interpreter is the only way to see what loads
def test_weights_ls_and_a_kept_fetch_load_no_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "w"

    def torchvision_file(spec: BackboneSpec, to_dir: Path) -> None:
        (to_dir / "resnet18-f37072fd.pth").write_bytes(b"not really weights")

    fetch_weights(["resnet18"], root, fetcher=torchvision_file)
    for var in network.OFFLINE_ENVS:  # the fetch must get past its offline-mode check
        monkeypatch.delenv(var, raising=False)
    r = subprocess.run(
        [sys.executable, "-c", IMPORTS_SCRIPT, str(root)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_hub_file_choice() -> None:
    hub = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "README.md"]
    assert pick_weight_files(hub) == ["config.json", "model.safetensors"]
    assert pick_weight_files(["config.json", "pytorch_model.bin"]) == [
        "config.json",
        "pytorch_model.bin",
    ]
    sharded = ["config.json", "model.safetensors.index.json"]
    sharded += ["model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"]
    assert pick_weight_files(sharded) == [
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    with pytest.raises(WeightsError, match="holds none of"):
        pick_weight_files(["config.json", "flax_model.msgpack"])
    clip = ["open_clip_config.json", "open_clip_pytorch_model.bin", "README.md"]
    assert pick_hub_files(clip) == clip[:2]
    assert pick_hub_files([*clip, "open_clip_model.safetensors"]) == [
        "open_clip_config.json",
        "open_clip_model.safetensors",
    ]


# ------------------------------------------------------------------------ failing fast offline

_FULL_SIZE = ["resnet18", "dinov2-s", "biomedclip", "medclip-r50"]  # one per library/format


@pytest.mark.parametrize("name", _FULL_SIZE)
def test_offline_mode_fails_at_once_without_any_network_call(
    name: str, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        load_backbone(name, "pretrained")
    assert time.perf_counter() - t0 < 5
    assert "HF_HUB_OFFLINE is set" in err.value.message
    hint = err.value.hint or ""
    assert f"`progbench weights fetch {name} --to DIR`" in hint and "--weights random" in hint
    assert no_network == []


@pytest.fixture
def unanswering_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Name lookups hang (a resolver that never answers), as on some cluster nodes."""
    release, asked = threading.Event(), []

    def hang(host: object, *args: object, **kwargs: object) -> None:
        asked.append(str(host))
        release.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    yield asked
    release.set()  # let the abandoned probe thread finish


@pytest.mark.slow
def test_an_unanswering_network_fails_within_the_probe_timeout(
    monkeypatch: pytest.MonkeyPatch, unanswering_dns: list[str]
) -> None:
    import huggingface_hub.constants

    for var in network.OFFLINE_ENVS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    t0 = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        load_backbone("dinov2-s", "pretrained")
    assert time.perf_counter() - t0 < 5  # the probe gives up after 3 s, DNS included
    assert "did not answer within 3 s" in err.value.message
    assert "progbench weights fetch dinov2-s" in (err.value.hint or "")
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match="did not answer"):  # same host: the probe's answer
        load_backbone("biomedclip", "pretrained")
    assert time.perf_counter() - t0 < 1
    assert unanswering_dns == ["huggingface.co"]


# ------------------------------------------------------------------------------- private APIs


@pytest.mark.parametrize("sym", PRIVATE_SYMBOLS, ids=lambda s: s.qualname)
def test_every_private_api_still_exists_with_the_parameters_we_pass(sym: PrivateSymbol) -> None:
    assert callable(resolve(sym))


def test_a_changed_private_api_names_library_version_and_symbol() -> None:
    from importlib.metadata import version

    gone = PrivateSymbol("open_clip_torch", "open_clip.model", "_no_such_builder", (), "a test")
    with pytest.raises(RegistryError) as err:
        resolve(gone)
    msg = err.value.message
    assert f"open_clip_torch {version('open_clip_torch')}" in msg
    assert "open_clip.model._no_such_builder" in msg
    changed = PrivateSymbol(
        "open_clip_torch",
        "open_clip.model",
        "_build_vision_tower",
        ("vision_cfg", "width"),
        "a test",
    )
    with pytest.raises(RegistryError, match="no longer takes width"):
        resolve(changed)


@pytest.mark.slow
def test_weights_dir_reaches_extract_and_every_unit_of_a_sweep(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_network: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from progbench.runs import iter_runs, read_run
    from tests.helpers.cohorts import write_cohort
    from tests.helpers.sweeps import write_sweep

    monkeypatch.setenv("PROGBENCH_WEIGHTS_DIR", "")  # restored after: --weights-dir sets it
    root = tmp_path / "weights"
    ref = _fetch_twins(["tiny-resnet"], root, tmp_path)["tiny-resnet"]
    manifest = write_cohort(tmp_path / "cohort", patients=20, size=40)
    extract = ["extract", str(manifest), "--backbone", "tiny-resnet", "--weights", "pretrained"]
    extract += ["--image-size", "32", "--device", "cpu"]
    code, _, err = _cli([*extract, "--weights-dir", str(tmp_path / "nowhere")], capsys)
    assert code != 0 and f"weights folder {tmp_path / 'nowhere'} does not exist" in err
    code, out, err = _cli([*extract, "--weights-dir", str(root)], capsys)
    assert code == 0, err
    assert re.match(r"extracted \d+ images", out)

    monkeypatch.setenv("PROGBENCH_WEIGHTS_DIR", "")
    study = tmp_path / "study"
    path = write_sweep(
        study, backbones=["tiny-resnet"], strategies=["lp"], fewshot=None,
        weights="pretrained", weights_dir=str(root),
    )  # fmt: skip
    code, _, err = _cli(["sweep", "run", str(path), "--workers", "1"], capsys)
    assert code == 0, err
    runs = [read_run(p) for p in iter_runs(study / "runs").done]
    assert len(runs) == 2  # 2 folds
    assert {r.spec.weights_fingerprint for r in runs} == {ref.weights_fingerprint}
    assert no_network == []
