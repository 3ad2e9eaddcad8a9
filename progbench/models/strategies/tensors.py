"""Writing and reading a strategy's trained tensors (safetensors), below the Strategy classes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from progbench.atomic import atomic_write_bytes
from progbench.errors import WeightsError

if TYPE_CHECKING:
    from torch import nn

HEAD_NAME = "progbench_head"  # a name no library uses (peft's modules_to_save would match 'head')


def save_tensors(path: Path, tensors: dict[str, Any]) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, save(tensors))  # a full disk: an OSError naming the file


def load_subset(model: nn.Module, sd: dict[str, Any], source: str) -> None:
    """Load the trained tensors (biases + head, or the head): exactly the trainable ones."""
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = expected - set(sd), set(sd) - expected
    if missing or unexpected:
        from progbench.models.checkpoints import key_report

        raise WeightsError(
            f"{source} does not match the model: {key_report(missing, unexpected, [])}"
        )
    params = dict(model.named_parameters())
    for name, t in sd.items():
        if params[name].shape != t.shape:
            raise WeightsError(
                f"{source}: {name} has shape {tuple(t.shape)}, model {tuple(params[name].shape)}"
            )
        params[name].data.copy_(t)
