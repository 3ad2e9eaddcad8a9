"""What a training run costs: wall time, device time, peak memory, images per second.

- wall time: the whole run (model build, training, evaluation, predictions), summed over resumes.
- device time: time spent inside training and evaluation steps. On CUDA it is measured with CUDA
  events (time the GPU was busy on our kernels' stream); on the CPU, where the "device" is the
  process itself, it is the wall time of those steps.
- peak host memory: the process's peak resident set size (psutil; on Linux it is ru_maxrss,
  which never goes down, so a later run in the same process reports at least the earlier peak).
- peak device memory: torch.cuda.max_memory_allocated, reset at the start of the run.
- images/s: training images processed per second of training-step time.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil
import torch

from progbench.runs import RunCost


def peak_host_mb() -> float:
    """Peak resident set size of this process, in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    peak = rss / 1024 if sys.platform != "darwin" else rss / 2**20
    return max(peak, psutil.Process().memory_info().rss / 2**20)


@dataclass
class CostMeter:
    """Accumulates cost across the steps of one run (and across resumes, via `state`)."""

    device: torch.device
    wall_s: float = 0.0
    device_s: float = 0.0
    train_s: float = 0.0
    train_images: int = 0
    peak_host: float = 0.0  # MiB, max over this meter's life and the runs it was restored from
    peak_device: float | None = None
    _events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = field(default_factory=list)
    _start: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    @contextmanager
    def step(self, images: int = 0, training: bool = True) -> Iterator[None]:
        """Time one step; `images` counts towards images/s when `training`."""
        cuda = self.device.type == "cuda"
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        yield
        if cuda:
            end.record()
            self._events.append((start, end))
            if len(self._events) >= 256:  # bound the list; sync once per 256 steps
                self._flush()
        else:
            self.device_s += time.perf_counter() - t0
        if training:
            # Step time on the host: on CUDA it includes waiting for the device at the sync points.
            self.train_s += time.perf_counter() - t0
            self.train_images += images

    def _flush(self) -> None:
        if self._events:
            torch.cuda.synchronize(self.device)
            self.device_s += sum(s.elapsed_time(e) for s, e in self._events) / 1000.0
            self._events.clear()

    def state(self) -> dict[str, float]:
        """The accumulated totals, to save with a checkpoint and restore on resume."""
        self._flush()
        now = time.perf_counter()
        self.wall_s += now - self._start
        self._start = now
        self.peak_host = max(self.peak_host, peak_host_mb())
        if self.device.type == "cuda":
            dev = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.peak_device = max(self.peak_device or 0.0, dev)
        return {
            "wall_s": self.wall_s,
            "device_s": self.device_s,
            "train_s": self.train_s,
            "train_images": float(self.train_images),
            "peak_host_mb": self.peak_host,
            "peak_device_mb": -1.0 if self.peak_device is None else self.peak_device,
        }

    def restore(self, state: dict[str, float]) -> None:
        self.wall_s = float(state["wall_s"])
        self.device_s = float(state["device_s"])
        self.train_s = float(state["train_s"])
        self.train_images = int(state["train_images"])
        self.peak_host = float(state["peak_host_mb"])
        dev = float(state["peak_device_mb"])
        self.peak_device = None if dev < 0 else dev
        self._start = time.perf_counter()


def run_cost(
    costs: list[dict[str, float]], extra_wall_s: float, trainable: int, total: int
) -> RunCost:
    """One RunCost from the `CostMeter.state()` of every candidate of a run (a head-lr search
    trains several), plus the wall time spent outside them (building, predicting, saving)."""
    device_peaks = [c["peak_device_mb"] for c in costs if c["peak_device_mb"] >= 0]
    train_s = sum(c["train_s"] for c in costs)
    images = sum(c["train_images"] for c in costs)
    return RunCost(
        wall_time_s=round(sum(c["wall_s"] for c in costs) + extra_wall_s, 3),
        device_time_s=round(sum(c["device_s"] for c in costs), 3),
        peak_host_mb=round(max([peak_host_mb(), *(c["peak_host_mb"] for c in costs)]), 1),
        peak_device_mb=round(max(device_peaks), 1) if device_peaks else None,
        images_per_s=round(images / train_s, 2) if train_s > 0 else None,
        trainable=trainable,
        total=total,
        trainable_percent=round(100.0 * trainable / total, 4) if total else None,
    )
