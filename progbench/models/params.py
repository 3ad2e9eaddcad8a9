"""Trainable-parameter accounting, with peft's convention.

peft's `get_nb_trainable_parameters` counts every parameter of the model it is given (each
shared parameter once; buffers such as VeRA's frozen random projections are not parameters).
`count_parameters` uses peft's own method on a PeftModel and the same rule on any other module,
so the two agree for the same model. On a ClassifierModel the head is part of both counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    total: int
    percent: float  # 100 * trainable / total

    @classmethod
    def of(cls, trainable: int, total: int) -> ParamCount:
        return cls(trainable, total, 100.0 * trainable / total if total else 0.0)


def linear_head_parameters(feature_dim: int, num_classes: int = 2) -> int:
    """Parameters of the linear head every strategy trains on the feature (weights + biases).
    LP's logistic regression is the same model with one redundant logit, counted this way so
    that every strategy's trainable share uses one definition."""
    return feature_dim * num_classes + num_classes


def count_parameters(model: nn.Module) -> ParamCount:
    from peft import PeftModel

    if isinstance(model, PeftModel):
        trainable, total = model.get_nb_trainable_parameters()
        return ParamCount.of(trainable, total)
    trainable = total = 0
    for _, p in model.named_parameters():  # named_parameters yields a shared tensor once
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return ParamCount.of(trainable, total)
