"""End to end on a full-size backbone: FFT and LoRA on a random-init resnet18 learn the synthetic
cohort's strong signal, and the same FFT run on shuffled outcomes does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from progbench.data.manifest import Task, load_task
from progbench.data.splits import make_splits
from progbench.data.synth import synthesize
from progbench.evaluate.results import evaluate_tree, summarise
from progbench.train.finetune import run_finetune
from progbench.train.options import FinetuneOptions

SIZE = 48  # store and model input side: resnet18 at 224 px would take minutes on 2 cores


def _options(cache: Path, strategy: str) -> FinetuneOptions:
    # Random init learns from scratch: higher rates than the pretrained presets, a few epochs,
    # augmentation and weight decay against memorising ~70 training images per fold.
    lr_backbone, lr_head = {"fft": (1e-4, 1e-3), "lora-r8": (1e-3, 1e-2)}[strategy]
    return FinetuneOptions(
        epochs=6,
        batch_size=16,
        eval_every=1,
        warmup_epochs=0,
        lr_backbone=lr_backbone,
        lr_head=lr_head,
        weight_decay=0.01,
        augment=True,
        image_size=SIZE,
        input_size=SIZE,
        cache_dir=cache,
        device="cpu",
    )


def _pooled_mcc(root: Path) -> float:
    (record,) = summarise(evaluate_tree(root, n_boot=0, cache=False).results)
    return float(record["metrics"]["mcc"]["pooled"])


def _shuffled(task: Task) -> Task:
    """Outcomes permuted across patients: prevalence and patient structure kept, signal gone."""
    df = task.manifest.frame
    first = df.groupby("patient_id", sort=True)["patient_id"].first().index
    y_patient = dict(zip(df["patient_id"], task.labels, strict=True))
    perm = np.random.default_rng(0).permutation([y_patient[p] for p in first])
    mapping = dict(zip(first, perm, strict=True))
    return Task(task.config, task.manifest, df["patient_id"].map(mapping).to_numpy(np.int64))


@pytest.mark.slow
def test_fft_and_lora_learn_the_strong_signal_and_shuffled_labels_do_not(tmp_path: Path) -> None:
    synthesize(tmp_path / "cohort", patients=100, centers=3, seed=1, signal=3.0)
    task = load_task(tmp_path / "cohort" / "tasks" / "severity.yaml")
    splits = make_splits(task, "kfold", folds=2, seed=42)
    cache = tmp_path / "cache"
    for strategy in ("fft", "lora-r8"):
        root = tmp_path / strategy
        run_finetune(task, splits, "resnet18", "random", strategy, root, _options(cache, strategy))
        assert _pooled_mcc(root) > 0.25, strategy
    control = _shuffled(task)
    shuffled_splits = make_splits(control, "kfold", folds=2, seed=42)
    root = tmp_path / "shuffled"
    run_finetune(
        control, shuffled_splits, "resnet18", "random", "fft", root, _options(cache, "fft")
    )
    assert abs(_pooled_mcc(root)) < 0.15
