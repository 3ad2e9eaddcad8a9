"""The trainer's inner steps: one training step and one evaluation pass over store rows.

A uint8 batch from the image store goes to the device (non-blocking from pinned memory on
CUDA), is augmented there when asked, normalised there (`accel.to_input`) and run under bf16
autocast on CUDA. The loss is class-weighted cross-entropy in fp32. Losses stay on the device
between steps: nothing here forces a host-device sync per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from progbench.accel import Accel, to_input
from progbench.cache.imagestore import ImageStore
from progbench.cache.loader import PrefetchLoader, batches_of
from progbench.config import BackboneSpec
from progbench.errors import ConfigError
from progbench.train.augment import AugmentConfig, augment_batch
from progbench.train.cost import CostMeter


def class_weights(y: np.ndarray) -> np.ndarray:
    """Inverse class frequency, n / (2 n_c) (scikit-learn's 'balanced'); 1 for an absent class."""
    n = len(y)
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=2).astype(np.float64)
    return np.where(counts > 0, n / (2 * np.maximum(counts, 1)), 1.0)


@dataclass
class Steps:
    """Runs a model (or its torch.compile'd form) on store batches."""

    model: nn.Module
    spec: BackboneSpec
    accel: Accel
    weight: torch.Tensor  # class weights of the training rows, on the device

    def _input(
        self, batch: torch.Tensor, augment: AugmentConfig | None, gen: torch.Generator | None
    ) -> torch.Tensor:
        x = batch.to(self.accel.device, non_blocking=self.accel.pin_memory)
        if augment is not None and gen is not None:
            x = augment_batch(x, augment, gen)
        return to_input(x, self.spec.input_size, self.spec.mean, self.spec.std, self.accel)

    def train_step(
        self,
        batch: torch.Tensor,
        y: torch.Tensor,
        scale: float = 1.0,
        augment: AugmentConfig | None = None,
        gen: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Forward and backward of one batch; the loss is scaled by `scale` (1 / accumulation).
        The caller steps the optimizer. Returns the unscaled loss, detached, on the device."""
        x = self._input(batch, augment, gen)
        y = y.to(self.accel.device, non_blocking=self.accel.pin_memory)
        with self.accel.autocast():
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y, weight=self.weight)
        (loss * scale).backward()
        return loss.detach()

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 logits (B, C) on the device for a uint8 batch; the model must be in eval mode."""
        with self.accel.autocast():
            return self.model(self._input(batch, None, None)).float()

    def predict(
        self, store: ImageStore, rows: np.ndarray, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits as float32 (N, C) and softmax positive-class probability (N,) for store `rows`."""
        self.model.eval()
        batches = batches_of(rows, batch_size)
        loader = PrefetchLoader(store, batches, pin_memory=self.accel.pin_memory)
        out = [self.logits(batch) for _, batch in loader]
        logits = torch.cat(out).cpu() if out else torch.empty(0, 2)
        return logits.numpy(), positive_probability(logits)


def epoch_batches(rows: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """This epoch's shuffled batches, from (seed, epoch) alone, so a resume sees the same order.
    A last batch of one image is merged into the previous one (BatchNorm needs two in training)."""
    order = np.random.default_rng([seed, epoch]).permutation(rows)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


def train_epoch(
    steps: Steps,
    loader: Iterable[tuple[np.ndarray, torch.Tensor]],
    n_batches: int,
    labels: np.ndarray,
    optimizer: torch.optim.Optimizer,
    after_step: Callable[[], None] = lambda: None,
    accumulate: int = 1,
    meter: CostMeter | None = None,
    augment: AugmentConfig | None = None,
    gen: torch.Generator | None = None,
) -> float:
    """One pass over `loader`'s `(rows, uint8 batch)`; `labels` are indexed by rows. The optimizer
    steps every `accumulate` batches and after the last one (each group's gradient is the mean of
    its batches' losses); `after_step` runs after each optimizer step. Returns the mean loss."""
    losses = []
    for i, (rows, batch) in enumerate(loader):
        group = min(accumulate, n_batches - (i // accumulate) * accumulate)
        y = torch.from_numpy(labels[rows])
        with meter.step(len(rows)) if meter is not None else nullcontext():
            losses.append(steps.train_step(batch, y, 1.0 / group, augment, gen))
            if (i + 1) % accumulate == 0 or i + 1 == n_batches:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                after_step()
    return float(torch.stack(losses).mean())  # the one host-device sync of the epoch


def with_input_size(spec: BackboneSpec, size: int | None) -> BackboneSpec:
    """`spec` with the model input side `size` (None: its own). Only CNNs take any size."""
    if size is None or size == spec.input_size:
        return spec
    if not spec.is_cnn:
        raise ConfigError(
            f"{spec.name} takes {spec.input_size} px input; only CNNs accept another input size "
            f"(asked for {size})",
            "Leave the input size unset for this backbone.",
        )
    return spec.model_copy(update={"input_size": size})


def positive_probability(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy().astype(np.float64)


def weighted_loss(logits: np.ndarray, y: np.ndarray) -> float:
    """Class-weighted cross-entropy of `logits`, weighted by `y`'s own class frequencies (so the
    validation loss does not favour the majority class)."""
    w = torch.from_numpy(class_weights(y)).float()
    return float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y).long(), weight=w))
