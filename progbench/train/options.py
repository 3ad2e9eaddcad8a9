"""Options of the streaming PEFT/FFT trainer.

These defaults are the `default` training preset (progbench/configs/training/default.yaml, kept
equal by a test); `ruffini2025` holds the reference study's schedule. progbench.train.presets
resolves a preset, a task and overrides into these options (docs/METHODOLOGY.md, "Training").

Each option declares whether it is part of a streamed run's identity (progbench.config.keys):
FinetuneContext.settings derives the run's `train` settings from these declarations, so a new
option without one fails tests/test_keys.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from progbench.config.keys import IDENTITY, Identity, Recorded

ID = IDENTITY
# Where the work runs and where files go: the same predictions either way.
PLACE = Recorded("where it runs or where files go")


@dataclass(frozen=True)
class FinetuneOptions:
    epochs: Annotated[int, ID] = 100
    batch_size: Annotated[int, ID] = 32
    # gradient accumulation steps: effective batch = batch_size * accumulate
    accumulate: Annotated[int, ID] = 1
    # None: the strategy preset's (1e-5 FFT, 1e-4 PEFT); the identity holds the lr in effect
    lr_backbone: Annotated[float | None, ID] = None
    # None: chosen on validation from the head-lr grid; a given lr is the identity's grid
    lr_head: Annotated[float | None, Identity(via="head_lr_grid")] = None
    head_lr_grid: Annotated[tuple[float, ...], ID] = (1e-2, 1e-3, 1e-4)
    weight_decay: Annotated[float, ID] = 0.0
    warmup_epochs: Annotated[int, ID] = 1  # linear lr warm-up, in epochs of optimizer steps
    schedule: Annotated[str, ID] = "plateau"  # plateau | cosine
    plateau_patience: Annotated[int, ID] = 25  # epochs
    plateau_factor: Annotated[float, ID] = 0.1  # lr multiplier at each plateau reduction
    min_lr: Annotated[float, ID] = 0.0  # floor of every group's lr (plateau and cosine)
    # early stopping, in epochs without a better validation loss
    patience: Annotated[int, ID] = 100
    # patience counts from here at the earliest: no stop before it + patience
    min_epochs: Annotated[int, ID] = 0
    eval_every: Annotated[int, ID] = 3  # epochs
    augment: Annotated[bool, ID] = True  # the identity holds the augmentation's settings
    compile: Annotated[bool, Recorded("torch.compile: the same model, faster")] = False
    device: Annotated[str, PLACE] = "auto"
    dtype: Annotated[str, ID] = "auto"  # the identity holds the dtype in effect
    image_size: Annotated[int, ID] = 224  # side of the uint8 image store
    # model input side; None: the backbone's own (CNNs take any); the identity holds the side
    input_size: Annotated[int | None, ID] = None
    cache_dir: Annotated[Path | None, PLACE] = None
    workers: Annotated[int | None, PLACE] = None
    # the training preset these came from: its values are the identity, not its name
    preset: Annotated[str | None, Recorded("the preset's name; its values are in the key")] = None
