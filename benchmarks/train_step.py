"""Step time of the streaming trainer against a minimal hand-written torch + peft loop.

    python benchmarks/train_step.py [--device auto] [--steps 6] [--rounds 5]
        [--out benchmarks/results/train_step.json]

Cases: resnet18 FFT, resnet18 BitFit, tiny DINOv2 LoRA r8 (random weights, so no download).

- trainer: `progbench.train.steps.train_epoch`, the loop `progbench train` runs each epoch:
  prefetching loader over the uint8 image store -> device (pinned, non-blocking on CUDA) ->
  `to_input` (scale, replicate channels, mean/std) -> autocast -> ClassifierModel ->
  class-weighted cross-entropy -> backward -> AdamW (backbone and head groups) -> scheduler ->
  cost meter.
- minimal: the same batches read from the same store inside the loop, uint8 -> float / 255 ->
  3 channels -> mean/std by hand, the encoder (through `peft.get_peft_model` for LoRA) and an
  `nn.Linear` head, cross-entropy with the same class weights, backward, AdamW.

Both loops use the same initial weights, batches, batch size, dtype (bf16 autocast on CUDA, fp32
on the CPU), optimizer groups and learning rates, and the same train/eval mode of every layer
(frozen BatchNorm layers stay in eval mode under PEFT and BitFit, as in the trainer). Rounds
alternate between the two loops in one process, after one warm-up round each; the ratio is of the
median per-step times. The machine's load average is recorded: on a shared machine it moves both
loops, which is why they alternate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from progbench.provenance import git_sha, library_versions, now_iso


@dataclass(frozen=True)
class Case:
    name: str
    backbone: str
    strategy: str
    input_size: int | None  # None: the backbone's own


def _cases(cpu: bool) -> list[Case]:
    size = 96 if cpu else 224  # resnet18 at 224 px makes one CPU round take minutes
    return [
        Case("resnet18 FFT", "resnet18", "fft", size),
        Case("tiny DINOv2 LoRA r8", "tiny-dinov2", "lora-r8", None),
        Case("resnet18 BitFit", "resnet18", "bitfit", size),
    ]


def _minimal_model(backbone: str, strategy: str, seed: int) -> tuple[nn.Module, nn.Linear]:
    """The same backbone and head built by hand: the encoder, peft for LoRA, biases for BitFit."""
    from peft import LoraConfig, get_peft_model

    from progbench.models.loaders import load_backbone

    loaded = load_backbone(backbone, "random")
    encoder: nn.Module = loaded.encoder
    spec = loaded.spec
    for name in spec.unused_parameters:  # never reached by the feature path: frozen always
        encoder.get_parameter(name).requires_grad_(False)
    torch.manual_seed(seed)
    if strategy == "fft":
        pass  # every parameter trains
    elif strategy == "bitfit":
        for name, p in encoder.named_parameters():
            p.requires_grad_(name.endswith(".bias"))
    else:
        t = spec.targets.for_kind("lora")
        config = LoraConfig(r=8, lora_alpha=1, lora_dropout=0.1, target_modules=t.modules)
        encoder = get_peft_model(encoder, config)
    head = nn.Linear(spec.feature_dim, 2)
    return encoder, head


def _set_mode(modules: list[nn.Module], freeze_bn: bool) -> None:
    for m in modules:
        m.train()
        if freeze_bn:
            for sub in m.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(case: Case, args: argparse.Namespace, root: Path) -> dict[str, object]:
    from progbench.accel import prepare_model, resolve_accel
    from progbench.cache.imagestore import ImageStore, ImageStoreParams, build_image_store
    from progbench.cache.loader import PrefetchLoader
    from progbench.data.manifest import load_task
    from progbench.models.loaders import load_backbone
    from progbench.models.registry import get_backbone_spec, get_strategy_spec
    from progbench.models.strategies import build_classifier
    from progbench.train.cost import CostMeter
    from progbench.train.schedule import Schedule
    from progbench.train.steps import Steps, class_weights, train_epoch, with_input_size

    task = load_task(root / "cohort" / "tasks" / "severity.yaml")
    bspec = get_backbone_spec(case.backbone)
    spec = with_input_size(bspec, case.input_size)
    accel = resolve_accel(args.device, "auto", bspec.is_cnn)
    dev = accel.device
    # The store holds images at the model's input side, so neither loop resizes.
    params = ImageStoreParams(size=spec.input_size)
    store = ImageStore(build_image_store(task.manifest, params, root / "cache").path)
    y_by_id = dict(zip(task.manifest.frame["image_id"], task.labels, strict=True))
    labels = np.array([y_by_id[i] for i in store.image_ids], dtype=np.int64)
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(labels), args.batch_size, replace=False) for _ in range(args.steps)]
    weight = torch.tensor(class_weights(labels), dtype=torch.float32, device=dev)
    lr = get_strategy_spec(case.strategy).backbone_lr or 1e-4
    freeze_bn = case.strategy != "fft"

    # --- the trainer's pieces, as progbench.train.finetune builds them
    loaded = load_backbone(case.backbone, "random")
    model = prepare_model(build_classifier(loaded, case.strategy, seed=0), accel)
    steps = Steps(model, spec, accel, weight)
    opt_t = torch.optim.AdamW(
        [
            {"params": model.backbone_parameters(), "lr": lr},
            {"params": model.head_parameters(), "lr": 1e-3},
        ]
    )
    schedule = Schedule(opt_t, "cosine", 0, 10_000, 1)
    meter = CostMeter(dev)

    def trainer() -> None:
        model.train()
        loader = PrefetchLoader(store, batches, pin_memory=accel.pin_memory)
        train_epoch(
            steps, loader, len(batches), labels, opt_t, schedule.after_step, 1, meter, None, None
        )

    # --- the minimal loop
    encoder, head = _minimal_model(case.backbone, case.strategy, seed=0)
    encoder, head = encoder.to(dev), head.to(dev)
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    opt_m = torch.optim.AdamW(
        [{"params": trainable, "lr": lr}, {"params": head.parameters(), "lr": 1e-3}]
    )
    mean = torch.tensor(spec.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=dev).view(1, 3, 1, 1)
    autocast = accel.autocast

    def minimal() -> None:
        _set_mode([encoder, head], freeze_bn)
        for rows in batches:
            x = torch.from_numpy(store.read(rows)).to(dev).float().div(255.0)
            x = (x.unsqueeze(1).expand(-1, 3, -1, -1) - mean) / std
            y = torch.from_numpy(labels[rows]).to(dev)
            with autocast():
                logits = head(encoder(x))
            loss = F.cross_entropy(logits.float(), y, weight=weight)
            loss.backward()
            opt_m.step()
            opt_m.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {"trainer": [], "minimal": []}
    loops: dict[str, Callable[[], None]] = {"trainer": trainer, "minimal": minimal}
    for r in range(args.rounds + 1):
        order = ("trainer", "minimal") if r % 2 == 0 else ("minimal", "trainer")
        for name in order:
            _sync(dev)
            t0 = time.perf_counter()
            loops[name]()
            _sync(dev)
            if r > 0:  # round 0 warms up both (allocator, oneDNN/cuDNN kernel choice)
                times[name].append((time.perf_counter() - t0) / args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "case": case.name,
        "backbone": case.backbone,
        "strategy": case.strategy,
        "input_size": spec.input_size,
        "batch_size": args.batch_size,
        "dtype": accel.dtype,
        "device": str(dev),
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "trainer_step_s": {"median": med["trainer"], "min": min(times["trainer"])},
        "minimal_step_s": {"median": med["minimal"], "min": min(times["minimal"])},
        "ratio_median": med["trainer"] / med["minimal"],
        "ratio_min": min(times["trainer"]) / min(times["minimal"]),
        "trainer_rounds_s": times["trainer"],
        "minimal_rounds_s": times["minimal"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=None, help="default 16 CPU, 32 CUDA")
    parser.add_argument("--steps", type=int, default=6, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per loop")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step.json"))
    args = parser.parse_args(argv)
    cpu = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
    args.batch_size = args.batch_size or (16 if cpu else 32)

    from progbench.data.synth import synthesize

    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "cohort", patients=60, centers=2, seed=0)
        for case in _cases(cpu):
            res = run_case(case, args, root)
            results.append(res)
            print(
                f"{res['case']:<22} {res['device']:<5} {res['dtype']:<5} "
                f"in {res['input_size']} px, batch {res['batch_size']}: "
                f"trainer {res['trainer_step_s']['median'] * 1e3:8.1f} ms/step, "  # type: ignore[index]
                f"minimal {res['minimal_step_s']['median'] * 1e3:8.1f} ms/step, "  # type: ignore[index]
                f"ratio {res['ratio_median']:.3f} (of minima {res['ratio_min']:.3f})",
                flush=True,
            )
    payload = {
        "benchmark": "train_step",
        "results": results,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "git_sha": git_sha(),
        "library_versions": library_versions(),
        "measured_at": now_iso(),
        "python": sys.version.split()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
