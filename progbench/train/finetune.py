"""The streaming PEFT/FFT trainer (`progbench train --strategy fft|lora-r*|vera-r*|bitfit|ia3`).

One loop for every strategy: images stream from the uint8 image store through a model on the
accelerator; class-weighted cross-entropy; AdamW with one lr for the backbone (or adapter)
parameters and one for the head; warm-up then plateau or cosine; validation every N epochs,
early stopping on the validation loss, and the best checkpoint restored for the predictions.

When no head lr is given, each lr of the grid is trained as its own candidate and the one with
the lowest best validation loss is kept (docs/METHODOLOGY.md, "Streaming PEFT/FFT trainer").
Each candidate saves its full state at every evaluation (progbench.train.checkpoint), so a
killed command resumes where it stopped; finished runs are skipped.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from progbench.accel import Accel, prepare_model, resolve_accel
from progbench.config import BackboneSpec
from progbench.data.imagestore import ImageStore, ImageStoreParams, build_image_store
from progbench.data.loader import PrefetchLoader
from progbench.data.manifest import Task
from progbench.data.splits import Splits
from progbench.errors import ConfigError, NotApplicableError
from progbench.models.adapters import (
    BITFIT_FILE,
    FULL_FILE,
    HEAD_FILE,
    INFO_FILE,
    PEFT_FILES,
    save_trained,
)
from progbench.models.loaders import LoadedBackbone, load_backbone
from progbench.models.params import count_parameters
from progbench.models.registry import get_backbone_spec, get_strategy_spec
from progbench.models.strategies import ClassifierModel, build_classifier, resolve
from progbench.provenance import fingerprint
from progbench.runs import append_train_log, finish_run, run_dir_for, write_spec
from progbench.train.augment import AugmentConfig
from progbench.train.checkpoint import (
    TrainState,
    best_file,
    load_state,
    load_trainable,
    rng_state,
    save_state,
    set_rng_state,
    trainable_state,
)
from progbench.train.cost import CostMeter, run_cost
from progbench.train.options import FinetuneOptions
from progbench.train.problems import Problem, finetune_problems
from progbench.train.rundirs import is_finished_match, prepare_run_dir
from progbench.train.schedule import Schedule, plateau_patience_evals
from progbench.train.steps import (
    Steps,
    class_weights,
    epoch_batches,
    train_epoch,
    weighted_loss,
    with_input_size,
)

ProgressFactory = Callable[[str], Any]
STATE_DIR = "state"
SAVED_MODEL_FILES = (*PEFT_FILES, HEAD_FILE, FULL_FILE, BITFIT_FILE, INFO_FILE)


@dataclass
class Context:
    """What every run of one `run_finetune` call shares."""

    task: Task
    loaded: LoadedBackbone
    model_spec: BackboneSpec  # the backbone's spec with the input size trained at
    strategy: str
    opts: FinetuneOptions
    accel: Accel
    store: ImageStore
    store_params: ImageStoreParams
    y: np.ndarray  # label per store row
    runs_root: Path
    force: bool
    lr_backbone: float
    tick: Callable[[int], None] = lambda _: None  # advance the progress bar by n epochs
    augment: AugmentConfig | None = None


@dataclass(frozen=True)
class CandidateResult:
    lr_head: float
    state: TrainState  # as saved at its last evaluation (cost included)
    best_path: Path


def refuse_if_not_applicable(
    backbone: str, strategy: str, encoder: torch.nn.Module | None = None
) -> None:
    """Raise before any work when `strategy` cannot train `backbone` by streaming, with the
    registry's reason (lp is trained from the feature cache instead)."""
    sspec, bspec = get_strategy_spec(strategy), get_backbone_spec(backbone)
    if sspec.kind == "lp":
        raise ConfigError("lp is trained on cached features", "Use train_lp (`--strategy lp`).")
    res = resolve(bspec, sspec, encoder)
    if not res.applicable:
        raise NotApplicableError(f"{strategy} cannot be used on {backbone}: {res.reason}")


