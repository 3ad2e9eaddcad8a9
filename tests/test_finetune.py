"""The streaming PEFT/FFT trainer on tiny twins: what trains, reloading in plain peft, resume after a
kill, early stopping, few-shot runs, refusals, cost accounting, and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from progbench.accel import resolve_accel, to_input
from progbench.cache.imagestore import ImageStore, ImageStoreParams, build_image_store
from progbench.data.fewshot import add_fewshot
from progbench.errors import ConfigError, NotApplicableError
from progbench.models.loaders import load_backbone
from progbench.models.strategies.kinds import HEAD_FILE
from progbench.runs import read_run, read_spec, read_train_log
from progbench.train import fit as fit_module
from progbench.train.finetune import STATE_DIR, run_finetune
from progbench.train.options import FinetuneOptions
from progbench.train.plan import SplitRequest
from progbench.train.steps import Steps, epoch_batches
from tests.helpers.cohorts import StreamCohort as Cohort
from tests.helpers.cohorts import stream_cohort

STORE_SIZE = 32
# Tiny twins: densenet is the CNN (BatchNorm, conv LoRA/IA3), dinov2 the transformer.
CNN, VIT = "tiny-densenet", "tiny-dinov2"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    return stream_cohort(tmp_path_factory.mktemp("ft"))


def opts_for(c: Cohort, **kw: Any) -> FinetuneOptions:
    base = dict(
        epochs=2,
        batch_size=8,
        eval_every=1,
        lr_backbone=1e-3,
        lr_head=1e-2,
        augment=False,
        image_size=STORE_SIZE,
        cache_dir=c.cache,
        device="cpu",
    )
    return FinetuneOptions(**(base | kw))


def run_dir_of(root: Path, backbone: str, strategy: str) -> Path:
    return root / "tiny-severity" / "kfold" / backbone / strategy / "full" / "fold-0"


class Spy:
    """Wraps Steps.train_step: keeps the model of the first call and its state before any step."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None) -> None:
        self.calls = 0
        self.model: nn.Module | None = None
        self.before: dict[str, torch.Tensor] = {}
        original = Steps.train_step

        def spy(steps: Steps, *args: Any, **kwargs: Any) -> torch.Tensor:
            self.calls += 1
            if fail_at is not None and self.calls == fail_at:
                raise KeyboardInterrupt  # what Ctrl-C raises mid-training
            if self.model is None:
                self.model = steps.model
                self.before = {k: v.clone() for k, v in steps.model.state_dict().items()}
            return original(steps, *args, **kwargs)

        monkeypatch.setattr(Steps, "train_step", spy)


TRAINS: dict[str, Callable[[str], bool]] = {
    "fft": lambda n: True,
    "bitfit": lambda n: n.endswith(".bias"),
    "lora": lambda n: "lora_" in n,
    "vera": lambda n: "vera_lambda" in n,
    "ia3": lambda n: "ia3_l" in n,
}


@pytest.mark.parametrize(
    "backbone,strategy",
    [
        (CNN, "fft"),
        (CNN, "bitfit"),
        (CNN, "lora-r4"),
        (VIT, "lora-r8"),
        (VIT, "vera-r4"),
        (VIT, "ia3"),
    ],
)
def test_trainable_parameters_move_and_frozen_ones_do_not(
    cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backbone: str, strategy: str
) -> None:
    spy = Spy(monkeypatch)
    written, _ = run_finetune(
        cohort.task, cohort.splits, backbone, "random", strategy, tmp_path, opts_for(cohort)
    )
    assert written == [run_dir_of(tmp_path, backbone, strategy)]
    assert spy.model is not None
    kind = strategy.split("-")[0]
    after = spy.model.state_dict()
    params = dict(spy.model.named_parameters())
    expected = {n for n in params if n.startswith("progbench_head.") or TRAINS[kind](n)}
    assert {n for n, p in params.items() if p.requires_grad} == expected
    for name in params:
        moved = not torch.equal(spy.before[name], after[name])
        assert moved == (name in expected), name
    # BatchNorm statistics drift only under FFT: adapters and biases are saved without them.
    stats = [n for n in after if n.endswith("running_mean")]
    if backbone == CNN:
        assert stats
        drifted = [n for n in stats if not torch.equal(spy.before[n], after[n])]
        assert bool(drifted) == (kind == "fft")
    # Cost accounting: metrics.json carries it, and it counts what actually trained.
    run = read_run(written[0])
    assert run.cost is not None
    assert run.cost.trainable == sum(params[n].numel() for n in expected)
    assert run.cost.total == sum(p.numel() for p in params.values())
    for field in ("wall_time_s", "device_time_s", "peak_host_mb", "images_per_s"):
        assert (getattr(run.cost, field) or 0) > 0, field
    assert run.cost.wall_time_s >= run.cost.device_time_s
    assert not (written[0] / STATE_DIR).exists()  # spent states are removed once DONE is written
    assert set(run.predictions["split"]) == {"val", "test"}


