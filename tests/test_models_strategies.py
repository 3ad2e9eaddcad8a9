"""Strategies on the tiny twins: one training step per applicable cell, accounting, adapter I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from progbench.errors import (
    NotApplicableError,
    ProgbenchError,
    RegistryError,
    RunError,
    WeightsError,
)
from progbench.models.loaders import load_backbone
from progbench.models.matrix import compute_matrix
from progbench.models.params import count_parameters
from progbench.models.registry import (
    CONFIGS_DIR,
    MODELS_DIR_ENV,
    get_backbone_spec,
    get_strategy_spec,
    list_strategies,
)
from progbench.models.strategies import (
    HEAD_NAME,
    ClassifierModel,
    build_classifier,
    get_strategy,
    resolve,
)
from progbench.models.strategies.files import load_trained, save_trained
from tests.helpers.twins import TWINS

# Module fixtures build cohorts, trees or reports: on one xdist worker, so built once.
pytestmark = pytest.mark.xdist_group("test_models_strategies")

# Strategies that build a torch classifier (the scikit-learn ones: tests/test_sklearn_baselines.py).
CELLS = [(b, s) for b in TWINS for s in list_strategies() if get_strategy(s).counts_parameters]


def _batch(model: ClassifierModel, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    size = model.spec.input_size
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 2


def _bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.endswith(("running_mean", "running_var"))
    }


@pytest.fixture(scope="module")
def meta_matrix():
    """The twins' rows of `progbench models`, counted on the meta device."""
    return compute_matrix(TWINS, use_cache=False)


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "strategy"), CELLS, ids=[f"{b}-{s}" for b, s in CELLS])
def test_one_cell(backbone: str, strategy: str, meta_matrix) -> None:
    loaded = load_backbone(backbone, "random", seed=0)
    res = resolve(loaded.spec, get_strategy_spec(strategy), loaded.encoder)
    cell = meta_matrix.cell(backbone, strategy)
    if not res.applicable:  # n/a with the registry's reason, in the matrix and when building
        assert res.reason and not cell.applicable and cell.reason == res.reason
        with pytest.raises(NotApplicableError) as refused:
            build_classifier(loaded, strategy)
        assert res.reason in refused.value.message
        return

    model = build_classifier(loaded, strategy, num_classes=2, seed=0)
    kind = model.strategy.kind

    # Accounting: peft's own count for the adapted backbone, plus the head; the meta-device
    # matrix agrees with the real model.
    counts = count_parameters(model)
    head = sum(p.numel() for p in model.head_parameters())
    if model.strategy.uses_peft:
        peft_trainable, peft_total = model.backbone.get_nb_trainable_parameters()
        assert (counts.trainable, counts.total) == (peft_trainable + head, peft_total + head)
        assert count_parameters(model.backbone).trainable == peft_trainable
    assert (cell.trainable, cell.total) == (counts.trainable, counts.total)
    assert counts.percent == pytest.approx(100 * counts.trainable / counts.total)
    assert counts.trainable == head + sum(p.numel() for p in model.backbone_parameters())
    if kind == "lp":
        assert model.backbone_parameters() == []
    if kind == "fft":
        frozen = {n for n, p in loaded.encoder.named_parameters() if not p.requires_grad}
        assert frozen == set(loaded.spec.unused_parameters)

    # One optimiser step. LoRA's B and VeRA's lambda_b start at zero by design, which hides their
    # partners (A, lambda_d) from the gradient of a first step; give every all-zero trainable
    # tensor small values first, so that one step shows each trainable tensor is wired into the
    # forward pass. Frozen tensors must get no gradient and stay exactly as they were.
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in trainable.values():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = _bn_buffers(model)
    opt = torch.optim.SGD(trainable.values(), lr=0.5)
    # Stochastic depth (Swin's drop_path) drops a block for a whole sample: with 8 samples and a
    # seeded generator, every block takes part in the step.
    x, y = _batch(model, n=8)
    model.train()
    torch.manual_seed(0)
    logits = model(x)
    assert logits.shape == (8, 2)
    nn.functional.cross_entropy(logits, y).backward()
    no_grad = [n for n, p in trainable.items() if p.grad is None or not p.grad.any()]
    assert not no_grad, f"trainable tensors without gradient: {no_grad}"
    opt.step()
    for n, p in model.named_parameters():
        if n not in trainable:
            assert p.grad is None and torch.equal(p, before[n]), f"frozen {n} changed"
    assert sum(not torch.equal(p, before[n]) for n, p in trainable.items()) > 0
    assert any(n.startswith(f"{HEAD_NAME}.") for n in trainable)
    if kind != "fft":  # frozen BatchNorm statistics are part of the frozen backbone
        assert all(torch.equal(v, _bn_buffers(model)[k]) for k, v in stats.items())


