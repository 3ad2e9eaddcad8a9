"""The runs one `progbench train --strategy <peft|fft>` call makes: one per fold, and one per few-shot
draw of each fold, with the RunSpec fields and layout of the LP path (progbench.train.linear)."""

from __future__ import annotations

from dataclasses import dataclass

from progbench.data.manifest import Task
from progbench.data.splits import Fold, Splits
from progbench.models.loaders import LoadedBackbone
from progbench.runs import RunSpec


@dataclass(frozen=True)
class Problem:
    spec: RunSpec
    train_ids: list[str]  # the fold's training part, or a few-shot draw of it
    fold: Fold  # val and test come from here, never subsampled


def finetune_problems(
    task: Task, splits: Splits, loaded: LoadedBackbone, strategy: str
) -> list[Problem]:
    out: list[Problem] = []
    for fold in splits.folds:
        base = {
            "task": task.name,
            "backbone": loaded.spec.name,
            "weights": loaded.weights,
            "weights_fingerprint": loaded.weights_fingerprint,
            "strategy": strategy,
            "fold": fold.fold,
            "seed": splits.seed,
            "scheme": splits.scheme,
        }
        extra = {"test_center": fold.test_center}
        out.append(Problem(RunSpec(**base, regime="full", extra=extra), list(fold.train), fold))
        if splits.fewshot_config:
            regime = "fewshot-center" if splits.fewshot_config.get("per_center") else "fewshot"
            for d in fold.fewshot:
                spec = RunSpec(**base, regime=regime, shots=d.shots, repeat=d.repeat, extra=extra)
                out.append(Problem(spec, list(d.train), fold))
    return out
