"""Learning-rate schedule: linear warm-up, then reduce-on-plateau or cosine decay (torch's schedulers).

- warm-up: `LinearLR` from 10% to 100% of each group's lr over the warm-up optimizer steps;
- plateau: `ReduceLROnPlateau` (factor 0.1 unless set) on the validation loss, stepped at each
  evaluation after the warm-up; its patience is given in epochs and converted to evaluations;
- cosine: `CosineAnnealingLR` over the optimizer steps left after the warm-up.

Both stop at `min_lr` (0 unless set), one floor for every parameter group. torch's plateau
scheduler also ignores a reduction smaller than its `eps` (1e-8), so with the default floor a
power-of-ten rate stops near 1e-8 anyway; `min_lr` makes the floor explicit and exact.
"""

from __future__ import annotations

import math
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, ReduceLROnPlateau

from progbench.errors import ConfigError

WARMUP_START = 0.1
PLATEAU_FACTOR = 0.1


class Schedule:
    def __init__(
        self,
        optimizer: Optimizer,
        kind: str,
        warmup_steps: int,
        total_steps: int,
        plateau_patience_evals: int,
        plateau_factor: float = PLATEAU_FACTOR,
        min_lr: float = 0.0,
    ) -> None:
        if kind not in ("plateau", "cosine"):
            raise ConfigError(f"schedule must be plateau or cosine, got {kind!r}")
        self.kind = kind
        self.warmup_steps = warmup_steps
        self.steps = 0
        # The main scheduler is built first: LinearLR's constructor then scales the lrs down for
        # the first warm-up step, and the cosine's base lrs stay the full ones.
        self.main: CosineAnnealingLR | ReduceLROnPlateau
        if kind == "cosine":
            self.main = CosineAnnealingLR(
                optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=min_lr
            )
        else:
            self.main = ReduceLROnPlateau(
                optimizer,
                mode="min",
                factor=plateau_factor,
                patience=plateau_patience_evals,
                min_lr=min_lr,
            )
        self.warmup = (
            LinearLR(optimizer, WARMUP_START, 1.0, total_iters=warmup_steps)
            if warmup_steps > 0
            else None
        )

    @property
    def in_warmup(self) -> bool:
        return self.steps < self.warmup_steps

    def after_step(self) -> None:
        """Call after each optimizer step."""
        if self.in_warmup:
            assert self.warmup is not None
            self.warmup.step()
        elif isinstance(self.main, CosineAnnealingLR):
            self.main.step()
        self.steps += 1

    def after_eval(self, val_loss: float) -> None:
        if isinstance(self.main, ReduceLROnPlateau) and not self.in_warmup:
            self.main.step(val_loss)

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "main": self.main.state_dict(),
            "warmup": self.warmup.state_dict() if self.warmup is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.main.load_state_dict(state["main"])
        if self.warmup is not None and state["warmup"] is not None:
            self.warmup.load_state_dict(state["warmup"])


def plateau_patience_evals(patience_epochs: int, eval_every: int) -> int:
    return max(1, math.ceil(patience_epochs / eval_every))
