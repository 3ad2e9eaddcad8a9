"""Every backbone of the registry built and checked against its YAML (full-size ones weightless,
tiny twins for real), and the `progbench models` matrix: a cell per (backbone, strategy) of the
registry, whatever it holds."""

from __future__ import annotations

import contextlib
import copy
import gc
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from progbench.cli import app, main
from progbench.config import BackboneSpec
from progbench.models.encoders import build_weightless, weightless
from progbench.models.loaders import LoadedBackbone, random_encoder
from progbench.models.params import count_parameters
from progbench.models.registry import (
    get_backbone_spec,
    get_strategy_spec,
    list_backbones,
    list_strategies,
)
from progbench.models.strategies import build_classifier, get_strategy, resolve
from tests.helpers.twins import TWINS

# Encoder parameter counts measured on this stack (docs/shared BACKBONES.md), in millions.
REFERENCE_PARAMS_M = {
    "resnet18": 11.18,
    "resnet50": 23.51,
    "densenet121": 6.95,
    "dinov2-s": 22.06,
    "dinov2-b": 86.58,
    "dinov2-l": 304.37,
    "clip-l": 303.18,
    "medclip-r50": 24.56,
    "medclip-swin": 27.91,
    "pubmedclip": 87.46,
    "biomedclip": 86.19,
}


def _build(spec: BackboneSpec) -> tuple[nn.Module, str]:
    """A full-size backbone weightless (the build `progbench models` uses; its equivalence with
    a real build is the test after this one), a tiny twin for real, with random weights."""
    if spec.tiny:
        return random_encoder(spec, seed=0), "cpu"
    return build_weightless(spec), "meta"


@pytest.mark.slow
@pytest.mark.parametrize("name", list_backbones(include_tiny=True))
def test_every_backbone_builds_as_its_yaml_says(name: str) -> None:
    """Each backbone of the registry, whatever folder it came from: it builds, its size is its
    YAML's `encoder_params` (and, for the study's, the independently measured count), a forward
    pass gives `feature_dim`, and every strategy either applies, its adapter targets matching
    real modules, or is n/a with a reason."""
    spec = get_backbone_spec(name)
    encoder, device = _build(spec)
    n = sum(p.numel() for p in encoder.parameters())
    assert n == spec.encoder_params
    if name in REFERENCE_PARAMS_M:
        assert abs(n / 1e6 - REFERENCE_PARAMS_M[name]) <= 0.03 * REFERENCE_PARAMS_M[name]
    modules = dict(encoder.named_modules())
    for s in list_strategies():
        res = resolve(spec, get_strategy_spec(s), encoder)
        if not res.applicable:
            assert res.reason and res.reason.strip(), s  # n/a always says why
            continue
        assert res.checked, s
        if res.target_modules:  # peft kinds: each target matches real modules
            assert res.matched_modules and set(res.matched_modules) <= set(modules), s
        assert set(res.trainable_parameters) <= {p for p, _ in encoder.named_parameters()}, s
    # The feature dimension, from a forward pass at the registry's input size (on the meta
    # device: shapes only).
    with torch.no_grad():
        x = torch.zeros(1, 3, spec.input_size, spec.input_size, device=device)
        out = encoder.eval()(x)
    assert tuple(out.shape) == (1, spec.feature_dim)
    gc.collect()


def test_the_reference_counts_name_registered_backbones() -> None:
    assert set(REFERENCE_PARAMS_M) <= set(list_backbones())  # no reference check goes unused


def _described(
    spec: BackboneSpec, encoder: nn.Module, context: Callable[[], AbstractContextManager[Any]]
) -> dict[str, Any]:
    """What `progbench models` and the test above read of an encoder: its tensors (name, shape,
    dtype), and per strategy (one of each kind) the resolution and the 2-way classifier's
    tensors and parameter counts."""
    tensors = [(k, tuple(v.shape), v.dtype) for k, v in encoder.state_dict().items()]
    out: dict[str, Any] = {"tensors": tensors}
    for s in ONE_PER_KIND:
        fresh = copy.deepcopy(encoder)  # a classifier changes its encoder in place
        res = resolve(spec, get_strategy_spec(s), fresh)
        counts = None
        if res.applicable and get_strategy(s).counts_parameters:
            with context():
                model = build_classifier(LoadedBackbone(fresh, spec, "random", "-"), s)
            counts = (
                count_parameters(model),
                [(k, v.shape) for k, v in model.state_dict().items()],
            )
        out[s] = (res, counts)
    return out


