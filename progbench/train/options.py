"""Options of the streaming PEFT/FFT trainer.

These defaults are the `default` training preset (progbench/configs/training/default.yaml, kept
equal by a test); `ruffini2025` holds the reference study's schedule. progbench.train.presets
resolves a preset, a task and overrides into these options (docs/METHODOLOGY.md, "Training").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FinetuneOptions:
    epochs: int = 100
    batch_size: int = 32
    accumulate: int = 1  # gradient accumulation steps: effective batch = batch_size * accumulate
    lr_backbone: float | None = None  # None: the strategy preset's (1e-5 FFT, 1e-4 PEFT)
    lr_head: float | None = None  # None: chosen on validation from the head-lr grid
    head_lr_grid: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
    weight_decay: float = 0.0
    warmup_epochs: int = 1  # linear lr warm-up, in epochs of optimizer steps
    schedule: str = "plateau"  # plateau | cosine
    plateau_patience: int = 25  # epochs
    plateau_factor: float = 0.1  # lr multiplier at each plateau reduction
    min_lr: float = 0.0  # floor of every group's lr (plateau and cosine)
    patience: int = 100  # early stopping, in epochs without a better validation loss
    min_epochs: int = 0  # patience counts from here at the earliest: no stop before it + patience
    eval_every: int = 3  # epochs
    augment: bool = True
    compile: bool = False
    device: str = "auto"
    dtype: str = "auto"
    image_size: int = 224  # side of the uint8 image store
    input_size: int | None = None  # model input side; None: the backbone's own (CNNs take any)
    cache_dir: Path | None = None
    workers: int | None = None
    preset: str | None = None  # the training preset these came from (recorded, not identity)
