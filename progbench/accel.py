"""Device and precision choices, and turning uint8 store batches into model input on the device.

One place decides CPU vs CUDA, fp32 vs bf16, autocast vs casting the weights, channels_last and
pinned memory, so that extraction and training make the same choice for the same backbone.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F

from progbench.errors import ConfigError

DeviceName = Literal["auto", "cpu", "cuda"]
DtypeName = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class Accel:
    device: torch.device
    dtype: Literal["fp32", "bf16"]
    cast_weights: bool  # bf16 by casting the weights instead of autocast (open_clip, see docs)
    channels_last: bool
    pin_memory: bool

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> AbstractContextManager[object]:
        if self.dtype == "bf16" and not self.cast_weights:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    @property
    def input_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.dtype == "bf16" and self.cast_weights else torch.float32

    def describe(self) -> dict[str, object]:
        return {
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.is_cuda else "cpu",
            "dtype": self.dtype,
            "bf16_mode": ("weights" if self.cast_weights else "autocast")
            if self.dtype == "bf16"
            else None,
            "channels_last": self.channels_last,
        }


def resolve_accel(
    device: DeviceName | str = "auto",
    dtype: DtypeName | str = "auto",
    is_cnn: bool = False,
    prefer_weight_cast: bool = False,
) -> Accel:
    """Pick the device and precision.

    `auto` dtype is bf16 on CUDA (tensor cores; accuracy is checked in the tests against fp32) and
    fp32 on CPU, where bf16 speed depends on the CPU's instruction set and fp32 is the safe default.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}")
    if dtype not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"--dtype must be auto, fp32 or bf16, got {dtype!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for, but CUDA is not available", "Use --device cpu or auto."
        )
    dev = torch.device(
        "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    resolved: Literal["fp32", "bf16"] = "fp32"
    if dtype == "bf16" or (dtype == "auto" and dev.type == "cuda"):
        resolved = "bf16"
    return Accel(
        device=dev,
        dtype=resolved,
        cast_weights=resolved == "bf16" and prefer_weight_cast,
        channels_last=is_cnn,
        pin_memory=dev.type == "cuda",
    )


_M = TypeVar("_M", bound=torch.nn.Module)


def prepare_model(model: _M, accel: Accel) -> _M:
    model = model.to(accel.device)
    if accel.cast_weights:
        model = model.to(torch.bfloat16)
    if accel.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def to_input(
    batch: torch.Tensor,
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    accel: Accel,
) -> torch.Tensor:
    """uint8 (B, S, S) on any device -> normalised float (B, 3, size, size) on the accel device.

    The copy moves uint8 (4x fewer bytes than float); scaling, resizing, channel replication and
    mean/std normalisation then run on the device.
    """
    x = batch.to(accel.device, non_blocking=accel.pin_memory).unsqueeze(1).float().div_(255.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    # Sent without a stream sync: torch.tensor(..., device="cuda") would make the host wait for
    # the queued steps at every batch.
    m = torch.tensor(mean).view(1, 3, 1, 1).to(x.device, non_blocking=True)
    s = torch.tensor(std).view(1, 3, 1, 1).to(x.device, non_blocking=True)
    x = (x.expand(-1, 3, -1, -1) - m) / s
    if accel.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.to(accel.input_dtype)
