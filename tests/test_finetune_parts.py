"""The trainer's parts on their own: augmentation, schedule, gradient accumulation, class weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from progbench.accel import resolve_accel
from progbench.models.registry import get_backbone_spec
from progbench.train.augment import AugmentConfig, augment_batch
from progbench.train.schedule import Schedule
from progbench.train.steps import Steps, class_weights, epoch_batches, train_epoch


def _images(n: int = 4, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, size, size), generator=g, dtype=torch.uint8)


def test_augmentation_is_seeded_mild_and_off_at_zero_strength() -> None:
    x = _images()
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    c = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 255
    # Mild: the augmented images stay much closer to their own originals than to other images.
    own = (a - x.float()).abs().mean(dim=(1, 2))
    other = (a - x.float().roll(1, 0)).abs().mean(dim=(1, 2))
    assert (own < other).all()
    zero = AugmentConfig(
        scale=(1.0, 1.0), ratio=(1.0, 1.0), degrees=0, translate=0, brightness=0, contrast=0
    )
    same = augment_batch(x, zero, torch.Generator().manual_seed(1))
    torch.testing.assert_close(same, x.float(), atol=1e-3, rtol=0)


def test_no_flips_the_left_half_stays_left() -> None:
    x = torch.zeros(8, 32, 32, dtype=torch.uint8)
    x[:, :, :16] = 255  # bright left half
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(0))
    assert (a[:, :, :12].mean(dim=(1, 2)) > a[:, :, 20:].mean(dim=(1, 2)) + 100).all()


def _lrs(opt: torch.optim.Optimizer) -> list[float]:
    return [g["lr"] for g in opt.param_groups]


def test_warmup_then_cosine_and_plateau() -> None:
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p], "lr": 1.0}])
    s = Schedule(opt, "cosine", warmup_steps=4, total_steps=14, plateau_patience_evals=1)
    seen = [_lrs(opt)[0]]
    for _ in range(14):
        opt.step()
        s.after_step()
        seen.append(_lrs(opt)[0])
    np.testing.assert_allclose(seen[:5], [0.1, 0.325, 0.55, 0.775, 1.0])
    assert all(a >= b for a, b in itertools.pairwise(seen[4:]))  # decays after warm-up
    assert seen[-1] == pytest.approx(0.0, abs=1e-12)

    opt = torch.optim.AdamW([{"params": [p], "lr": 1.0}])
    s = Schedule(opt, "plateau", warmup_steps=0, total_steps=10, plateau_patience_evals=1)
    for loss in (1.0, 0.9, 0.95, 0.96):  # two evaluations without improvement > patience 1
        s.after_eval(loss)
    assert _lrs(opt) == [pytest.approx(0.1)]
    restored = Schedule(opt, "plateau", 0, 10, 1)
    restored.load_state_dict(s.state_dict())
    assert restored.state_dict() == s.state_dict()
    with pytest.raises(Exception, match="plateau or cosine"):
        Schedule(opt, "step", 0, 10, 1)


def test_accumulation_matches_one_step_on_the_whole_batch() -> None:
    spec = get_backbone_spec("tiny-densenet")  # only its 32 px input size and mean/std are used
    accel = resolve_accel("cpu", "fp32")
    images = _images(8)
    labels = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    rows = np.arange(8)

    def trained(accumulate: int, batches: list[np.ndarray]) -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        steps = Steps(model, spec, accel, torch.ones(2))
        loader = [(b, images[b]) for b in batches]
        train_epoch(steps, loader, len(batches), labels, opt, accumulate=accumulate)
        return model[1].weight.detach().clone()

    whole = trained(1, [rows])
    halves = trained(2, [rows[:4], rows[4:]])
    torch.testing.assert_close(halves, whole, rtol=1e-5, atol=1e-6)
    stepped_twice = trained(1, [rows[:4], rows[4:]])
    assert not torch.allclose(stepped_twice, whole, atol=1e-6)


def test_class_weights_are_sklearns_balanced_and_batches_are_seeded() -> None:
    y = np.array([0, 0, 0, 1, 0, 1, 0])
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
    np.testing.assert_allclose(class_weights(y), expected)
    assert class_weights(np.zeros(4, dtype=int)).tolist() == [0.5, 1.0]  # absent class: 1
    rows = np.arange(17)
    a, b = epoch_batches(rows, 8, 42, 3), epoch_batches(rows, 8, 42, 3)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [len(x) for x in a] == [8, 9]  # a last batch of one joins the previous one
    assert sorted(np.concatenate(a).tolist()) == rows.tolist()
    assert np.concatenate(a).tolist() != np.concatenate(epoch_batches(rows, 8, 42, 4)).tolist()
