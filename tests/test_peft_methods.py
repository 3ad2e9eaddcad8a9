"""peft methods as data (`kind: peft`): DoRA, LoHa and a method added in one YAML file train on
tiny twins, and what trains is what peft itself counts; a backbone without the target set a
preset names is not applicable, with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from progbench.config import StrategySpec, parse_model
from progbench.errors import ConfigError, RegistryError
from progbench.models.registry import STRATEGIES_DIR_ENV, get_backbone_spec, list_strategies
from progbench.models.strategies import resolve
from progbench.predict import PredictOptions, predict_run
from progbench.runs import read_run
from progbench.train.finetune import run_finetune
from progbench.train.options import FinetuneOptions
from progbench.train.steps import Steps
from tests.helpers.cohorts import StreamCohort as Cohort
from tests.helpers.cohorts import stream_cohort

STORE_SIZE = 32


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    return stream_cohort(tmp_path_factory.mktemp("peftm"))


def _opts(c: Cohort) -> FinetuneOptions:
    return FinetuneOptions(
        epochs=1,
        batch_size=8,
        eval_every=1,
        lr_backbone=1e-3,
        lr_head=1e-2,
        augment=False,
        image_size=STORE_SIZE,
        cache_dir=c.cache,
        device="cpu",
    )


def _train_and_check(
    c: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backbone: str, strategy: str
) -> dict[str, Any]:
    """Train 1 epoch; the trainable parameters are the head plus what peft counts, and every
    adapter parameter moved. Returns the saved adapter_config.json."""
    models: list[Any] = []
    before: dict[str, torch.Tensor] = {}
    original = Steps.train_step

    def spy(steps: Steps, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not models:
            models.append(steps.model)
            before.update({k: v.clone() for k, v in steps.model.named_parameters()})
        return original(steps, *args, **kwargs)

    monkeypatch.setattr(Steps, "train_step", spy)
    (run_dir,), _ = run_finetune(c.task, c.splits, backbone, "random", strategy, tmp_path, _opts(c))
    model = models[0]
    peft_trainable, peft_total = model.backbone.get_nb_trainable_parameters()
    head = sum(p.numel() for p in model.progbench_head.parameters())
    run = read_run(run_dir)
    assert run.cost is not None
    assert run.cost.trainable == peft_trainable + head
    assert run.cost.total == peft_total + head
    adapters = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert adapters
    after = dict(model.named_parameters())
    moved = [n for n in before if not torch.equal(before[n], after[n])]
    assert {n.removeprefix("backbone.") for n in moved if n.startswith("backbone.")} == set(
        adapters
    )
    assert set(run.predictions["split"]) == {"val", "test"}
    # The saved adapter reloads (peft's own layout) and reproduces the run's predictions.
    preds = predict_run(run.path, c.manifest, PredictOptions(device="cpu", cache_dir=c.cache))
    merged = run.predictions.merge(preds, on="image_id", suffixes=("_run", "_new"))
    assert len(merged) == len(run.predictions)
    np.testing.assert_allclose(merged["p_pos_new"], merged["p_pos_run"], rtol=0, atol=1e-5)
    config: dict[str, Any] = json.loads((run_dir / "adapter_config.json").read_text())
    return config


def test_dora_trains_on_a_vit_as_peft_counts_it(
    cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _train_and_check(cohort, tmp_path, monkeypatch, "tiny-dinov2", "dora-r8")
    assert config["peft_type"] == "LORA" and config["use_dora"] is True and config["r"] == 8
    lora = get_backbone_spec("tiny-dinov2").targets.for_kind("lora").modules
    assert sorted(config["target_modules"]) == sorted(lora)


def test_loha_trains_on_a_cnn_as_peft_counts_it(
    cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _train_and_check(cohort, tmp_path, monkeypatch, "tiny-resnet", "loha-r8")
    assert config["peft_type"] == "LOHA" and config["r"] == 8


def test_a_peft_method_added_in_one_yaml_file_trains(
    cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HRA is in no built-in preset: one file in $PROGBENCH_STRATEGIES_DIR makes it a strategy.
    folder = tmp_path / "strategies"
    folder.mkdir()
    preset = {
        "name": "hra-r4",
        "kind": "peft",
        "description": "Householder reflection adaptation, rank 4",
        "peft": {"config": "HRAConfig", "options": {"r": 4}, "targets": "lora"},
        "backbone_lr": 1e-4,
    }
    (folder / "hra-r4.yaml").write_text(yaml.safe_dump(preset))
    monkeypatch.setenv(STRATEGIES_DIR_ENV, str(folder))
    assert "hra-r4" in list_strategies()
    config = _train_and_check(cohort, tmp_path / "runs", monkeypatch, "tiny-dinov2", "hra-r4")
    assert config["peft_type"] == "HRA" and config["r"] == 4


def _preset(**peft: Any) -> StrategySpec:
    data = {"name": "m", "kind": "peft", "backbone_lr": 1e-4, "peft": peft}
    spec: StrategySpec = parse_model(StrategySpec, data, "test")
    return spec


def test_a_backbone_without_the_named_target_set_is_not_applicable() -> None:
    spec = get_backbone_spec("tiny-dinov2")
    res = resolve(spec, _preset(config="OFTConfig", targets="oft"))
    assert not res.applicable
    assert res.reason is not None and "no `oft` target set" in res.reason
    assert "lora" in res.reason  # the sets it does declare
    assert resolve(spec, "dora-r8").applicable


def test_a_peft_preset_is_checked_before_use() -> None:
    with pytest.raises(ConfigError, match="progbench sets them"):
        _preset(config="LoraConfig", options={"target_modules": ["fc1"]}, targets="lora")
    with pytest.raises(ConfigError, match="needs a `peft:` block"):
        parse_model(StrategySpec, {"name": "m", "kind": "peft", "backbone_lr": 1e-4}, "test")
    with pytest.raises(ConfigError, match="for kind `peft`"):
        parse_model(
            StrategySpec,
            {
                "name": "m",
                "kind": "ia3",
                "backbone_lr": 1e-4,
                "peft": {"config": "X", "targets": "a"},
            },
            "test",
        )
    from progbench.models.strategies import get_strategy

    spec = get_backbone_spec("tiny-dinov2")
    for bad, detail in [
        (_preset(config="NoSuchConfig", targets="lora"), "no config class 'NoSuchConfig'"),
        (_preset(config="LoHaConfig", options={"rank": 8}, targets="lora"), "rejects"),
        (_preset(config="AdaLoraConfig", targets="lora"), "update_and_allocate"),
    ]:
        with pytest.raises((ConfigError, RegistryError)) as err:
            get_strategy(bad).preflight(spec)
        assert detail in str(err.value.message)


def test_a_peft_presets_identity_is_its_peft_block_and_its_target_set() -> None:
    from progbench.models.registry import get_strategy_spec
    from progbench.models.strategies import get_strategy

    dora = get_strategy("dora-r8")
    assert dora.settings()["peft"] == {
        "config": "LoraConfig",
        "options": {"r": 8, "lora_alpha": 1, "lora_dropout": 0.1, "use_dora": True},
        "targets": "lora",
    }
    assert dora.target_set == "lora"
    # the built-in kinds keep their identity: no `peft` entry (golden keys, tests/test_keys.py)
    assert "peft" not in get_strategy("lora-r8").settings()
    assert get_strategy("lora-r8").target_set == "lora"
    assert get_strategy("fft").target_set is None
    assert get_strategy_spec("loha-r8").uses_peft
