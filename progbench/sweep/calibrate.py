"""Calibration: measured seconds per image of training and of frozen forwards on this device.

What `progbench sweep plan --calibrate` projects a grid's device-hours from. For each backbone
the full-size architecture is built with random weights (no download), then, after `warmup`
untimed repetitions, the device is synchronised around `steps` timed ones of:

- training (streamed strategies): the trainer's own pieces, as `progbench train` builds them: the
  strategy's classifier, `prepare_model`, `Steps` under the trainer's precision (bf16 autocast on
  CUDA), on-device augmentation, class-weighted loss, AdamW over the backbone and head groups,
  one `train_epoch` over `steps` batches; the data path (store reads, prefetch) is left out, as
  on CUDA it overlaps the model;
- frozen forwards: `progbench.extract.features.encode`, extraction's forward, under extraction's
  precision (open_clip casts its weights to bf16). LP's cost is this: its head solves on cached
  features in seconds.

Records are cached in `cache_root()/calibration/<device>.json`, keyed by library versions, the
registry files of the backbone (and the one it twins) and strategy, and the measurement
settings: a second call with the same inputs measures nothing. Pass cache=False to re-measure.
"""

from __future__ import annotations

import copy
import gc
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from progbench.accel import Accel, prepare_model, resolve_accel
from progbench.atomic import atomic_write_json
from progbench.cache.paths import cache_root
from progbench.errors import ConfigError
from progbench.extract.features import encode
from progbench.models.loaders import LoadedBackbone, load_backbone
from progbench.models.registry import get_backbone_spec, registry_source
from progbench.models.strategies import get_strategy, resolve
from progbench.provenance import fingerprint, library_versions, now_iso
from progbench.train.augment import AugmentConfig
from progbench.train.steps import Steps, class_weights, train_epoch

ProgressFn = Callable[[int, int], None]  # (backbones done, total)
_SCHEMA = 1  # bump when what is timed, or the record layout, changes
HEAD_LR = 1e-3  # any head lr costs the same; the study's middle value


@dataclass(frozen=True)
class CalibrationRecord:
    backbone: str
    strategy: str
    kind: str  # the strategy's kind: lp, fft, lora, vera, bitfit, ia3
    applicable: bool
    reason: str | None  # why not, when not applicable (nothing is timed then)
    train_s_per_image: float | None  # one training step's time / batch size; None for LP
    extract_s_per_image: float | None  # one frozen forward's time / batch size
    # Peak device memory of the model copy and its timed work (torch.cuda.max_memory_allocated,
    # less what was held before: the original it was copied from); None on the CPU.
    peak_memory_mb: float | None
    device: str  # the device's name ("NVIDIA H200", "cpu")
    dtype: str  # fp32 | bf16
    batch_size: int
    input_size: int
    steps: int
    warmup: int
    key: str
    measured_at: str


def device_slug(name: str) -> str:
    """A file name for a device name: 'NVIDIA H200' -> 'NVIDIA-H200'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "device"


def calibration_file(device_name: str, cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / "calibration" / f"{device_slug(device_name)}.json"


def record_key(backbone: str, strategy: str, settings: dict[str, Any]) -> str:
    spec = get_backbone_spec(backbone)
    files = [registry_source("backbone", backbone), registry_source("strategy", strategy)]
    if spec.twin_of:
        files.append(registry_source("backbone", spec.twin_of))
    return fingerprint(
        {
            "schema": _SCHEMA,
            "versions": library_versions(),
            "files": {f.name: f.read_text() for f in files},
            "backbone": backbone,
            "strategy": strategy,
            "settings": settings,
        }
    )


def _sync(accel: Accel) -> None:
    if accel.is_cuda:
        torch.cuda.synchronize(accel.device)


def _reset_peak(accel: Accel) -> int:
    """Restart the device's peak count; returns the bytes already held (the resident original
    that copies are made from), which `_peak_mb` leaves out."""
    if not accel.is_cuda:
        return 0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(accel.device)
    return torch.cuda.memory_allocated(accel.device)


def _peak_mb(accel: Accel, held: int) -> float | None:
    if not accel.is_cuda:
        return None
    return (torch.cuda.max_memory_allocated(accel.device) - held) / 2**20


def _timed(fn: Callable[[], object], accel: Accel, steps: int, warmup: int) -> float:
    """Seconds per call of `fn`, over `steps` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(accel)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(accel)
    return (time.perf_counter() - t0) / steps