def test_the_head_name_is_unique_in_every_backbone() -> None:
    for name in TWINS:
        enc = load_backbone(name, "random").encoder
        assert not any(HEAD_NAME in n for n, _ in enc.named_modules())
    # open_clip's tower has its own `.head`: which is why ours is not called that.
    assert "head" in dict(load_backbone("tiny-openclip", "random").encoder.named_modules())


def test_resolution_without_an_encoder_names_the_targets() -> None:
    spec = get_backbone_spec("medclip-swin")
    res = resolve(spec, get_strategy_spec("ia3"))
    assert res.applicable and not res.checked
    assert res.target_modules == ["q_proj", "v_proj", "o_proj", "fc1", "fc2"]
    assert res.feedforward_modules == ["fc1", "fc2"]
    res = resolve(get_backbone_spec("medclip-r50"), get_strategy_spec("vera-r8"))
    assert not res.applicable and "projection" in (res.reason or "")


def test_resolution_with_an_encoder_names_the_modules() -> None:
    loaded = load_backbone("tiny-dinov2", "random")
    res = resolve(loaded.spec, get_strategy_spec("lora-r4"), loaded.encoder)
    assert res.checked
    assert "model.encoder.layer.0.attention.q_proj" in res.matched_modules
    assert len(res.matched_modules) == 2 * 5  # two layers x (q, k, v, fc1, fc2)
    res = resolve(loaded.spec, get_strategy_spec("bitfit"), loaded.encoder)
    assert res.trainable_parameters and all(n.endswith(".bias") for n in res.trainable_parameters)