def _peft_reload_p_pos(cohort: Cohort, run_dir: Path, ids: list[str]) -> np.ndarray:
    """Probability of the positive class from the saved files, with plain peft and torch."""
    from peft import PeftModel

    loaded = load_backbone(VIT, "random")
    encoder = PeftModel.from_pretrained(loaded.encoder, str(run_dir)).eval()
    head = nn.Linear(loaded.spec.feature_dim, 2)
    tensors = load_file(str(run_dir / HEAD_FILE))
    head.load_state_dict({k.removeprefix("progbench_head."): v for k, v in tensors.items()})
    store = ImageStore(
        build_image_store(
            cohort.task.manifest, ImageStoreParams(size=STORE_SIZE), cohort.cache
        ).path
    )
    batch = torch.from_numpy(store.read(store.indices(ids)))
    spec = loaded.spec
    x = to_input(batch, spec.input_size, spec.mean, spec.std, resolve_accel("cpu", "fp32"))
    with torch.no_grad():
        return torch.softmax(head(encoder(x)), dim=1)[:, 1].numpy()


@pytest.mark.parametrize("strategy", ["lora-r8", "vera-r4", "ia3"])
def test_saved_adapter_loads_in_plain_peft_and_reproduces_predictions(
    cohort: Cohort, tmp_path: Path, strategy: str
) -> None:
    (run_dir,), _ = run_finetune(
        cohort.task, cohort.splits, VIT, "random", strategy, tmp_path, opts_for(cohort)
    )
    config = json.loads((run_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == strategy.split("-")[0].upper()
    test = read_run(run_dir).predictions.query("split == 'test'")
    p_pos = _peft_reload_p_pos(cohort, run_dir, test["image_id"].tolist())
    np.testing.assert_allclose(p_pos, test["p_pos"].to_numpy(), rtol=0, atol=1e-5)


def _saved_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(run_dir.glob("*.safetensors")):
        out |= {f"{f.name}:{k}": v for k, v in load_file(str(f)).items()}
    return out


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_final_checkpoint(
    cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dropout (LoRA's), augmentation, two head-lr candidates and a cosine schedule: every piece of
    # state that a resume has to restore exactly.
    opts = opts_for(
        cohort, epochs=4, lr_head=None, head_lr_grid=(1e-2, 1e-3), augment=True, schedule="cosine"
    )
    args = (cohort.task, cohort.splits, VIT, "random", "lora-r8")
    (whole,), _ = run_finetune(*args, tmp_path / "whole", opts)
    n_train = len(cohort.splits.folds[0].train)
    steps_per_epoch = len(epoch_batches(np.arange(n_train), opts.batch_size, 42, 0))

    # Killed in the middle of the 3rd epoch of the 2nd candidate (its 2nd evaluation is saved).
    with monkeypatch.context() as m:
        Spy(m, fail_at=4 * steps_per_epoch + 2 * steps_per_epoch + 2)
        with pytest.raises(KeyboardInterrupt):
            run_finetune(*args, tmp_path / "killed", opts)
    run_dir = run_dir_of(tmp_path / "killed", VIT, "lora-r8")
    assert not (run_dir / "DONE").exists()
    assert (run_dir / STATE_DIR / "head-lr-0.001" / "last.pt").is_file()

    spy = Spy(monkeypatch)
    (resumed,), skipped = run_finetune(*args, tmp_path / "killed", opts)
    assert resumed == run_dir and skipped == []
    # Only the rest was trained: 2 epochs of the 2nd candidate; the 1st was finished and kept.
    assert spy.calls == 2 * steps_per_epoch
    events = [r for r in read_train_log(run_dir) if r.get("event") == "resume"]
    assert events == [{"event": "resume", "lr_head": 1e-3, "epoch": 2}]

    a, b = _saved_tensors(whole), _saved_tensors(resumed)
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    pa, pb = read_run(whole).predictions, read_run(resumed).predictions
    np.testing.assert_array_equal(pa["p_pos"].to_numpy(), pb["p_pos"].to_numpy())
    spec = read_spec(resumed).extra
    search = {s["lr_head"]: s["best_loss"] for s in spec["head_lr_search"]}
    assert set(search) == {1e-2, 1e-3}
    assert spec["lr_head"] == min(search, key=search.__getitem__)  # chosen on validation loss
    assert spec["val_loss"] == search[spec["lr_head"]]

    # A finished run is skipped, not retrained.
    again = Spy(monkeypatch)
    written, skipped = run_finetune(*args, tmp_path / "killed", opts)
    assert written == [] and skipped == [run_dir] and again.calls == 0


def test_early_stopping_restores_the_best_epoch(
    cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scripted validation losses: the best is epoch 2; with patience 2 training stops after 4.
    losses = iter([0.9, 0.5, 0.7, 0.8, 0.6, 0.4])
    monkeypatch.setattr(fit_module, "weighted_loss", lambda *_: next(losses))
    saved: dict[int, dict[str, torch.Tensor]] = {}
    original = fit_module.save_state

    def record(state_dir: Path, state: Any, best: Any) -> None:
        saved[state.epoch] = dict(state.weights)
        original(state_dir, state, best)

    monkeypatch.setattr(fit_module, "save_state", record)
    opts = opts_for(cohort, epochs=10, patience=2)
    (run_dir,), _ = run_finetune(
        cohort.task, cohort.splits, CNN, "random", "bitfit", tmp_path, opts
    )
    assert sorted(saved) == [1, 2, 3, 4]
    log = [r for r in read_train_log(run_dir) if "val_loss" in r]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4] and log[-1]["finished"]
    assert read_spec(run_dir).extra["best_epoch"] == 2
    final = load_file(str(run_dir / "bitfit.safetensors"))
    assert final.keys() == saved[2].keys()
    for k, v in final.items():
        assert torch.equal(v, saved[2][k]), k
    assert any(not torch.equal(v, saved[4][k]) for k, v in final.items())


def test_fewshot_draws_become_their_own_runs(cohort: Cohort, tmp_path: Path) -> None:
    splits = add_fewshot(cohort.splits, cohort.task, [2], repeats=2)
    opts = opts_for(cohort, epochs=1)
    request = SplitRequest(shots=(2,), repeats=2)
    written, _ = run_finetune(
        cohort.task, splits, VIT, "random", "bitfit", tmp_path, opts, request=request
    )
    base = tmp_path / "tiny-severity" / splits.scheme / VIT / "bitfit"
    assert written == [
        base / "full" / "fold-0",
        base / "fewshot" / "fold-0" / "shots-2" / "rep-0",
        base / "fewshot" / "fold-0" / "shots-2" / "rep-1",
    ]
    full = read_run(written[0])
    for rep, d in enumerate(splits.folds[0].fewshot):
        run = read_run(written[1 + rep])
        assert (run.spec.shots, run.spec.repeat) == (2, rep)
        assert run.spec.extra["n_train"] == len(d.train) == 4
        # val and test are the fold's, never subsampled
        pd.testing.assert_frame_equal(
            run.predictions[["image_id", "split"]], full.predictions[["image_id", "split"]]
        )


def test_refusals_come_before_any_work(cohort: Cohort, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    opts = replace(opts_for(cohort), cache_dir=cache)
    with pytest.raises(NotApplicableError, match=r"VeRA adapts only nn\.Linear"):
        run_finetune(cohort.task, cohort.splits, CNN, "random", "vera-r4", tmp_path / "r", opts)
    with pytest.raises(ConfigError, match=r"cached features"):
        run_finetune(cohort.task, cohort.splits, CNN, "random", "lp", tmp_path / "r", opts)
    with pytest.raises(ConfigError, match="only CNNs"):
        bad = replace(opts, input_size=32)
        run_finetune(cohort.task, cohort.splits, VIT, "random", "lora-r4", tmp_path / "r", bad)
    with pytest.raises(ConfigError, match=">= 1"):
        run_finetune(
            cohort.task,
            cohort.splits,
            CNN,
            "random",
            "fft",
            tmp_path / "r",
            replace(opts, epochs=0),
        )
    assert not (tmp_path / "r").exists() and not cache.exists()


@pytest.mark.slow
def test_cli_train_writes_runs_skips_finished_ones_and_refuses_with_the_reason(
    cohort: Cohort, tmp_path: Path
) -> None:
    from progbench.cli import app, main

    task_yaml = cohort.manifest.parent / "tasks" / "severity.yaml"
    args = [
        "train", str(task_yaml), "--backbone", VIT, "--weights", "random",
        "--strategy", "lora-r4", "--scheme", "kfold", "--folds", "2", "--epochs", "1", "--eval-every", "1",
        "--lr-head", "1e-2", "--batch-size", "8", "--image-size", str(STORE_SIZE),
        "--no-augment", "--device", "cpu", "--cache-dir", str(cohort.cache),
        "--runs", str(tmp_path / "runs"),
    ]  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "2 run(s) written, 0 already finished" in first.output
    runs = sorted(
        (tmp_path / "runs" / "tiny-severity" / "kfold" / VIT / "lora-r4" / "full").iterdir()
    )
    assert [r.name for r in runs] == ["fold-0", "fold-1"]
    assert all((r / "DONE").is_file() and (r / "adapter_model.safetensors").is_file() for r in runs)
    second = runner.invoke(app, args)
    assert "0 run(s) written, 2 already finished" in second.output

    refused = [*args[:6], "--backbone", CNN, "--strategy", "vera-r4", "--runs", str(tmp_path / "x")]
    with pytest.raises(SystemExit) as exc:
        main(refused)
    assert exc.value.code != 0
    assert not list((tmp_path / "x").rglob("fold-*"))
    assert not (tmp_path / "x").exists()  # not even the splits file


def test_a_head_variant_grid_trains_each_variant_and_predict_reproduces(
    cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A preset opting in to two head inputs trains a candidate per (variant, lr); the run keeps
    the best, records it, and reloads with that head."""
    import yaml

    from progbench.models.registry import STRATEGIES_DIR_ENV
    from progbench.predict import PredictOptions, predict_run

    folder = tmp_path / "strategies"
    folder.mkdir()
    preset = {
        "name": "lora-grid",
        "kind": "lora",
        "rank": 4,
        "alpha": 1,
        "backbone_lr": 1e-3,
        "variants": {"n_last_blocks": [1, 2], "avgpool": [True]},
    }
    (folder / "lora-grid.yaml").write_text(yaml.safe_dump(preset))
    monkeypatch.setenv(STRATEGIES_DIR_ENV, str(folder))
    (run_dir,), _ = run_finetune(
        cohort.task, cohort.splits, VIT, "random", "lora-grid", tmp_path / "runs", opts_for(cohort)
    )
    spec = read_spec(run_dir)
    assert spec.settings["strategy"]["variants"]["n_last_blocks"] == [1, 2]  # in its identity
    search = spec.extra["head_lr_search"]
    assert [s["variant"] for s in search] == ["cls1+avg", "cls2+avg"]
    best = min(search, key=lambda s: s["best_loss"])
    assert spec.extra["variant"] == best["variant"]
    info = json.loads((run_dir / "progbench_model.json").read_text())
    assert info["head_variant"] == best["variant"]
    width = {"cls1+avg": 64, "cls2+avg": 96}[best["variant"]]
    head = load_file(str(run_dir / HEAD_FILE))
    assert head["progbench_head.weight"].shape == (2, width)
    preds = predict_run(run_dir, cohort.manifest, PredictOptions("cpu", cache_dir=cohort.cache))
    merged = read_run(run_dir).predictions.merge(preds, on="image_id", suffixes=("_run", "_new"))
    np.testing.assert_allclose(merged["p_pos_new"], merged["p_pos_run"], rtol=0, atol=1e-5)


def test_a_cnn_cannot_take_a_multi_token_head(
    cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from progbench.models.registry import STRATEGIES_DIR_ENV

    preset = {"name": "fft-cls4", "kind": "fft", "backbone_lr": 1e-5}
    preset["variants"] = {"n_last_blocks": [4]}
    (tmp_path / "fft-cls4.yaml").write_text(yaml.safe_dump(preset))
    monkeypatch.setenv(STRATEGIES_DIR_ENV, str(tmp_path))
    with pytest.raises(NotApplicableError, match=r"reads feature variant.*cls4.*offers cls1"):
        run_finetune(
            cohort.task, cohort.splits, CNN, "random", "fft-cls4", tmp_path, opts_for(cohort)
        )


@pytest.mark.parametrize(
    "options,detail",
    [
        # the backbone's targets, narrowed by the preset to nothing
        ({"exclude_modules": ["conv1"]}, "No modules were targeted"),
        # narrowed to fewer modules than the targets match
        ({"layers_to_transform": [7], "layers_pattern": "layer"}, "not adapted"),
        ({"init_lora_weights": "nope"}, "Unknown initialization"),  # peft rejects a value
        ({"no_such_option": 1}, "unexpected keyword"),  # LoraConfig rejects a keyword
    ],
)
def test_a_preset_peft_cannot_apply_fails_in_one_error_before_anything_is_written(
    cohort: Cohort,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: dict[str, Any],
    detail: str,
) -> None:
    import yaml

    from progbench.cli import main
    from progbench.models.registry import STRATEGIES_DIR_ENV, registry_source

    folder = tmp_path / "strategies"
    folder.mkdir()
    preset = {"name": "lora-odd", "kind": "lora", "rank": 4, "alpha": 1, "backbone_lr": 1e-4}
    (folder / "lora-odd.yaml").write_text(yaml.safe_dump(preset | {"peft_options": options}))
    monkeypatch.setenv(STRATEGIES_DIR_ENV, str(folder))
    monkeypatch.setenv("COLUMNS", "400")  # one line per message line, whatever the terminal
    runs = tmp_path / "runs"
    task_yaml = cohort.manifest.parent / "tasks" / "severity.yaml"
    args = [
        "train", str(task_yaml), "--backbone", "tiny-resnet", "--weights", "random",
        "--strategy", "lora-odd", "--scheme", "kfold", "--folds", "2", "--epochs", "1",
        "--image-size", str(STORE_SIZE), "--device", "cpu", "--cache-dir", str(tmp_path / "c"),
        "--runs", str(runs),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code != 0
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err
    assert f"strategy 'lora-odd' ({folder / 'lora-odd.yaml'})" in err
    assert "backbone 'tiny-resnet'" in err
    assert detail in err
    assert "peft_options" in err and "targets.lora" in err  # the options to fix
    assert str(registry_source("backbone", "resnet18")) in err  # where tiny-resnet's targets are
    assert err.count("error:") == 1
    assert not runs.exists()  # no splits file, no task.json, no fold-* folder
    assert not (tmp_path / "c").exists()  # nor an image store
