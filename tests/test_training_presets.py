"""Training presets: the registry and schema, resolution (preset, task, overrides), the early-stopping
rule with min_epochs, the lr floor, the CLI's --preset, and one run through the real loop."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from progbench.config.registry import CONFIGS_DIR
from progbench.config.training import (
    NULLABLE,
    TRAINING_DIR_ENV,
    TrainingOptions,
    get_training_preset,
    list_training_presets,
)
from progbench.data.manifest import load_task
from progbench.data.splits import make_splits
from progbench.errors import ConfigError, RegistryError, RunError
from progbench.runs import read_spec, read_train_log
from progbench.train import fit as fit_module
from progbench.train.finetune import run_finetune
from progbench.train.fit import EarlyStopping
from progbench.train.options import FinetuneOptions
from progbench.train.presets import resolve_training
from progbench.train.schedule import Schedule
from tests.helpers.cohorts import write_cohort

STUDY_BATCH = {"afc": 128, "afc-m": 128, "car": 32, "cc": 64, "ny-small": 128, "ny-all": 128}


def _write_preset(folder: Path, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _study_yaml() -> dict[str, Any]:
    return yaml.safe_load((CONFIGS_DIR / "training" / "ruffini2025.yaml").read_text())


def test_default_preset_is_the_trainers_defaults_and_the_schema_mirrors_the_options() -> None:
    fields = {f.name: f for f in dataclasses.fields(FinetuneOptions)}
    assert set(TrainingOptions.model_fields) == set(fields) - {"preset"}
    assert set(NULLABLE) == {n for n, f in fields.items() if f.default is None} - {"preset"}
    assert resolve_training() == FinetuneOptions(preset="default")
    assert {"default", "ruffini2025"} <= set(list_training_presets())


def test_ruffini2025_holds_the_study_values() -> None:
    o = resolve_training("ruffini2025")
    assert (o.epochs, o.eval_every, o.patience, o.min_epochs) == (1000, 3, 100, 50)
    assert (o.schedule, o.plateau_patience, o.min_lr, o.warmup_epochs) == ("plateau", 25, 1e-8, 0)
    assert o.head_lr_grid == (1e-2, 1e-3, 1e-4) and o.lr_head is None and o.lr_backbone is None
    assert get_training_preset("ruffini2025").batch_size_by_task == STUDY_BATCH
    for task, batch in STUDY_BATCH.items():
        assert resolve_training("ruffini2025", task).batch_size == batch
    assert resolve_training("ruffini2025", "my-task").batch_size == 32
    # The keys are the task names the dataset adapters write (configs/datasets/*.yaml).
    names = set()
    for f in (CONFIGS_DIR / "datasets").glob("*.yaml"):
        for out in yaml.safe_load(f.read_text())["outputs"]:
            names |= set(out["tasks"])
    assert set(STUDY_BATCH) == names


def test_overrides_come_last_and_are_validated() -> None:
    o = resolve_training("ruffini2025", "afc", {"epochs": 100, "batch_size": 4, "lr_head": 1e-3})
    assert (o.epochs, o.batch_size, o.lr_head, o.min_epochs, o.preset) == (
        100,
        4,
        1e-3,
        50,
        "ruffini2025",
    )
    with pytest.raises(ConfigError, match=r"sweep\.yaml is invalid:\n  - epochs: .*greater"):
        resolve_training("ruffini2025", None, {"epochs": 0}, source="sweep.yaml")
    with pytest.raises(ConfigError, match=r"epoch: Extra inputs"):
        resolve_training("default", None, {"epoch": 3})
    with pytest.raises(ConfigError, match=r"patience: .*cannot be null"):
        resolve_training("default", None, {"patience": None})
    # A floor that only the combination puts above a starting lr is refused too.
    with pytest.raises(ConfigError, match=r"with sweep\.yaml .*\n  - min_lr: .*not below: 0\.0001"):
        resolve_training("default", None, {"min_lr": 1e-4}, source="sweep.yaml")
    with pytest.raises(RegistryError, match="unknown training preset 'ruffini'") as err:
        resolve_training("ruffini")
    assert "ruffini2025" in (err.value.hint or "")


def test_a_user_preset_in_the_training_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"name": "quick", "epochs": 7, "batch_size": 16, "batch_size_by_task": {"afc": 64}}
    _write_preset(tmp_path / "training", data)
    monkeypatch.setenv(TRAINING_DIR_ENV, str(tmp_path / "training"))
    assert "quick" in list_training_presets()
    o = resolve_training("quick", "afc")
    assert (o.epochs, o.batch_size, o.patience, o.preset) == (7, 64, 100, "quick")
    _write_preset(tmp_path / "training", {"name": "ruffini2025", "epochs": 3})
    with pytest.raises(RegistryError, match="training preset 'ruffini2025' is defined twice"):
        list_training_presets()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epoch": 10}, "epoch"),
        ({"schedule": "step"}, "schedule"),
        ({"batch_size_by_task": {"afc": 0}}, "batch_size_by_task.afc"),
        ({"min_lr": 1e-2, "lr_head": 1e-3}, "min_lr"),
        ({"head_lr_grid": []}, "head_lr_grid"),
        ({"augment": None}, "augment"),
    ],
)
def test_a_bad_preset_is_refused_with_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], key: str
) -> None:
    path = _write_preset(tmp_path / "training", {"name": "bad"} | data)
    monkeypatch.setenv(TRAINING_DIR_ENV, str(tmp_path / "training"))
    with pytest.raises(RegistryError) as err:
        resolve_training("bad")
    assert f"{path} is invalid:\n  - {key}: " in err.value.message
    assert "docs/METHODOLOGY.md" in (err.value.hint or "")


def _evals(losses: list[float], every: int = 3) -> list[tuple[int, float]]:
    return [(every * (i + 1), loss) for i, loss in enumerate(losses)]


def test_the_study_stopping_rule_never_before_50_and_100_epochs_after_the_best() -> None:
    rule = EarlyStopping(patience=100, min_epochs=50)
    rising = [1.0 + i for i in range(400)]
    assert rule.stop_epoch(_evals(rising)) == 105  # best at epoch 3: the first eval >= 103
    best_at_60 = [2.0] * 19 + [1.0] + [1.5] * 300  # evaluation 20 = epoch 60
    assert rule.stop_epoch(_evals(best_at_60)) == 162  # the first evaluation >= 160
    assert rule.stop_epoch(_evals([5.0 - 0.01 * i for i in range(400)])) is None  # improving
    # Random histories: never before min_epochs, never within patience of the best.
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(20, 400))
        trend = rng.choice([-2.0, 0.0, 2.0]) * np.linspace(0, 1, n)  # falling, flat or rising
        history = _evals(list(rng.random(n) + trend))
        stop = rule.stop_epoch(history)
        seen = history if stop is None else [h for h in history if h[0] <= stop]
        best_epoch = min(seen, key=lambda h: h[1])[0]  # first of ties, as the loop keeps
        if stop is None:
            assert seen[-1][0] < 50 or seen[-1][0] - best_epoch < 100
        else:
            assert stop >= 50 and stop - best_epoch >= 100
            assert (
                stop - 3 < 50 or stop - 3 - best_epoch < 100
            )  # the evaluation before did not stop
    # A patience shorter than min_epochs: min_epochs binds; min_epochs 0 is the plain rule.
    assert EarlyStopping(patience=10, min_epochs=50).stop_epoch(_evals(rising, 1)) == 50
    assert EarlyStopping(patience=2).stop_epoch(_evals([0.9, 0.5, 0.7, 0.8], 1)) == 4


def _lrs(opt: torch.optim.Optimizer) -> list[float]:
    return [g["lr"] for g in opt.param_groups]


def test_the_lr_floor_holds_for_plateau_and_cosine() -> None:
    p, q = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p], "lr": 1.0}, {"params": [q], "lr": 0.2}])
    s = Schedule(opt, "plateau", 0, 10, plateau_patience_evals=0, plateau_factor=0.1, min_lr=0.05)
    seen = []
    for loss in itertools.count(1.0):  # always worse: a reduction at each evaluation after the 1st
        s.after_eval(loss)
        seen.append(_lrs(opt))
        if len(seen) == 4:
            break
    np.testing.assert_allclose(seen, [[1.0, 0.2], [0.1, 0.05], [0.05, 0.05], [0.05, 0.05]])
    opt = torch.optim.AdamW([{"params": [p], "lr": 1.0}])
    s = Schedule(
        opt, "cosine", warmup_steps=0, total_steps=10, plateau_patience_evals=1, min_lr=0.1
    )
    for _ in range(10):
        opt.step()
        s.after_step()
    assert _lrs(opt) == [pytest.approx(0.1)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    root = tmp_path_factory.mktemp("presets")
    write_cohort(root / "cohort", patients=16, size=32, multi_image_every=1000)
    task = load_task(root / "cohort" / "tasks" / "severity.yaml")
    splits = make_splits(task, "kfold", folds=2, seed=42)
    return task, splits.model_copy(update={"folds": splits.folds[:1]}), root


def _study_scaled(folder: Path) -> None:
    """ruffini2025 scaled for a test: min_epochs 5 / patience 10, a floor the plateau reaches."""
    scaled = {
        "name": "study-scaled",
        "epochs": 40,
        "eval_every": 1,
        "patience": 10,
        "min_epochs": 5,
        "plateau_patience": 2,
        "min_lr": 1e-4,
        "lr_head": 1e-2,
        "lr_backbone": 1e-3,
        "image_size": 32,
        "batch_size": 8,  # the whole training part: one step per epoch
        "augment": False,
    }
    data = {k: v for k, v in _study_yaml().items() if k != "description"} | scaled
    _write_preset(folder, data)


@pytest.mark.slow
@pytest.mark.parametrize(("best", "stop"), [(2, 12), (8, 18)])
def test_the_loop_stops_by_the_preset_and_keeps_the_floor(
    tiny: tuple[Any, Any, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    best: int,
    stop: int,
) -> None:
    task, splits, root = tiny
    _study_scaled(tmp_path / "training")
    monkeypatch.setenv(TRAINING_DIR_ENV, str(tmp_path / "training"))
    opts = resolve_training(
        "study-scaled", task.name, {"device": "cpu", "cache_dir": root / "cache"}
    )
    # Scripted validation losses: falling to the best epoch, then rising.
    losses = iter([1.0 - 0.05 * e if e <= best else 1.0 + 0.01 * e for e in range(1, 41)])
    monkeypatch.setattr(fit_module, "weighted_loss", lambda *_: next(losses))
    (run_dir,), _ = run_finetune(task, splits, "tiny-densenet", "random", "bitfit", tmp_path, opts)
    log = [r for r in read_train_log(run_dir) if "val_loss" in r]
    assert [r["epoch"] for r in log] == list(range(1, stop + 1)) and log[-1]["finished"]
    spec = read_spec(run_dir)
    assert spec.extra["best_epoch"] == best and spec.extra["train_preset"] == "study-scaled"
    assert spec.settings["train"]["min_epochs"] == 5 and spec.settings["train"]["min_lr"] == 1e-4
    lrs = np.array([r["lrs"] for r in log])  # [backbone, head] per evaluation
    assert lrs.min() >= 1e-4 * (1 - 1e-9)
    np.testing.assert_allclose(lrs[-1], [1e-4, 1e-4])  # both groups reached the floor
    # Another min_epochs or min_lr is another setup: refused by name, nothing recomputed.
    for key, value in (("min_epochs", 6), ("min_lr", 1e-5)):
        other = dataclasses.replace(opts, **{key: value})
        with pytest.raises(RunError, match=rf"train\.{key}: "):
            run_finetune(task, splits, "tiny-densenet", "random", "bitfit", tmp_path, other)


def test_cli_preset_then_the_flags_given(
    tiny: tuple[Any, Any, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from progbench.cli import app

    _, _, root = tiny
    task_yaml = tmp_path / "afc.yaml"  # a task named like the study's, on the tiny manifest
    task_yaml.write_text(
        f"name: afc\nmanifest: {root / 'cohort' / 'manifest.csv'}\noutcome: severity\npositive: 1\n"
    )
    seen: list[Any] = []

    class Captured(Exception):
        pass

    def fake_run_train(request: Any, progress: Any = None) -> Any:
        seen.append(request.options)
        raise Captured

    monkeypatch.setattr("progbench.train.pipeline.run_train", fake_run_train)
    base = ["train", str(task_yaml), "--strategy", "fft", "--runs", str(tmp_path / "runs")]
    runner = CliRunner()
    for extra in (
        ["--preset", "ruffini2025"],
        ["--preset", "ruffini2025", "--epochs", "7", "--batch-size", "4", "--no-augment"],
        ["--epochs", "7"],
    ):
        result = runner.invoke(app, base + extra)
        assert isinstance(result.exception, Captured), result.output
    study, flagged, default = seen
    assert (study.epochs, study.batch_size, study.min_epochs, study.augment) == (
        1000,
        128,
        50,
        True,
    )
    assert (flagged.epochs, flagged.batch_size, flagged.augment) == (7, 4, False)
    assert (flagged.patience, flagged.min_lr, flagged.preset) == (100, 1e-8, "ruffini2025")
    assert default == FinetuneOptions(epochs=7, preset="default")
    bad = runner.invoke(app, [*base, "--preset", "nope"])
    assert isinstance(bad.exception, RegistryError) and "'nope'" in bad.exception.message
