"""The backbone and strategy registries: the YAML files, twins, user files and invalid files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from progbench.errors import RegistryError
from progbench.models.registry import (
    CONFIGS_DIR,
    MODELS_DIR_ENV,
    STRATEGIES_DIR_ENV,
    get_backbone_spec,
    get_strategy_spec,
    list_backbones,
    list_strategies,
    registry_fingerprint,
)
from tests.helpers.twins import STUDY_BACKBONES, TWINS

STUDY_STRATEGIES = [
    "lp",
    "fft",
    "lora-r4",
    "lora-r8",
    "lora-r16",
    "vera-r4",
    "vera-r8",
    "vera-r16",
    "bitfit",
    "ia3",
]
BASELINES = ["knn", "svm-rbf", "random-forest", "logreg"]  # scikit-learn on the features


def _raw(name: str) -> dict:
    return yaml.safe_load((CONFIGS_DIR / "models" / f"{name}.yaml").read_text())


def _write(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_listings_are_the_registry_in_display_order() -> None:
    """What `list_*` return, derived from the entries themselves: every full-size backbone by
    (order, name), twins after them, every strategy preset by (order, name). Adding a YAML
    file changes the lists, not this test."""
    full = [n for n in list_backbones(include_tiny=True) if not get_backbone_spec(n).tiny]
    specs = [get_backbone_spec(n) for n in full]
    assert list_backbones() == [s.name for s in sorted(specs, key=lambda s: (s.order, s.name))]
    assert list_backbones(include_tiny=True) == list_backbones() + TWINS
    strategies = [get_strategy_spec(n) for n in list_strategies()]
    assert [s.name for s in sorted(strategies, key=lambda s: (s.order, s.name))] == (
        list_strategies()
    )
    # The study's grid is registered (the registry may hold more), and displayed in its order.
    assert [b for b in list_backbones() if b in STUDY_BACKBONES] == STUDY_BACKBONES
    assert [s for s in list_strategies() if s in STUDY_STRATEGIES + BASELINES] == (
        STUDY_STRATEGIES + BASELINES
    )


@pytest.mark.parametrize("name", list_backbones(include_tiny=True))
def test_every_backbone_file_is_registered_under_its_name(name: str) -> None:
    spec = get_backbone_spec(name)
    assert spec.name == name and spec.encoder_params > 0 and spec.feature_dim > 0
    assert spec.tiny == (spec.twin_of is not None)  # a twin, and only a twin, names its base
    if spec.twin_of:
        assert not get_backbone_spec(spec.twin_of).tiny


def test_study_settings_are_in_the_presets() -> None:
    lora = get_strategy_spec("lora-r8")
    assert (lora.kind, lora.rank, lora.alpha, lora.dropout, lora.backbone_lr) == (
        "lora",
        8,
        1,
        0.1,
        1e-4,
    )
    vera = get_strategy_spec("vera-r16")
    assert (vera.kind, vera.rank, vera.dropout) == ("vera", 16, 0.1)
    assert get_strategy_spec("fft").backbone_lr == 1e-5
    assert get_strategy_spec("lp").backbone_lr is None


def test_twins_inherit_targets_but_not_identity() -> None:
    for twin, base in [("tiny-swin", "medclip-swin"), ("tiny-openclip", "biomedclip")]:
        t, b = get_backbone_spec(twin), get_backbone_spec(base)
        assert t.tiny and not b.tiny
        assert t.targets == b.targets
        assert (t.family, t.library, t.weights_format, t.mean, t.std) == (
            b.family,
            b.library,
            b.weights_format,
            b.mean,
            b.std,
        )
        assert t.hub_id is None and b.hub_id is not None  # a twin has no pretrained weights
        assert t.encoder_params < b.encoder_params
    assert get_backbone_spec("tiny-openclip").bf16_cast_weights


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(RegistryError) as err:
        get_backbone_spec("resnet19")
    assert "resnet19" in err.value.message and "resnet18" in (err.value.hint or "")
    with pytest.raises(RegistryError) as err:
        get_strategy_spec("lora-r32")
    assert "lora-r16" in (err.value.hint or "")


def test_a_user_adds_a_backbone_with_one_yaml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _raw("dinov2-s") | {"name": "my-dino", "description": "a user backbone", "order": 50}
    _write(tmp_path / "models", data)
    before = registry_fingerprint()
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "models"))
    assert get_backbone_spec("my-dino").feature_dim == 384
    assert "my-dino" in list_backbones()
    assert registry_fingerprint() != before


def _mutations() -> list[tuple[str, dict, str]]:
    base = _raw("dinov2-s") | {"name": "bad"}
    lora_no_modules = {**base["targets"], "lora": {"modules": []}}
    ff_not_subset = {**base["targets"], "ia3": {"modules": ["q_proj"], "feedforward": ["fc1"]}}
    both = {**base["targets"], "vera": {"modules": ["q_proj"], "not_applicable": "why"}}
    return [
        ("typo", base | {"feature_dims": 3}, "feature_dims"),
        ("no-lora-modules", base | {"targets": lora_no_modules}, "targets.lora"),
        ("ff-not-subset", base | {"targets": ff_not_subset}, "subset"),
        ("modules-and-reason", base | {"targets": both}, "not both"),
        ("library", base | {"library": "keras"}, "library"),
        ("arch-overrides", base | {"arch_overrides": {"layers": [1]}}, "arch_overrides"),
        (
            "projection",
            base | {"projection": {"in_features": 384, "out_features": 9}},
            "projection",
        ),
        ("std", base | {"std": [0.2, 0.0, 0.2]}, "std"),
        ("mean-length", base | {"mean": [0.5, 0.5]}, "mean"),
    ]


@pytest.mark.parametrize(("case", "data", "needle"), _mutations(), ids=[m[0] for m in _mutations()])
def test_an_invalid_backbone_file_is_rejected_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, data: dict, needle: str
) -> None:
    path = _write(tmp_path / "models", data)
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "models"))
    with pytest.raises(RegistryError) as err:
        list_backbones()
    assert str(path) in err.value.message
    assert needle in err.value.message
    assert err.value.hint  # points at the schema


def test_file_name_must_match_and_names_must_be_unique(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "other.yaml").write_text(yaml.safe_dump(_raw("resnet18") | {"name": "renamed"}))
    monkeypatch.setenv(MODELS_DIR_ENV, str(folder))
    with pytest.raises(RegistryError, match="renamed"):
        list_backbones()
    (folder / "other.yaml").unlink()
    _write(folder, _raw("resnet18"))
    with pytest.raises(RegistryError, match="defined twice"):
        list_backbones()


def test_a_twin_must_name_a_known_full_size_backbone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "models"
    _write(folder, {"name": "tiny-x", "twin_of": "nope", "tiny": True, "encoder_params": 5})
    monkeypatch.setenv(MODELS_DIR_ENV, str(folder))
    with pytest.raises(RegistryError, match="twin_of 'nope'"):
        list_backbones()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"name": "lora-x", "kind": "lora", "alpha": 1, "backbone_lr": 1e-4}, "rank"),
        ({"name": "lp-x", "kind": "lp", "rank": 4}, "rank"),
        ({"name": "ia3-x", "kind": "ia3", "dropout": 0.1, "backbone_lr": 1e-4}, "dropout"),
        ({"name": "fft-x", "kind": "fft"}, "backbone_lr"),
        ({"name": "dora", "kind": "dora", "backbone_lr": 1e-4}, "kind"),
    ],
)
def test_an_invalid_strategy_file_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: dict, needle: str
) -> None:
    _write(tmp_path / "strategies", data)
    monkeypatch.setenv(STRATEGIES_DIR_ENV, str(tmp_path / "strategies"))
    with pytest.raises(RegistryError, match=needle):
        list_strategies()


def test_a_user_strategy_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"name": "lora-r32", "kind": "lora", "rank": 32, "alpha": 32, "backbone_lr": 1e-4}
    _write(tmp_path / "strategies", data)
    monkeypatch.setenv(STRATEGIES_DIR_ENV, str(tmp_path / "strategies"))
    assert get_strategy_spec("lora-r32").rank == 32
    assert list_strategies()[-1] == "lora-r32"


def test_backbones_say_which_feature_variants_they_offer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vits = ("dinov2-s", "dinov2-b", "dinov2-l", "clip-l", "pubmedclip", "biomedclip")
    for name in STUDY_BACKBONES:
        want = ["cls1", "cls1+avg", "cls4", "cls4+avg"] if name in vits else ["cls1"]
        assert get_backbone_spec(name).variants.identity() == want, name
    bad = _raw("resnet18") | {"name": "resnet18-tokens", "variants": {"n_last_blocks": [1, 4]}}
    _write(tmp_path / "a", bad)
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "a"))
    with pytest.raises(RegistryError, match="torchvision CNNs have one feature"):
        get_backbone_spec("resnet18-tokens")
    no_cls1 = _raw("dinov2-s") | {"name": "dinov2-cls4", "variants": {"n_last_blocks": [4]}}
    _write(tmp_path / "b", no_cls1)
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "b"))
    with pytest.raises(RegistryError, match="must offer n_last_blocks 1 and avgpool false"):
        get_backbone_spec("dinov2-cls4")


def test_probe_presets_are_yaml_files_and_a_user_adds_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from progbench.config import Variant
    from progbench.config.probes import PROBES_DIR_ENV
    from progbench.errors import ConfigError
    from progbench.train.probe import ProbeConfig

    ref = ProbeConfig.preset("reference")
    assert (ref.solver, ref.lrs) == ("adam", (1e-2, 1e-3, 1e-4))
    assert [v.name for v in ref.variants] == ["cls1", "cls1+avg", "cls4", "cls4+avg"]
    assert ProbeConfig.preset("default").variants == (Variant(1, False),)
    _write(tmp_path, {"name": "quick", "weight_decays": [0.1], "variants": {"avgpool": [True]}})
    monkeypatch.setenv(PROBES_DIR_ENV, str(tmp_path))
    quick = ProbeConfig.preset("quick")
    assert quick.weight_decays == (0.1,) and quick.variants == (Variant(1, True),)
    _write(tmp_path, {"name": "typo", "weight_decay": [0.1]})
    with pytest.raises(ConfigError, match="weight_decay"):
        ProbeConfig.preset("typo")
