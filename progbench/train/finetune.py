"""The streaming PEFT/FFT trainer (`progbench train --strategy fft|lora-r*|vera-r*|bitfit|ia3`).

One loop for every streamed strategy: images stream from the uint8 image store through a
model on the accelerator; class-weighted cross-entropy; early stopping on the validation loss,
and the best checkpoint restored for the predictions (progbench.train.fit).

When no head lr is given, each lr of the grid is trained as its own candidate and the one with
the lowest best validation loss is kept (docs/METHODOLOGY.md, "Streaming PEFT/FFT trainer");
a preset whose `variants` grid holds several head inputs trains each (variant, lr) pair.
Runs are claimed one by one (progbench.runs.lifecycle): concurrent commands on one tree share
the work, and a killed command resumes where it stopped; finished runs are skipped.
"""

from __future__ import annotations

import dataclasses
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

from progbench.accel import prepare_model, resolve_accel
from progbench.cache.imagestore import ImageStore, ImageStoreParams, build_image_store
from progbench.config.keys import identity_of
from progbench.data.manifest import Task
from progbench.data.splits import Splits
from progbench.errors import ConfigError
from progbench.evaluate.finish import finish_scored_run
from progbench.models.loaders import load_backbone
from progbench.models.params import count_parameters
from progbench.models.registry import get_backbone_spec
from progbench.models.strategies import Strategy, get_strategy
from progbench.models.strategies.files import SAVED_MODEL_FILES, save_trained
from progbench.provenance import fingerprint
from progbench.runs import (
    STATE_DIR,
    claim_run,
    claims,
    prepare_run_dir,
    run_dir_for,
    write_spec,
)
from progbench.train.augment import AugmentConfig
from progbench.train.cost import run_cost
from progbench.train.fit import CandidateResult, FitContext, fit_candidate
from progbench.train.options import FinetuneOptions
from progbench.train.plan import Problem, SplitRequest, plan_runs
from progbench.train.steps import Steps, with_input_size

ProgressFactory = Callable[[str], Any]
__all__ = ["STATE_DIR", "FinetuneContext", "prepare_finetune", "run_finetune", "train_problems"]


@dataclass
class FinetuneContext:
    """A FitContext plus what placing and describing the runs needs."""

    task: Task
    fit: FitContext
    store_params: ImageStoreParams
    runs_root: Path
    force: bool

    @property
    def strategy(self) -> Strategy:
        return self.fit.strategy

    def identity(self) -> dict[str, Any]:
        loaded = self.fit.loaded
        return {
            "backbone": loaded.spec.name,
            "weights": loaded.weights,
            "weights_fingerprint": loaded.weights_fingerprint,
            "strategy": self.strategy.name,
        }

    def settings(self) -> dict[str, Any]:
        """What, besides the data, decides a streamed run's predictions (its identity)."""
        o, fit = self.fit.opts, self.fit
        spec = fit.model_spec
        # The values in effect where an option leaves them to the strategy, backbone or device.
        in_effect = {
            "lr_backbone": fit.lr_backbone,
            "head_lr_grid": [o.lr_head] if o.lr_head is not None else list(o.head_lr_grid),
            "augment": fit.augment.to_dict() if fit.augment else None,
            "input_size": spec.input_size,
            "dtype": fit.accel.dtype,
        }
        out = {
            "strategy": self.strategy.settings(),
            "backbone": spec.feature_definition() | spec.transform(),
            "image_store": fit.store.content_fingerprint,
            "train": identity_of(o, resolved=in_effect),
        }
        if (target_set := self.strategy.target_set) is not None:  # where the adapters go
            out["adapters"] = identity_of(spec.targets.for_kind(target_set))
        return out

    def records(self) -> dict[str, Any]:
        """Recorded, not compared: they cannot change the predictions."""
        return {
            "train_preset": self.fit.opts.preset,
            "device": self.fit.accel.device.type,
            "compile": self.fit.opts.compile,
            "outcome": self.task.config.outcome,
            "positive": str(self.task.config.positive),
            "image_size": self.fit.opts.image_size,
            "input_size": self.fit.model_spec.input_size,
            "image_crop": self.store_params.crop,
        }


