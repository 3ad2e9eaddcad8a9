"""Full-size architectures and the `progbench models` matrix (11 backbones x 10 strategies, plus
the 4 scikit-learn baselines)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from progbench.cli import app, main
from progbench.models.loaders import random_encoder
from progbench.models.registry import (
    get_backbone_spec,
    get_strategy_spec,
    list_backbones,
    list_strategies,
)
from progbench.models.strategies import resolve

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
CNNS = ["resnet18", "resnet50", "densenet121", "medclip-r50"]
BASELINES = {"knn", "svm-rbf", "random-forest", "logreg"}  # applicable, parameters not counted


@pytest.mark.slow
def test_full_size_encoders_match_the_registry_and_the_reference() -> None:
    """Build each full-size architecture (random weights, one at a time) and check its size,
    its feature dimension and that every adapter target matches its modules."""
    assert sorted(list_backbones()) == sorted(REFERENCE_PARAMS_M)
    for name in list_backbones():
        spec = get_backbone_spec(name)
        encoder = random_encoder(spec)
        n = sum(p.numel() for p in encoder.parameters())
        assert n == spec.encoder_params, name
        assert abs(n / 1e6 - REFERENCE_PARAMS_M[name]) <= 0.03 * REFERENCE_PARAMS_M[name], name
        for s in list_strategies():
            res = resolve(spec, get_strategy_spec(s), encoder)
            assert res.applicable == (not (name in CNNS and s.startswith("vera"))), (name, s)
            if res.target_modules:
                assert res.checked and res.matched_modules, (name, s)
        del encoder
        gc.collect()
        # The feature dimension, from a weightless forward pass at the registry's input size.
        with torch.device("meta"):
            out = random_encoder(spec)(torch.empty(1, 3, spec.input_size, spec.input_size))
        assert tuple(out.shape) == (1, spec.feature_dim), name


@pytest.mark.slow
def test_models_command_prints_the_154_cells(cache_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{") :])
    assert [b["name"] for b in data["backbones"]] == list_backbones()
    cells = data["cells"]
    assert len(cells) == 154
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
        na = c["backbone"] in CNNS and c["strategy"].startswith("vera")
        assert c["applicable"] == (not na)
        if na:
            assert "nn.Linear" in c["reason"] and c["percent"] is None
        elif c["strategy"] in BASELINES:
            assert c["reason"] is None and c["trainable"] is c["percent"] is None
        else:
            assert c["reason"] is None and 0 < c["trainable"] <= c["total"]
            assert c["percent"] == pytest.approx(100 * c["trainable"] / c["total"])
    by = {(c["backbone"], c["strategy"]): c for c in cells}
    assert by[("dinov2-s", "lp")]["trainable"] == 384 * 2 + 2  # the 2-way head only
    assert (
        by[("resnet50", "fft")]["total"]
        == get_backbone_spec("resnet50").encoder_params + 2048 * 2 + 2
    )
    for b in data["backbones"]:
        assert b["encoder_params"] == b["expected_params"]
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
