"""Projected device time of a sweep's pending work, and on what basis.

Per image, a backbone costs `t_fwd` seconds forward and `t_train` seconds in a training step.
They come from the first basis that has them:

- measured: the training throughput (`images_per_s`) that finished runs of the same backbone
  and family recorded in their cost (metrics.json);
- calibrated: `progbench sweep plan --calibrate` timed training steps and forwards of the
  full-size architecture on this machine's device (progbench.sweep.calibrate), per (backbone,
  strategy); a strategy left uncalibrated takes the median of its family's calibrated strategies
  on that backbone (an adapter's step is dominated by the backbone's forward and backward);
- flops: the backbone's forward FLOPs (progbench.sweep.flops) at an effective device throughput
  (`--tflops`, default 60: 40% of an A40's 150 bf16 TFLOP/s); a training step costs 3 forwards
  for FFT and 2 for the adapter and bias families, which compute no weight gradient for frozen
  layers.

A streamed run trains `candidates` heads (one per head lr of the grid) for the expected number of
epochs, validating every `eval_every` epochs, then predicts validation and test once. With early
stopping the stopping epoch is unknown before training; the projection assumes the best
validation loss at epoch `patience` (so a run stops at 2 x patience, within [min_epochs, epochs]).
An LP cell costs no device time beyond its feature extraction (one forward of every image of
the task's image set per backbone, shared by every task and regime that uses that set); its
probes are solved on the CPU in seconds.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from progbench.runs import METRICS_FILE
from progbench.sweep.cells import CellPlan, RunKey
from progbench.sweep.flops import forward_gflops
from progbench.sweep.spec import Sweep

TRAIN_FACTOR = {"fft": 3.0, "peft": 2.0}
DEFAULT_TFLOPS = 60.0
DEFAULT_GPU = "A40"
STUDY_GPU_HOURS = 3200  # the reference study: about 3,200 GPU-hours on 10 NVIDIA A40 GPUs


@dataclass(frozen=True)
class CostOptions:
    tflops: float = DEFAULT_TFLOPS  # effective device throughput for the FLOP basis
    gpu: str = DEFAULT_GPU  # the device the FLOP basis stands for (a label)
    # (backbone, strategy) -> (t_fwd, t_train) seconds per image; progbench.sweep.calibrate
    calibration: dict[tuple[str, str], tuple[float, float]] | None = None
    use_measured: bool = True


@dataclass
class Projection:
    """Device-hours of the pending work per cell and for the feature extractions."""

    cell_hours: dict[str, float] = field(default_factory=dict)
    cell_basis: dict[str, str] = field(default_factory=dict)
    extract_hours: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def total_hours(self) -> float:
        return sum(self.cell_hours.values()) + self.extract_hours


def expected_epochs(epochs: int, patience: int, min_epochs: int = 0) -> int:
    """The stopping epoch the projection assumes: best at `patience`, stop `patience` later."""
    return int(min(epochs, max(min_epochs, 2 * patience)))


def _measured_rates(sweep: Sweep, plans: Iterable[CellPlan]) -> dict[tuple[str, str], float]:
    """Median training images/s of finished streamed runs, per (backbone, family)."""
    rates: dict[tuple[str, str], list[float]] = {}
    for p in plans:
        if p.family == "lp" or not p.base(sweep.runs_root).is_dir():
            continue
        for d in p.run_dirs(sweep.runs_root):
            try:
                cost = json.loads((d / METRICS_FILE).read_text()).get("cost") or {}
            except (OSError, ValueError):
                continue
            if cost.get("images_per_s"):
                rates.setdefault((p.cell.backbone, p.family), []).append(cost["images_per_s"])
    return {k: median(v) for k, v in rates.items()}


def _calibrated(
    sweep: Sweep, backbone: str, strategy: str, opts: CostOptions
) -> tuple[float, float] | None:
    table = opts.calibration or {}
    if (backbone, strategy) in table:
        return table[(backbone, strategy)]
    family = sweep.family(strategy) if strategy in sweep.strategies else strategy
    same = [
        t for (b, s), t in table.items()
        if b == backbone and s in sweep.strategies and sweep.family(s) == family
    ]  # fmt: skip
    if not same:
        return None
    return median(t[0] for t in same), median(t[1] for t in same)


def _per_image(
    sweep: Sweep,
    backbone: str,
    strategy: str,
    input_size: int | None,
    opts: CostOptions,
    measured: dict,
) -> tuple[float, float, str]:
    """(t_fwd, t_train, basis) in seconds per image (strategy "lp": extraction's forward)."""
    family = sweep.family(strategy) if strategy in sweep.strategies else "lp"
    factor = TRAIN_FACTOR.get(family, 1.0)
    if (backbone, family) in measured:
        t_train = 1.0 / measured[(backbone, family)]
        return t_train / factor, t_train, "measured"
    calibrated = _calibrated(sweep, backbone, strategy, opts)
    if calibrated is not None:
        return calibrated[0], calibrated[1], "calibrated"
    t_fwd = forward_gflops(backbone, input_size) * 1e9 / (opts.tflops * 1e12)
    return t_fwd, t_fwd * factor, "flops"


def _run_seconds(p: CellPlan, sweep: Sweep, t_fwd: float, t_train: float, n_train: float) -> float:
    o = sweep.options_for(p.cell.strategy, p.cell.task)
    outer = p.train_fraction / (1 - sweep.config.val_fraction)
    n_val, n_test = p.n_images * outer * sweep.config.val_fraction, p.n_images * (1 - outer)
    epochs = expected_epochs(o.epochs, o.patience, getattr(o, "min_epochs", 0))
    candidates = 1 if o.lr_head is not None else len(o.head_lr_grid)
    evals = math.ceil(epochs / o.eval_every)
    training = epochs * n_train * t_train + evals * n_val * t_fwd
    return candidates * training + (n_val + n_test) * t_fwd


def _train_images(p: CellPlan, sweep: Sweep, shots: int | None) -> float:
    """A run's training images: the fold's training part, or 2k (k per class, per training
    centre when drawn per centre)."""
    if shots is None:
        return p.n_images * p.train_fraction
    fs = sweep.config.fewshot
    centres = max(1, p.train_centers) if fs is not None and fs.per_center else 1
    return 2.0 * shots * centres


def project(
    sweep: Sweep, plans: list[CellPlan], pending: dict[str, list[RunKey]], opts: CostOptions
) -> Projection:
    """Device-hours of the runs in `pending` (per cell id) and of the extractions they need."""
    out = Projection()
    measured = _measured_rates(sweep, plans) if opts.use_measured else {}
    extractions: dict[tuple[str, str], int] = {}
    for p in plans:
        if not p.applicable:
            continue
        todo = pending.get(p.cell.id, [])
        size = sweep.options_for(p.cell.strategy, p.cell.task).input_size
        if p.family == "lp":
            if todo:
                extractions[(p.cell.task, p.cell.backbone)] = p.n_images
            out.cell_hours[p.cell.id] = 0.0
            out.cell_basis[p.cell.id] = "cpu"
            continue
        t_fwd, t_train, basis = _per_image(
            sweep, p.cell.backbone, p.cell.strategy, size, opts, measured
        )
        by_shots = Counter(key.shots for key in todo)  # runs of one size cost the same
        seconds = sum(
            n * _run_seconds(p, sweep, t_fwd, t_train, _train_images(p, sweep, shots))
            for shots, n in by_shots.items()
        )
        out.cell_hours[p.cell.id] = seconds / 3600
        out.cell_basis[p.cell.id] = basis
    for (_, backbone), n in extractions.items():
        t_fwd, _, _ = _per_image(sweep, backbone, "lp", None, opts, measured)
        out.extract_hours += n * t_fwd / 3600
    return out


def describe_basis(projection: Projection, opts: CostOptions) -> str:
    used = sorted(set(projection.cell_basis.values()) - {"cpu"})
    parts = []
    if "measured" in used:
        parts.append("measured throughput of finished runs")
    if "calibrated" in used:
        parts.append("a calibration on this machine's device")
    if "flops" in used or not used:
        parts.append(
            f"FLOP counts at {opts.tflops:g} effective TFLOP/s (an {opts.gpu}); training steps "
            "3 forwards (FFT) or 2 (adapters, biases)"
        )
    return "; ".join(parts)


def spent_hours(run_dirs: Iterable[Path]) -> float:
    """Device-hours finished runs recorded (device_time_s, else wall_time_s)."""
    total = 0.0
    for d in run_dirs:
        try:
            cost = json.loads((d / METRICS_FILE).read_text()).get("cost") or {}
        except (OSError, ValueError):
            continue
        total += float(cost.get("device_time_s") or cost.get("wall_time_s") or 0.0)
    return total / 3600