def prepare_finetune(
    task: Task,
    backbone: str,
    weights: str,
    strategy: str | Strategy,
    runs_root: Path,
    opts: FinetuneOptions,
    force: bool = False,
) -> FinetuneContext:
    """Check the pair, load the backbone and open (or build) the image store."""
    strat = get_strategy(strategy)
    bspec = get_backbone_spec(backbone)
    if strat.path != "stream":
        raise ConfigError(
            f"{strat.name} is trained on cached features, not by streaming images",
            "Use train_features (`progbench train --strategy lp`).",
        )
    strat.refuse_if_not_applicable(bspec)
    lr_backbone = opts.lr_backbone or strat.backbone_lr or 1e-4
    _check_options(opts, lr_backbone)
    model_spec = with_input_size(bspec, opts.input_size)
    loaded = load_backbone(backbone, weights)
    strat.refuse_if_not_applicable(bspec, loaded.encoder)  # every target on the real modules
    params = ImageStoreParams(size=opts.image_size)
    store = ImageStore(build_image_store(task.manifest, params, opts.cache_dir, opts.workers).path)
    y_by_id = dict(zip(task.manifest.frame["image_id"], task.labels, strict=True))
    fit = FitContext(
        loaded=loaded,
        model_spec=model_spec,
        strategy=strat,
        opts=opts,
        accel=resolve_accel(opts.device, opts.dtype, bspec.is_cnn),  # autocast, never bf16 weights
        store=store,
        y=np.array([y_by_id[i] for i in store.image_ids], dtype=np.int64),
        lr_backbone=lr_backbone,
        augment=AugmentConfig() if opts.augment else None,
    )
    return FinetuneContext(task, fit, params, Path(runs_root), force)


def _check_options(opts: FinetuneOptions, lr_backbone: float) -> None:
    if min(opts.epochs, opts.batch_size, opts.accumulate, opts.eval_every, opts.patience) < 1:
        raise ConfigError(
            "--epochs, --batch-size, --accumulate, --eval-every and --patience must be >= 1"
        )
    heads = [opts.lr_head] if opts.lr_head is not None else list(opts.head_lr_grid)
    if opts.min_lr and opts.min_lr >= min(lr_backbone, *heads):
        raise ConfigError(
            f"min_lr {opts.min_lr:g} is not below every starting lr (backbone {lr_backbone:g}, "
            f"head {', '.join(f'{lr:g}' for lr in heads)})",
            "Lower min_lr: the floor of the schedule must be below every starting lr.",
        )


def train_problems(
    ctx: FinetuneContext, problems: list[Problem], progress: ProgressFactory | None = None
) -> tuple[list[Path], list[Path]]:
    """Train every problem this process can claim, then those others held; (written, skipped)."""
    opts = ctx.fit.opts
    n_lr = 1 if opts.lr_head is not None else len(opts.head_lr_grid)
    n_cand = n_lr * len(ctx.strategy.head_variants(ctx.fit.model_spec))
    total, done = len(problems) * n_cand * opts.epochs, [0]
    name = f"{ctx.strategy.name} {ctx.fit.loaded.spec.name}: {len(problems)} run(s), epochs"
    written: list[Path] = []
    skipped: list[Path] = []
    with claims(ctx.runs_root) as held, progress(name) if progress else nullcontext() as update:
        if update is not None:

            def tick(n: int) -> None:
                done[0] += n
                update(done[0], total)

            ctx.fit.tick = tick
        busy: list[Problem] = []
        for wait, todo in ((False, problems), (True, None)):
            for p in todo if todo is not None else busy:
                d = run_dir_for(ctx.runs_root, p.spec)
                state = claim_run(held, d, p.spec, ctx.force, wait=wait)
                if state is None:
                    busy.append(p)
                elif state:
                    written.append(_train_run(p, ctx))
                    held.release(d)
                else:
                    skipped.append(d)
                    ctx.fit.tick(n_cand * opts.epochs)
    return written, skipped


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
    request: SplitRequest | None = None,
    source: Path | None = None,
) -> tuple[list[Path], list[Path]]:
    """Train the runs of `splits` that `request` asks for (default: the full-data runs)."""
    ctx = prepare_finetune(task, backbone, weights, strategy, runs_root, opts, force)
    req = request or SplitRequest()
    problems = plan_runs(
        task, splits, req, source or Path("splits"), ctx.identity(), ctx.settings()
    )
    return train_problems(ctx, problems, progress)