def _user_twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str, targets: dict) -> str:
    raw = yaml.safe_load((CONFIGS_DIR / "models" / "tiny-dinov2.yaml").read_text())
    if base == "resnet18":
        raw = yaml.safe_load((CONFIGS_DIR / "models" / "tiny-resnet.yaml").read_text())
    raw |= {"name": "tiny-user", "targets": targets}
    (tmp_path / "tiny-user.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    return "tiny-user"


def test_a_target_that_matches_nothing_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets = {
        "lora": {"modules": ["query", "value"]},  # transformers 4.x names: gone in 5.x
        "vera": {"modules": ["q_proj"]},
        "ia3": {"modules": ["q_proj"]},
    }
    name = _user_twin(tmp_path, monkeypatch, "dinov2-s", targets)
    with pytest.raises(RegistryError, match="target 'query' matches no module") as err:
        build_classifier(load_backbone(name, "random"), "lora-r4")
    assert "q_proj" in (err.value.hint or "")  # the hint shows real module names


def test_a_target_of_the_wrong_layer_type_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets = {
        "lora": {"modules": ["conv1"]},
        "vera": {"modules": ["conv1"]},  # VeRA cannot adapt Conv2d
        "ia3": {"modules": ["conv1"]},
    }
    name = _user_twin(tmp_path, monkeypatch, "resnet18", targets)
    with pytest.raises(RegistryError, match="Conv2d modules, which vera cannot adapt") as err:
        build_classifier(load_backbone(name, "random"), "vera-r4")
    assert "not_applicable" in (err.value.hint or "")


def test_an_encoder_is_used_by_one_classifier_only() -> None:
    loaded = load_backbone("tiny-dinov2", "random")
    build_classifier(loaded, "lora-r4")
    with pytest.raises(ProgbenchError, match="already part of a classifier"):
        build_classifier(loaded, "ia3")


def test_seeded_builds_are_reproducible() -> None:
    a = build_classifier(load_backbone("tiny-clip", "random"), "lora-r8", seed=7)
    b = build_classifier(load_backbone("tiny-clip", "random"), "lora-r8", seed=7)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert na == nb and torch.equal(pa, pb)


def _train_step(model: ClassifierModel) -> None:
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x, y = _batch(model)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


IO_CASES = [
    ("tiny-dinov2", "lp"),
    ("tiny-dinov2", "fft"),
    ("tiny-dinov2", "lora-r4"),
    ("tiny-swin", "vera-r4"),
    ("tiny-openclip", "ia3"),
    ("tiny-resnet", "bitfit"),
    ("tiny-resnet", "lora-r4"),
]


@pytest.mark.parametrize(("backbone", "strategy"), IO_CASES, ids=[f"{b}-{s}" for b, s in IO_CASES])
def test_saved_models_load_back_identically(backbone: str, strategy: str, tmp_path: Path) -> None:
    model = build_classifier(load_backbone(backbone, "random", seed=1), strategy, seed=0)
    _train_step(model)
    model.eval()
    x, _ = _batch(model, 3)
    with torch.no_grad():
        want = model(x)
    save_trained(model, tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert "progbench_model.json" in files and not any(f.startswith(".") for f in files)
    assert all(f.endswith((".safetensors", ".json")) for f in files)

    got = load_trained(tmp_path / "m", load_backbone(backbone, "random", seed=1), strategy)
    assert not got.training and not any(p.requires_grad for p in got.parameters())
    with torch.no_grad():
        assert torch.equal(got(x), want)

    if model.strategy.uses_peft:
        # The adapter folder is peft's own layout: plain PeftModel.from_pretrained reads it.
        from peft import PeftModel
        from safetensors.torch import load_file

        assert {
            "adapter_config.json",
            "adapter_model.safetensors",
            "progbench_head.safetensors",
        } <= files
        enc = load_backbone(backbone, "random", seed=1).encoder
        peft_model = PeftModel.from_pretrained(enc, str(tmp_path / "m")).eval()
        head = nn.Linear(model.spec.feature_dim, 2)
        head.load_state_dict(
            {
                k.split(".")[-1]: v
                for k, v in load_file(tmp_path / "m" / "progbench_head.safetensors").items()
            }
        )
        with torch.no_grad():
            assert torch.equal(head(peft_model(x)), want)

    with pytest.raises(RunError, match="not overwriting"):
        save_trained(model, tmp_path / "m")
    with pytest.raises(WeightsError, match="trained on backbone weights"):
        load_trained(tmp_path / "m", load_backbone(backbone, "random", seed=2), strategy)
    with pytest.raises(RunError, match="holds"):
        load_trained(
            tmp_path / "m",
            load_backbone(backbone, "random", seed=1),
            "ia3" if strategy != "ia3" else "lp",
        )


def test_a_head_on_a_feature_variant_reads_the_tokens_and_reloads(tmp_path: Path) -> None:
    """LoRA on tiny-dinov2 with the head on cls2+avg: the head's input is the class tokens of
    both blocks and the patch mean, by hand from the hidden states; save and load keep it."""
    import json

    from progbench.config import Variant
    from progbench.models.strategies import get_strategy

    strategy = get_strategy("lora-r4").with_variant(Variant(2, True))
    model = strategy.build(load_backbone("tiny-dinov2", "random", seed=1), seed=0)
    assert (
        model.progbench_head.in_features == 3 * 32
        and model.describe()["head_variant"] == "cls2+avg"
    )
    _train_step(model)
    model.eval()
    x, _ = _batch(model, 3)
    with torch.no_grad():
        hf = model.backbone.get_base_model().model  # the adapted Dinov2Model
        hidden = hf(pixel_values=x, output_hidden_states=True).hidden_states
        norm = hf.layernorm
        tokens = [norm(hidden[1])[:, 0], norm(hidden[2])[:, 0], norm(hidden[2])[:, 1:].mean(1)]
        want = model.progbench_head(torch.cat(tokens, 1))
        assert torch.allclose(model(x), want, atol=1e-6)
    save_trained(model, tmp_path / "m")
    info = json.loads((tmp_path / "m" / "progbench_model.json").read_text())
    assert info["head_variant"] == "cls2+avg"
    got = load_trained(tmp_path / "m", load_backbone("tiny-dinov2", "random", seed=1), "lora-r4")
    assert got.variant == Variant(2, True)
    with torch.no_grad():
        assert torch.equal(got(x), model(x))


def test_a_model_saved_before_head_variants_loads_with_the_cls1_head(tmp_path: Path) -> None:
    import json

    model = build_classifier(load_backbone("tiny-clip", "random", seed=1), "bitfit", seed=0)
    save_trained(model, tmp_path / "m")
    info_file = tmp_path / "m" / "progbench_model.json"
    info = json.loads(info_file.read_text())
    del info["head_variant"]  # what an older progbench wrote
    info_file.write_text(json.dumps(info))
    got = load_trained(tmp_path / "m", load_backbone("tiny-clip", "random", seed=1), "bitfit")
    x, _ = _batch(model, 2)
    with torch.no_grad():
        assert got.variant.is_default and torch.equal(got(x), model.eval()(x))
