"""Loading encoders: random, PATH round trips per library family, MedCLIP checkpoints, strictness."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from progbench.errors import WeightsError
from progbench.models.loaders import LoadedBackbone, load_backbone, save_backbone
from tests.helpers.twins import TWINS


def _x(loaded: LoadedBackbone, batch: int = 2) -> torch.Tensor:
    size = loaded.spec.input_size
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def _out(loaded: LoadedBackbone) -> torch.Tensor:
    return loaded.encoder(_x(loaded))


@pytest.mark.parametrize("name", TWINS)
def test_random_weights_round_trip_through_a_path(name: str, tmp_path: Path) -> None:
    a = load_backbone(name, "random", seed=1)
    assert a.weights == "random" and not a.encoder.training
    out = _out(a)
    assert out.shape == (2, a.spec.feature_dim)
    assert sum(p.numel() for p in a.encoder.parameters()) == a.spec.encoder_params
    assert load_backbone(name, "random", seed=1).weights_fingerprint == a.weights_fingerprint
    assert load_backbone(name, "random", seed=2).weights_fingerprint != a.weights_fingerprint

    saved = save_backbone(a, tmp_path / name)  # the library's own layout
    b = load_backbone(name, str(saved))
    assert b.weights == str(saved)
    assert b.weights_fingerprint == a.weights_fingerprint
    assert torch.equal(_out(b), out)
    with pytest.raises(WeightsError, match="already exists"):
        save_backbone(a, saved)


# transformers 5 names -> the 4.x names of MedCLIP's Swin checkpoint (written out by hand, so the
# test does not reuse the conversion table the loader relies on).
_SWIN_5_TO_4 = [
    (
        "attention.relative_position_bias.relative_position_bias_table",
        "attention.self.relative_position_bias_table",
    ),
    ("attention.q_proj", "attention.self.query"),
    ("attention.k_proj", "attention.self.key"),
    ("attention.v_proj", "attention.self.value"),
    ("attention.o_proj", "attention.output.dense"),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense"),
]


def _medclip_text_tower() -> dict[str, torch.Tensor]:
    return {
        "text_model.model.embeddings.word_embeddings.weight": torch.randn(10, 4),
        "text_model.projection_head.weight": torch.randn(4, 4),
        "logit_scale": torch.tensor(2.6592),
    }


def _medclip_swin_checkpoint(loaded: LoadedBackbone) -> dict[str, torch.Tensor]:
    sd = {}
    for k, v in loaded.encoder.state_dict().items():
        for new, old in _SWIN_5_TO_4:
            k = k.replace(new, old)
        sd[f"vision_model.{k}"] = v.clone()
    # 4.x saved the relative position index as a persistent buffer.
    for k in [k for k in sd if k.endswith("relative_position_bias_table")]:
        sd[k.replace("relative_position_bias_table", "relative_position_index")] = torch.zeros(
            16, 16, dtype=torch.long
        )
    assert any(".attention.self.query." in k for k in sd)
    return sd | _medclip_text_tower()


def test_medclip_swin_release_checkpoint_with_4x_keys(tmp_path: Path) -> None:
    ref = load_backbone("tiny-swin", "random", seed=3)
    folder = tmp_path / "medclip-vit-pretrained"
    folder.mkdir()
    torch.save(_medclip_swin_checkpoint(ref), folder / "pytorch_model.bin")
    for weights in (folder, folder / "pytorch_model.bin"):  # the unzipped folder, or the file
        got = load_backbone("tiny-swin", str(weights))
        assert got.weights_fingerprint == ref.weights_fingerprint
        assert torch.equal(_out(got), _out(ref))


def test_medclip_resnet_release_checkpoint(tmp_path: Path) -> None:
    ref = load_backbone("tiny-medclip-r50", "random", seed=3)
    sd = {f"vision_model.model.{k}": v for k, v in ref.encoder.state_dict().items()}
    assert "vision_model.model.fc.weight" in sd  # MedCLIP's projection is resnet's fc
    torch.save(sd | _medclip_text_tower(), tmp_path / "pytorch_model.bin")
    got = load_backbone("tiny-medclip-r50", str(tmp_path / "pytorch_model.bin"))
    assert torch.equal(_out(got), _out(ref))


def test_medclip_checkpoint_loading_is_strict(tmp_path: Path) -> None:
    ref = load_backbone("tiny-swin", "random")
    sd = _medclip_swin_checkpoint(ref)
    del sd["vision_model.projection_head.weight"]
    sd["vision_model.extra_head.weight"] = torch.zeros(2)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsError, match=r"vision_model\.model\.\* and") as err:
        load_backbone("tiny-swin", str(tmp_path))
    assert "extra_head.weight" in err.value.message
    sd = _medclip_swin_checkpoint(ref)
    del sd["vision_model.model.layernorm.weight"]
    torch.save(sd, tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsError, match=r"1 missing keys: layernorm\.weight"):
        load_backbone("tiny-swin", str(tmp_path))


@pytest.mark.parametrize("name", ["tiny-resnet", "tiny-openclip", "tiny-dinov2"])
def test_strict_loading_lists_missing_and_unexpected_keys(name: str, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    loaded = load_backbone(name, "random")
    sd = dict(loaded.encoder.state_dict())
    if name == "tiny-dinov2":  # a transformers state dict has the model's own key names
        sd = dict(loaded.encoder.model.state_dict())
    dropped = sorted(sd)[3]
    del sd[dropped]
    sd["not.a.weight"] = torch.zeros(1)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError) as err:
        load_backbone(name, str(tmp_path / "w.safetensors"))
    msg = err.value.message
    assert "missing" in msg and dropped.split(".")[-1] in msg
    assert "unexpected" in msg and "not.a.weight" in msg


def test_shape_mismatch_is_reported(tmp_path: Path) -> None:
    loaded = load_backbone("tiny-densenet", "random")
    sd = dict(loaded.encoder.state_dict())
    sd["features.conv0.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(WeightsError, match=r"wrong shape keys: features\.conv0\.weight"):
        load_backbone("tiny-densenet", str(tmp_path / "w.pth"))


def test_torchvision_checkpoints_drop_the_imagenet_classifier_and_fix_old_densenet_keys(
    tmp_path: Path,
) -> None:
    ref = load_backbone("tiny-densenet", "random", seed=4)
    sd = {}
    for k, v in ref.encoder.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue  # old checkpoints predate BatchNorm's step counter
        # torchvision's oldest DenseNet checkpoints say 'norm.1' / 'conv.2' for 'norm1' / 'conv2'.
        for new, old in (("norm1", "norm.1"), ("conv2", "conv.2")):
            if ".denselayer" in k:
                k = k.replace(f".{new}.", f".{old}.")
        sd[k] = v
    sd["classifier.weight"], sd["classifier.bias"] = torch.zeros(1000, 32), torch.zeros(1000)
    torch.save({"state_dict": sd}, tmp_path / "densenet.pth")
    got = load_backbone("tiny-densenet", str(tmp_path / "densenet.pth"))
    assert got.weights_fingerprint == ref.weights_fingerprint


def test_a_whole_clip_model_directory_loads_its_image_tower(tmp_path: Path) -> None:
    from transformers import CLIPConfig, CLIPModel

    spec = load_backbone("tiny-clip", "random").spec
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    clip = CLIPModel(
        CLIPConfig(vision_config=spec.config_overrides, text_config=text, projection_dim=8)
    )
    clip.save_pretrained(tmp_path / "clip")
    got = load_backbone("tiny-clip", str(tmp_path / "clip"))
    with torch.no_grad():
        want = clip.vision_model(pixel_values=_x(got)).pooler_output
    assert torch.equal(_out(got), want)


def test_a_directory_of_another_architecture_is_refused(tmp_path: Path) -> None:
    from transformers import Dinov2Config, Dinov2Model

    cfg = dict(load_backbone("tiny-dinov2", "random").spec.config_overrides, hidden_size=48)
    Dinov2Model(Dinov2Config(**cfg)).save_pretrained(tmp_path / "d")
    with pytest.raises(WeightsError, match="hidden_size=48"):
        load_backbone("tiny-dinov2", str(tmp_path / "d"))


def test_old_transformers_key_names_in_a_file_are_converted(tmp_path: Path) -> None:
    ref = load_backbone("tiny-dinov2", "random", seed=5)
    renames = {
        "attention.q_proj": "attention.attention.query",
        "attention.k_proj": "attention.attention.key",
        "attention.v_proj": "attention.attention.value",
        "attention.o_proj": "attention.output.dense",
    }
    sd = {}
    for k, v in ref.encoder.model.state_dict().items():
        for new, old in renames.items():
            k = k.replace(new, old)
        sd[k] = v
    torch.save(sd, tmp_path / "dinov2.bin")
    assert load_backbone("tiny-dinov2", str(tmp_path / "dinov2.bin")).weights_fingerprint == (
        ref.weights_fingerprint
    )


class _NotATensor:
    pass


def test_pickled_objects_are_never_unpickled(tmp_path: Path) -> None:
    torch.save({"conv1.weight": torch.zeros(1), "evil": _NotATensor()}, tmp_path / "w.pt")
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_backbone("tiny-resnet", str(tmp_path / "w.pt"))


def test_bad_weights_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROGBENCH_WEIGHTS_DIR", raising=False)  # no weights folder applies
    monkeypatch.setenv("PROGBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsError, match="neither 'pretrained', 'random' nor an existing path"):
        load_backbone("tiny-resnet", str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError, match="no pretrained weights"):
        load_backbone("tiny-resnet", "pretrained")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no checkpoint files"):
        load_backbone("tiny-resnet", str(tmp_path / "empty"))
    with pytest.raises(WeightsError, match=r"no config\.json"):
        load_backbone("tiny-dinov2", str(tmp_path / "empty"))


def _offline(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("[Errno -2] Name or service not known")


def _assert_offline_message(err: pytest.ExceptionInfo[WeightsError]) -> None:
    assert "could not" in err.value.message
    hint = err.value.hint or ""
    assert "--weights PATH" in hint and "--weights random" in hint


def test_unreachable_pretrained_weights_say_how_to_go_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each library's download fails after the connectivity probe said the host answers."""
    import huggingface_hub.constants
    import open_clip.pretrained
    import torchvision.models as tvm
    import transformers

    from progbench.models.sources import network

    for var in network.OFFLINE_ENVS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(network, "unreachable_reason", lambda url: None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("PROGBENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("PROGBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tvm.ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict", _offline)
    with pytest.raises(WeightsError) as err:
        load_backbone("resnet18", "pretrained")
    _assert_offline_message(err)
    assert "download.pytorch.org" in (err.value.hint or "")

    def no_hub(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.Dinov2Model, "from_pretrained", no_hub)
    with pytest.raises(WeightsError) as err:
        load_backbone("dinov2-s", "pretrained")
    _assert_offline_message(err)
    assert "facebook/dinov2-small" in (err.value.hint or "")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_hf", no_hub)
    with pytest.raises(WeightsError) as err:
        load_backbone("biomedclip", "pretrained")
    _assert_offline_message(err)

    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)
    with pytest.raises(WeightsError) as err:
        load_backbone("medclip-swin", "pretrained")
    _assert_offline_message(err)
    assert "medclip-vit-pretrained.zip" in (err.value.hint or "")