def _train_run(p: Problem, ctx: FinetuneContext) -> Path:
    run_dir = prepare_run_dir(run_dir_for(ctx.runs_root, p.spec), ctx.runs_root, ctx.force, True)
    key = fingerprint(
        {"spec": p.spec.model_dump(mode="json", exclude={"extra"}), "train": p.train_ids}
    )
    grid = p.spec.settings["train"]["head_lr_grid"]
    fits, results = [], []
    for fit in _variant_fits(ctx):
        v = fit.strategy.variant_for(fit.model_spec)
        # The cls1 candidates keep the state folders and keys runs had before head variants.
        tag, v_key = ("", key) if v.is_default else (f"{v.name}-", fingerprint([key, v.name]))
        for lr in grid:
            state_dir = run_dir / STATE_DIR / f"head-{tag}lr-{lr:g}"
            results.append(fit_candidate(p, fit, lr, state_dir, v_key))
            fits.append(fit)
    start = time.perf_counter()
    i_best = min(range(len(results)), key=lambda i: results[i].state.best_loss)  # first on ties
    best, best_fit = results[i_best], fits[i_best]
    model = best_fit.new_model(p.spec.seed)
    best_fit.strategy.load_trainable(model, torch.load(best.best_path, weights_only=True))
    model = prepare_model(model, ctx.fit.accel)
    for name in SAVED_MODEL_FILES:  # left by a finalisation that was killed before DONE
        (run_dir / name).unlink(missing_ok=True)
    save_trained(model, run_dir)
    preds = _predictions(p, ctx, model)
    write_spec(
        run_dir,
        p.spec.model_copy(
            update={"extra": p.spec.extra | _selection(p, ctx, results, fits, i_best)}
        ),
    )
    count = count_parameters(model)
    cost = run_cost(
        [r.state.cost for r in results], time.perf_counter() - start, count.trainable, count.total
    )
    finish_scored_run(run_dir, preds, cost=cost)
    shutil.rmtree(run_dir / STATE_DIR, ignore_errors=True)  # DONE is written: states are spent
    return run_dir


def _predictions(p: Problem, ctx: FinetuneContext, model: torch.nn.Module) -> pd.DataFrame:
    fit = ctx.fit
    steps = Steps(model, fit.model_spec, fit.accel, torch.ones(2, device=fit.accel.device))
    frame = ctx.task.manifest.frame.set_index("image_id")
    parts = []
    for split, ids in (("val", p.fold.val), ("test", p.fold.test)):
        rows = fit.store.indices(ids)
        _, prob = steps.predict(fit.store, rows, fit.opts.batch_size)
        pid = frame.loc[ids, "patient_id"].to_numpy()
        part = pd.DataFrame({"image_id": ids, "patient_id": pid, "split": split})
        parts.append(part.assign(y_true=fit.y[rows], p_pos=prob))
    return pd.concat(parts, ignore_index=True)


def _variant_fits(ctx: FinetuneContext) -> list[FitContext]:
    """One FitContext per head variant of the preset (the backbone offers them all)."""
    strategy, spec = ctx.strategy, ctx.fit.model_spec
    return [
        dataclasses.replace(ctx.fit, strategy=strategy.with_variant(v))
        for v in strategy.head_variants(spec)
    ]


def _selection(
    p: Problem,
    ctx: FinetuneContext,
    results: list[CandidateResult],
    fits: list[FitContext],
    i_best: int,
) -> dict[str, Any]:
    variants = [f.strategy.variant_for(f.model_spec).name for f in fits]
    search = [
        {"lr_head": r.lr_head, "best_loss": r.state.best_loss, "best_epoch": r.state.best_epoch}
        | {"stopped_epoch": r.state.epoch}
        | ({"variant": v} if len(set(variants)) > 1 else {})
        for r, v in zip(results, variants, strict=True)
    ]
    best = results[i_best]
    return ctx.records() | {
        "variant": variants[i_best],
        "lr_head": best.lr_head,
        "head_lr_search": search,
        "best_epoch": best.state.best_epoch,
        "val_loss": best.state.best_loss,
        "n_train": len(p.train_ids),
    }
