"""Training one head-lr candidate of a streamed run to its early stop, resumably.

AdamW with one lr for the backbone (or adapter) parameters and one for the head; warm-up then
plateau or cosine; validation every `eval_every` epochs; early stopping on the validation loss
(EarlyStopping: `patience` epochs without improvement, counted from `min_epochs` at the earliest).
The full state is saved at every evaluation (progbench.train.checkpoint), so a killed run
resumes where it stopped and ends with the same checkpoint.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from progbench.accel import Accel, prepare_model
from progbench.cache.imagestore import ImageStore
from progbench.cache.loader import PrefetchLoader
from progbench.config import BackboneSpec
from progbench.models.loaders import LoadedBackbone
from progbench.models.strategies import ClassifierModel, Strategy
from progbench.provenance import fingerprint
from progbench.runs import append_train_log
from progbench.train.augment import AugmentConfig
from progbench.train.checkpoint import (
    TrainState,
    best_file,
    load_state,
    rng_state,
    save_state,
    set_rng_state,
)
from progbench.train.cost import CostMeter
from progbench.train.options import FinetuneOptions
from progbench.train.plan import Problem
from progbench.train.schedule import Schedule, plateau_patience_evals
from progbench.train.steps import Steps, class_weights, epoch_batches, train_epoch, weighted_loss


@dataclass(frozen=True)
class EarlyStopping:
    """Stop once the validation loss has not improved for `patience` epochs, but never before
    epoch `min_epochs` (the reference study: 100 epochs without a better validation loss, never
    before epoch 50)."""

    patience: int
    min_epochs: int = 0

    def stops(self, epoch: int, best_epoch: int) -> bool:
        """`patience` epochs without a better validation loss, and never before `min_epochs`."""
        return epoch >= self.min_epochs and epoch - best_epoch >= self.patience

    def stop_epoch(self, history: Iterable[tuple[int, float]]) -> int | None:
        """The epoch of the evaluation at which training on this history of (epoch, validation
        loss) stops, as the loop decides it; None: it does not stop."""
        best_epoch, best_loss = 0, math.inf
        for epoch, loss in history:
            if loss < best_loss:
                best_epoch, best_loss = epoch, loss
            if self.stops(epoch, best_epoch):
                return epoch
        return None


@dataclass
class FitContext:
    """What every candidate of every run of one fine-tuning call shares."""

    loaded: LoadedBackbone
    model_spec: BackboneSpec  # the backbone's spec with the input size trained at
    strategy: Strategy
    opts: FinetuneOptions
    accel: Accel
    store: ImageStore
    y: np.ndarray  # label per store row
    lr_backbone: float
    augment: AugmentConfig | None
    tick: Callable[[int], None] = lambda _: None  # advance the progress display by n epochs

    def new_model(self, seed: int) -> ClassifierModel:
        """A fresh classifier on a copy of the loaded backbone, initialised from `seed`."""
        return self.strategy.build(copy.deepcopy(self.loaded), seed=seed)


@dataclass(frozen=True)
class CandidateResult:
    lr_head: float
    state: TrainState  # as saved at its last evaluation (cost included)
    best_path: Path


@dataclass
class _Loop:
    """The objects one candidate trains with."""

    raw: ClassifierModel
    steps: Steps
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    train_rows: np.ndarray
    val_rows: np.ndarray


def _build_loop(p: Problem, ctx: FitContext, lr_head: float) -> _Loop:
    opts, accel, seed = ctx.opts, ctx.accel, p.spec.seed
    raw = prepare_model(ctx.new_model(seed), accel)
    # torch.compile of a module is an OptimizedModule (typed as any callable).
    model = cast(torch.nn.Module, torch.compile(raw)) if opts.compile else raw
    train_rows = ctx.store.indices(p.train_ids)
    weight = torch.tensor(class_weights(ctx.y[train_rows]), dtype=torch.float32)
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
        plateau_factor=opts.plateau_factor,
        min_lr=opts.min_lr,
    )
    steps = Steps(model, ctx.model_spec, accel, weight.to(accel.device))
    return _Loop(raw, steps, optimizer, schedule, train_rows, ctx.store.indices(p.fold.val))


def _start_state(
    loop: _Loop, ctx: FitContext, saved: TrainState | None, key: str, seed: int
) -> TrainState:
    if saved is None:
        torch.manual_seed(seed)  # dropout (e.g. LoRA's) draws from the global generator
        return TrainState(key, 0, {}, {}, {}, {}, best_epoch=0, best_loss=float("inf"), cost={})
    ctx.strategy.load_trainable(loop.raw, saved.weights)
    loop.optimizer.load_state_dict(saved.optimizer)
    loop.schedule.load_state_dict(saved.schedulers)
    set_rng_state(saved.rng)
    return saved


def fit_candidate(
    p: Problem, ctx: FitContext, lr_head: float, state_dir: Path, run_key: str
) -> CandidateResult:
    """Train one head-lr candidate to its early stop (or resume it, or return it if finished)."""
    opts, seed = ctx.opts, p.spec.seed
    key = fingerprint({"run": run_key, "lr_head": lr_head})
    saved = load_state(state_dir, key)
    if saved is not None and saved.history and saved.history[-1].get("finished"):
        ctx.tick(opts.epochs)
        return CandidateResult(lr_head, saved, state_dir / best_file(saved.best_epoch))
    loop = _build_loop(p, ctx, lr_head)
    meter = CostMeter(ctx.accel.device)
    state = _start_state(loop, ctx, saved, key, seed)
    log_dir = state_dir.parent.parent
    if saved is not None:
        meter.restore(state.cost)
        append_train_log(log_dir, {"event": "resume", "lr_head": lr_head, "epoch": state.epoch})
    ctx.tick(state.epoch)
    for epoch in range(state.epoch, opts.epochs):
        train_loss = _train_one_epoch(loop, ctx, seed, epoch, meter)
        ctx.tick(1)
        done = epoch + 1
        if done % opts.eval_every and done != opts.epochs:
            continue
        if _evaluate_and_save(loop, ctx, state, done, train_loss, lr_head, meter, state_dir):
            ctx.tick(opts.epochs - done)
            break
    return CandidateResult(lr_head, state, state_dir / best_file(state.best_epoch))


def _train_one_epoch(
    loop: _Loop, ctx: FitContext, seed: int, epoch: int, meter: CostMeter
) -> float:
    loop.raw.train()
    batches = epoch_batches(loop.train_rows, ctx.opts.batch_size, seed, epoch)
    gen = torch.Generator(device=ctx.accel.device).manual_seed(seed * 100_003 + epoch)
    loader = PrefetchLoader(ctx.store, batches, pin_memory=ctx.accel.pin_memory)
    return train_epoch(
        loop.steps,
        loader,
        len(batches),
        ctx.y,
        loop.optimizer,
        loop.schedule.after_step,
        ctx.opts.accumulate,
        meter,
        ctx.augment,
        gen,
    )


def _evaluate_and_save(
    loop: _Loop,
    ctx: FitContext,
    state: TrainState,
    done: int,
    train_loss: float,
    lr_head: float,
    meter: CostMeter,
    state_dir: Path,
) -> bool:
    """Validate, step the plateau scheduler, save the state; True when training stops here."""
    with meter.step(training=False):
        logits, _ = loop.steps.predict(ctx.store, loop.val_rows, ctx.opts.batch_size)
    val_loss = weighted_loss(logits, ctx.y[loop.val_rows])
    loop.schedule.after_eval(val_loss)
    improved = val_loss < state.best_loss
    if improved:
        state.best_loss, state.best_epoch = val_loss, done
    stop = EarlyStopping(ctx.opts.patience, ctx.opts.min_epochs).stops(done, state.best_epoch)
    record: dict[str, Any] = {
        "lr_head": lr_head,
        "epoch": done,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "lrs": [g["lr"] for g in loop.optimizer.param_groups],
        "best_epoch": state.best_epoch,
        "finished": stop or done == ctx.opts.epochs,
    }
    state.history.append(record)
    state.epoch = done
    state.weights = ctx.strategy.trainable_state(loop.raw)  # the best too, when it improved
    state.optimizer = loop.optimizer.state_dict()
    state.schedulers = loop.schedule.state_dict()
    state.rng = rng_state()
    state.cost = meter.state()
    save_state(state_dir, state, state.weights if improved else None)
    append_train_log(state_dir.parent.parent, record)  # after the state: never logged twice
    return stop