def run_finetune(
    task: Task,
    splits: Splits,
    backbone: str,
    weights: str,
    strategy: str,
    runs_root: Path,
    opts: FinetuneOptions,
    force: bool = False,
    progress: ProgressFactory | None = None,
) -> tuple[list[Path], list[Path]]:
    """Train every run of `splits` (full data, and each few-shot draw); returns (written, skipped)."""
    refuse_if_not_applicable(backbone, strategy)
    if min(opts.epochs, opts.batch_size, opts.accumulate, opts.eval_every) < 1:
        raise ConfigError("--epochs, --batch-size, --accumulate and --eval-every must be >= 1")
    bspec, sspec = get_backbone_spec(backbone), get_strategy_spec(strategy)
    model_spec = with_input_size(bspec, opts.input_size)
    loaded = load_backbone(backbone, weights)
    # Again on the built encoder: checks every target against the real module names.
    refuse_if_not_applicable(backbone, strategy, loaded.encoder)
    problems = finetune_problems(task, splits, loaded, strategy)
    finished = [is_finished_match(run_dir_for(runs_root, p.spec), p.spec, force) for p in problems]
    todo = [p for p, f in zip(problems, finished, strict=True) if not f]
    skipped = [run_dir_for(runs_root, p.spec) for p, f in zip(problems, finished, strict=True) if f]
    if not todo:
        return [], skipped
    params = ImageStoreParams(size=opts.image_size)
    store = ImageStore(build_image_store(task.manifest, params, opts.cache_dir, opts.workers).path)
    y_by_id = dict(zip(task.manifest.frame["image_id"], task.labels, strict=True))
    ctx = Context(
        task=task,
        loaded=loaded,
        model_spec=model_spec,
        strategy=strategy,
        opts=opts,
        accel=resolve_accel(opts.device, opts.dtype, bspec.is_cnn),  # autocast, never bf16 weights
        store=store,
        store_params=params,
        y=np.array([y_by_id[i] for i in store.image_ids], dtype=np.int64),
        runs_root=Path(runs_root),
        force=force,
        lr_backbone=opts.lr_backbone or sspec.backbone_lr or 1e-4,
        augment=AugmentConfig() if opts.augment else None,
    )
    n_cand = 1 if opts.lr_head is not None else len(opts.head_lr_grid)
    total, done = len(todo) * n_cand * opts.epochs, [0]
    bar = progress(f"{strategy} {backbone}: {len(todo)} run(s), epochs") if progress else None
    with bar or nullcontext() as update:
        if update is not None:

            def tick(n: int) -> None:
                done[0] += n
                update(done[0], total)

            ctx.tick = tick
        written = [_train_run(p, ctx) for p in todo]
    return written, skipped


def _settings(ctx: Context) -> dict[str, Any]:
    """The options that decide the result (recorded in spec.json and in the resume key)."""
    o = ctx.opts
    return {
        "epochs": o.epochs,
        "batch_size": o.batch_size,
        "accumulate": o.accumulate,
        "lr_backbone": ctx.lr_backbone,
        "head_lr_grid": [o.lr_head] if o.lr_head is not None else list(o.head_lr_grid),
        "weight_decay": o.weight_decay,
        "warmup_epochs": o.warmup_epochs,
        "schedule": o.schedule,
        "plateau_patience": o.plateau_patience,
        "patience": o.patience,
        "eval_every": o.eval_every,
        "augment": ctx.augment.to_dict() if ctx.augment else None,
        "image_size": o.image_size,
        "input_size": ctx.model_spec.input_size,
        "image_store": ctx.store.content_fingerprint,
        "device": ctx.accel.device.type,
        "dtype": ctx.accel.dtype,
    }


def new_model(ctx: Context, seed: int) -> ClassifierModel:
    """A fresh classifier on a copy of the loaded backbone, initialised from `seed`."""
    return build_classifier(copy.deepcopy(ctx.loaded), ctx.strategy, seed=seed)


def _train_run(p: Problem, ctx: Context) -> Path:
    run_dir = prepare_run_dir(run_dir_for(ctx.runs_root, p.spec), ctx.runs_root, ctx.force, True)
    settings = _settings(ctx)
    key = fingerprint({"spec": p.spec.model_dump(mode="json"), "train": p.train_ids, **settings})
    results = [
        _fit(p, ctx, lr, run_dir / STATE_DIR / f"head-lr-{lr:g}", key)
        for lr in settings["head_lr_grid"]
    ]
    start = time.perf_counter()
    best = min(results, key=lambda r: r.state.best_loss)  # first in grid order on ties
    model = new_model(ctx, p.spec.seed)
    load_trainable(model, torch.load(best.best_path, weights_only=True), ctx.strategy == "fft")
    model = prepare_model(model, ctx.accel)
    for name in SAVED_MODEL_FILES:  # left by a finalisation that was killed before DONE
        (run_dir / name).unlink(missing_ok=True)
    save_trained(model, run_dir)
    steps = Steps(model, ctx.model_spec, ctx.accel, torch.ones(2, device=ctx.accel.device))
    frame = ctx.task.manifest.frame.set_index("image_id")
    parts = []
    for split, ids in (("val", p.fold.val), ("test", p.fold.test)):
        rows = ctx.store.indices(ids)
        _, prob = steps.predict(ctx.store, rows, ctx.opts.batch_size)
        pid = frame.loc[ids, "patient_id"].to_numpy()
        parts.append(pd.DataFrame({"image_id": ids, "patient_id": pid, "split": split}))
        parts[-1] = parts[-1].assign(y_true=ctx.y[rows], p_pos=prob)
    search = [
        {"lr_head": r.lr_head, "best_loss": r.state.best_loss, "best_epoch": r.state.best_epoch}
        | {"stopped_epoch": r.state.epoch}
        for r in results
    ]
    cfg = ctx.task.config
    extra = p.spec.extra | {
        **settings,
        "lr_head": best.lr_head,
        "head_lr_search": search,
        "best_epoch": best.state.best_epoch,
        "val_loss": best.state.best_loss,
        "n_train": len(p.train_ids),
        "outcome": cfg.outcome,
        "positive": str(cfg.positive),
        "image_crop": ctx.store_params.crop,
    }
    write_spec(run_dir, p.spec.model_copy(update={"extra": extra}))
    count = count_parameters(model)
    preds = pd.concat(parts, ignore_index=True)
    extra_s = time.perf_counter() - start
    cost = run_cost([r.state.cost for r in results], extra_s, count.trainable, count.total)
    finish_run(run_dir, preds, cost=cost)
    shutil.rmtree(run_dir / STATE_DIR, ignore_errors=True)  # DONE is written: states are spent
    return run_dir