# Every source (torchvision, transformers, open_clip over timm, both MedCLIP formats) through
# its tiny twin, and two full-size models.
EQUIVALENCE = ["resnet18", "dinov2-s", *TWINS]


def _first_of_each_kind() -> list[str]:
    first: dict[str, str] = {}
    for s in list_strategies():
        first.setdefault(get_strategy_spec(s).kind, s)
    return list(first.values())


ONE_PER_KIND = _first_of_each_kind()  # lp, fft, lora-r4, vera-r4, bitfit, ia3, knn


@pytest.mark.slow
@pytest.mark.parametrize("name", EQUIVALENCE)
def test_a_weightless_build_describes_the_model_as_a_real_build_does(name: str) -> None:
    spec = get_backbone_spec(name)
    real = _described(spec, random_encoder(spec), contextlib.nullcontext)
    meta = _described(spec, build_weightless(spec), weightless)
    assert meta == real
    assert real["tensors"] and any(real[s][1] for s in ONE_PER_KIND)  # something counted
    gc.collect()


@pytest.mark.slow
def test_models_command_prints_every_cell(cache_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{") :])
    assert [b["name"] for b in data["backbones"]] == list_backbones()
    assert data["strategies"] == list_strategies()
    cells = data["cells"]
    # One cell per (backbone, strategy) of the registry, in its order.
    assert [(c["backbone"], c["strategy"]) for c in cells] == [
        (b, s) for b in list_backbones() for s in list_strategies()
    ]
    assert set(cells[0]) == {
        "backbone",
        "strategy",
        "applicable",
        "reason",
        "trainable",
        "total",
        "percent",
    }
    for c in cells:
        res = resolve(get_backbone_spec(c["backbone"]), get_strategy_spec(c["strategy"]))
        assert (c["applicable"], c["reason"]) == (res.applicable, res.reason)
        if not c["applicable"]:
            assert c["reason"] and c["percent"] is None
        elif not get_strategy(c["strategy"]).counts_parameters:
            assert c["trainable"] is c["percent"] is None  # applies, not counted: `-`
        else:
            assert 0 < c["trainable"] <= c["total"]
            assert c["percent"] == pytest.approx(100 * c["trainable"] / c["total"])
    by = {(c["backbone"], c["strategy"]): c for c in cells}
    assert by[("dinov2-s", "lp")]["trainable"] == 384 * 2 + 2  # the 2-way head only
    assert (
        by[("resnet50", "fft")]["total"]
        == get_backbone_spec("resnet50").encoder_params + 2048 * 2 + 2
    )
    for b in data["backbones"]:
        assert b["encoder_params"] == b["expected_params"]
    # The feature dimension per variant: a dinov2-s store row holds 1920 numbers, no head reads
    # 1920 unless it takes every variant's tokens.
    dims = {b["name"]: b["feature_dims"] for b in data["backbones"]}
    assert dims["resnet18"] == "512"
    assert dims["dinov2-s"].startswith("cls1 384, ") and "1920" in dims["dinov2-s"]
    # LoRA grows with the rank; VeRA barely does (its projections are shared, frozen buffers).
    lora = [by[("dinov2-b", f"lora-r{r}")]["trainable"] for r in (4, 8, 16)]
    vera = [by[("dinov2-b", f"vera-r{r}")]["trainable"] for r in (4, 8, 16)]
    assert lora[0] < lora[1] < lora[2] and vera[2] - vera[0] < 0.05 * vera[0]
    assert any(cache_dir.rglob("*.json"))  # rows were cached

    # Some rows only (the demo uses this); the table view with the n/a reasons.
    result = runner.invoke(app, ["models", "--backbone", "resnet18,dinov2-s"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "resnet18" in out and "dinov2-s" in out and "densenet121" not in out
    assert "cls1 384" in " ".join(out.split())
    assert "n/a: resnet18 x vera-r4, vera-r8, vera-r16: VeRA adapts only nn.Linear" in " ".join(
        out.split()
    )
    md = runner.invoke(app, ["models", "--backbone", "medclip-r50", "--markdown"]).stdout
    assert "| medclip-r50 |" in md and "n/a" in md


def test_models_command_rejects_unknown_backbones(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "--backbone", "resnet18,vit-huge"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown backbone 'vit-huge'" in err and "biomedclip" in err