def _batch(batch_size: int, size: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """A random uint8 (B, S, S) batch and labels with both classes (BatchNorm and the class
    weights see what a real batch gives them)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch_size, size, size), dtype=torch.uint8, generator=gen)
    labels = np.arange(batch_size, dtype=np.int64) % 2
    return images, labels


def time_training(
    loaded: LoadedBackbone, strategy: str, accel: Accel, batch_size: int, steps: int, warmup: int
) -> tuple[float, float | None]:
    """(seconds per training step, peak device MiB of the copy's training) of `strategy` on a
    copy of `loaded`."""
    strat = get_strategy(strategy)
    held = _reset_peak(accel)
    model = prepare_model(strat.build(copy.deepcopy(loaded), seed=0), accel)
    images, labels = _batch(batch_size, loaded.spec.input_size)
    if accel.pin_memory:
        images = images.pin_memory()
    weight = torch.tensor(class_weights(labels), dtype=torch.float32, device=accel.device)
    runner = Steps(model, loaded.spec, accel, weight)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.backbone_parameters(), "lr": strat.backbone_lr or 1e-4},
            {"params": model.head_parameters(), "lr": HEAD_LR},
        ]
    )
    gen = torch.Generator(device=accel.device).manual_seed(0)
    rows = np.arange(batch_size)
    model.train()

    def epoch(n: int) -> None:
        loader = [(rows, images)] * n
        train_epoch(runner, loader, n, labels, optimizer, augment=AugmentConfig(), gen=gen)

    if warmup:
        epoch(warmup)
    _sync(accel)
    t0 = time.perf_counter()
    epoch(steps)  # train_epoch ends with the loss's host sync
    _sync(accel)
    seconds = (time.perf_counter() - t0) / steps
    return seconds, _peak_mb(accel, held)


def time_forward(
    loaded: LoadedBackbone, accel: Accel, batch_size: int, steps: int, warmup: int
) -> tuple[float, float | None]:
    """(seconds per frozen forward of a batch, peak device MiB), on a copy of `loaded`."""
    held = _reset_peak(accel)
    model = prepare_model(copy.deepcopy(loaded.encoder).eval(), accel)
    on_device = LoadedBackbone(model, loaded.spec, loaded.weights, loaded.weights_fingerprint)
    images, _ = _batch(batch_size, loaded.spec.input_size, seed=1)
    if accel.pin_memory:
        images = images.pin_memory()
    seconds = _timed(lambda: encode(on_device, accel, images), accel, steps, warmup)
    return seconds, _peak_mb(accel, held)


def _settings(accel: Accel, batch_size: int, steps: int, warmup: int) -> dict[str, Any]:
    return {
        "device": accel.describe()["device_name"],
        "dtype": accel.dtype,
        "batch_size": batch_size,
        "steps": steps,
        "warmup": warmup,
    }


def measure_backbone(
    backbone: str,
    strategies: list[str],
    device: str,
    dtype: str,
    batch_size: int,
    steps: int,
    warmup: int,
) -> list[CalibrationRecord]:
    """Time every strategy of `strategies` on one backbone (one forward timing shared by all)."""
    spec = get_backbone_spec(backbone)
    train_accel = resolve_accel(device, dtype, spec.is_cnn)  # the trainer: autocast only
    extract_accel = resolve_accel(device, dtype, spec.is_cnn, spec.bf16_cast_weights)
    cpu = load_backbone(backbone, "random")
    # Held on the device once: each strategy's copy is then made there, not on the host.
    encoder = cpu.encoder.to(train_accel.device)
    loaded = LoadedBackbone(encoder, spec, cpu.weights, cpu.weights_fingerprint)
    forward_s, forward_peak = time_forward(loaded, extract_accel, batch_size, steps, warmup)
    settings = _settings(train_accel, batch_size, steps, warmup)
    out = []
    for name in strategies:
        strat = get_strategy(name)
        res = resolve(spec, strat, loaded.encoder)
        train_s, peak = None, forward_peak
        if res.applicable and strat.path == "stream":
            train_s, peak = time_training(loaded, name, train_accel, batch_size, steps, warmup)
        out.append(
            CalibrationRecord(
                backbone=backbone,
                strategy=name,
                kind=strat.kind,
                applicable=res.applicable,
                reason=res.reason,
                train_s_per_image=None if train_s is None else train_s / batch_size,
                extract_s_per_image=forward_s / batch_size if res.applicable else None,
                peak_memory_mb=peak if res.applicable else None,
                device=str(settings["device"]),
                dtype=train_accel.dtype,
                batch_size=batch_size,
                input_size=spec.input_size,
                steps=steps,
                warmup=warmup,
                key=record_key(backbone, name, settings),
                measured_at=now_iso(),
            )
        )
    if train_accel.is_cuda:
        del loaded, encoder, cpu
        gc.collect()  # peft wraps leave reference cycles: free this backbone before the next
    return out


def _read(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get("records", {}))


def _check(backbones: list[str], strategies: list[str], batch_size: int, steps: int) -> None:
    for b in backbones:
        get_backbone_spec(b)  # unknown names fail before any work, listing the known ones
    for s in strategies:
        get_strategy(s)
    if batch_size < 2:
        raise ConfigError(
            f"calibration batch size must be at least 2 (BatchNorm trains on 2+), got {batch_size}"
        )
    if steps < 1:
        raise ConfigError(f"calibration steps must be at least 1, got {steps}")


def calibrate(
    backbones: list[str],
    strategies: list[str],
    device: str = "auto",
    batch_size: int = 32,
    steps: int = 5,
    warmup: int = 2,
    cache: bool = True,
    dtype: str = "auto",
    budget_s: float | None = None,
    progress: ProgressFn | None = None,
) -> list[CalibrationRecord]:
    """Records for `backbones` x `strategies` (preset names, e.g. fft, lora-r8, bitfit, lp), in
    that order, measured on `device` or read from the cache.

    With `budget_s`, no new backbone is measured once that many seconds have passed (0: read
    the cache only): the pairs not measured are left out of the result (and measured by the next
    call); cached ones are always returned.
    """
    _check(backbones, strategies, batch_size, steps)
    start = time.perf_counter()
    accel = resolve_accel(device, dtype)
    settings = _settings(accel, batch_size, steps, warmup)
    path = calibration_file(str(settings["device"]))
    out: list[CalibrationRecord] = []
    for i, backbone in enumerate(backbones):
        if progress:
            progress(i, len(backbones))
        keys = {s: record_key(backbone, s, settings) for s in strategies}
        known = _read(path) if cache else {}
        if all(k in known for k in keys.values()) or (
            budget_s is not None and time.perf_counter() - start >= budget_s
        ):
            out += [CalibrationRecord(**known[keys[s]]) for s in strategies if keys[s] in known]
            continue
        todo = [s for s in strategies if keys[s] not in known]
        fresh = measure_backbone(backbone, todo, device, dtype, batch_size, steps, warmup)
        by_name = {r.strategy: r for r in fresh}
        out += [
            by_name[s] if s in by_name else CalibrationRecord(**known[keys[s]]) for s in strategies
        ]
        if cache:
            _store(path, fresh)
    if progress:
        progress(len(backbones), len(backbones))
    return out


def _store(path: Path, records: list[CalibrationRecord]) -> None:
    """Merge `records` into the device's file (locked: two calibrations may share a device)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        merged = _read(path) | {r.key: asdict(r) for r in records}
        atomic_write_json(path, {"schema": _SCHEMA, "records": merged})


def calibration_table(
    backbones: list[str],
    strategies: list[str],
    budget_s: float | None = None,
    progress: ProgressFn | None = None,
) -> dict[tuple[str, str], tuple[float, float]]:
    """What the sweep planner projects from (progbench.sweep.cost): (backbone, strategy) ->
    (t_fwd, t_train) seconds per image, for the applicable pairs `calibrate` measured or had
    cached; a feature-path strategy's training is its extraction's forward."""
    table: dict[tuple[str, str], tuple[float, float]] = {}
    for r in calibrate(backbones, strategies, budget_s=budget_s, progress=progress):
        if not r.applicable or r.extract_s_per_image is None:
            continue
        t_train = r.train_s_per_image if r.train_s_per_image is not None else r.extract_s_per_image
        table[(r.backbone, r.strategy)] = (r.extract_s_per_image, t_train)
    return table