def _fit(p: Problem, ctx: Context, lr_head: float, state_dir: Path, key: str) -> CandidateResult:
    """Train one head-lr candidate to its early stop (or resume it, or return it if finished)."""
    opts, accel, seed = ctx.opts, ctx.accel, p.spec.seed
    key = fingerprint({"run": key, "lr_head": lr_head})
    meter = CostMeter(accel.device)
    saved = load_state(state_dir, key)
    if saved is not None and saved.history and saved.history[-1].get("finished"):
        ctx.tick(opts.epochs)
        return CandidateResult(lr_head, saved, state_dir / best_file(saved.best_epoch))
    full = ctx.strategy == "fft"
    raw = prepare_model(new_model(ctx, seed), accel)
    model = torch.compile(raw) if opts.compile else raw
    train_rows = ctx.store.indices(p.train_ids)
    val_rows = ctx.store.indices(p.fold.val)
    weight = torch.tensor(class_weights(ctx.y[train_rows]), dtype=torch.float32)
    steps = Steps(model, ctx.model_spec, accel, weight.to(accel.device))
    optimizer = torch.optim.AdamW(
        [
            {"params": raw.backbone_parameters(), "lr": ctx.lr_backbone},
            {"params": raw.head_parameters(), "lr": lr_head},
        ],
        weight_decay=opts.weight_decay,
    )
    n_batches = len(epoch_batches(train_rows, opts.batch_size, seed, 0))
    per_epoch = -(-n_batches // opts.accumulate)
    schedule = Schedule(
        optimizer,
        opts.schedule,
        warmup_steps=opts.warmup_epochs * per_epoch,
        total_steps=opts.epochs * per_epoch,
        plateau_patience_evals=plateau_patience_evals(opts.plateau_patience, opts.eval_every),
    )
    if saved is not None:
        state = saved
        load_trainable(raw, state.weights, full)
        optimizer.load_state_dict(state.optimizer)
        schedule.load_state_dict(state.schedulers)
        set_rng_state(state.rng)
        meter.restore(state.cost)
        append_train_log(
            state_dir.parent.parent, {"event": "resume", "lr_head": lr_head, "epoch": state.epoch}
        )
    else:
        torch.manual_seed(seed)  # dropout (e.g. LoRA's) draws from the global generator
        state = TrainState(key, 0, {}, {}, {}, {}, best_epoch=0, best_loss=float("inf"), cost={})
    ctx.tick(state.epoch)
    for epoch in range(state.epoch, opts.epochs):
        raw.train()
        batches = epoch_batches(train_rows, opts.batch_size, seed, epoch)
        gen = torch.Generator(device=accel.device).manual_seed(seed * 100_003 + epoch)
        loader = PrefetchLoader(ctx.store, batches, pin_memory=accel.pin_memory)
        after = schedule.after_step
        train_loss = train_epoch(
            steps,
            loader,
            len(batches),
            ctx.y,
            optimizer,
            after,
            opts.accumulate,
            meter,
            ctx.augment,
            gen,
        )
        ctx.tick(1)
        done = epoch + 1
        if done % opts.eval_every and done != opts.epochs:
            continue
        with meter.step(training=False):
            logits, _ = steps.predict(ctx.store, val_rows, opts.batch_size)
        val_loss = weighted_loss(logits, ctx.y[val_rows])
        schedule.after_eval(val_loss)
        improved = val_loss < state.best_loss
        if improved:
            state.best_loss, state.best_epoch = val_loss, done
        stop = done - state.best_epoch >= opts.patience
        record = {
            "lr_head": lr_head,
            "epoch": done,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lrs": [g["lr"] for g in optimizer.param_groups],
            "best_epoch": state.best_epoch,
            "finished": stop or done == opts.epochs,
        }
        state.history.append(record)
        state.epoch = done
        state.weights = trainable_state(raw, full)  # the best too, when it improved
        state.optimizer = optimizer.state_dict()
        state.schedulers = schedule.state_dict()
        state.rng = rng_state()
        state.cost = meter.state()
        save_state(state_dir, state, state.weights if improved else None)
        append_train_log(state_dir.parent.parent, record)  # after the state: never logged twice
        if stop:
            ctx.tick(opts.epochs - done)
            break
    return CandidateResult(lr_head, state, state_dir / best_file(state.best_epoch))
