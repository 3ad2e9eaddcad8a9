"""The resumable training state of one run (one head-lr candidate), written atomically.

A state directory holds two kinds of files:

- `best-e<epoch>.pt`: the trainable weights at the best validation loss so far, written only when
  the best improves;
- `last.pt`: everything else needed to continue exactly where training stopped: the current
  trainable weights, optimizer and scheduler states, torch RNG states, epoch, best epoch and loss,
  accumulated cost, and the name of the best file it belongs to. It is written after
  the best file, so a kill between the two leaves a consistent pair (the old `last.pt` still names
  the old best file, which is deleted only after the new `last.pt` is in place).

`key` fingerprints the run's configuration: a state written under other options is not resumed.
Files are written with torch.save and read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from progbench.atomic import atomic_write_with

LAST = "last.pt"
FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainState:
    key: str
    epoch: int  # epochs completed
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    schedulers: dict[str, Any]
    rng: dict[str, Any]
    best_epoch: int
    best_loss: float
    cost: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per evaluation


def best_file(epoch: int) -> str:
    return f"best-e{epoch}.pt"


def save_state(state_dir: Path, state: TrainState, best: dict[str, torch.Tensor] | None) -> None:
    """Write `best` (when it improved) then `last.pt`, each atomically; drop stale best files."""
    state_dir.mkdir(parents=True, exist_ok=True)
    keep = best_file(state.best_epoch)
    if best is not None:
        atomic_write_with(state_dir / keep, lambda tmp: torch.save(best, tmp))
    payload = {"format": FORMAT_VERSION, **state.__dict__}
    atomic_write_with(state_dir / LAST, lambda tmp: torch.save(payload, tmp))
    for f in state_dir.glob("best-e*.pt"):
        if f.name != keep:
            f.unlink()


def load_state(state_dir: Path, key: str) -> TrainState | None:
    """The saved state, or None when there is none for this `key` (or its best file is gone)."""
    path = state_dir / LAST
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT_VERSION or payload.get("key") != key:
        return None
    payload.pop("format")
    state = TrainState(**payload)
    if not (state_dir / best_file(state.best_epoch)).is_file():
        return None
    return state
