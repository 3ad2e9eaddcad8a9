"""Feature-path runs (LP by default) of a splits object, planned the way `progbench train` plans them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from progbench.data.manifest import Task
from progbench.data.splits import Splits
from progbench.train.features import (
    FeatureContext,
    FeatureSummary,
    feature_settings,
    run_feature_probes,
)
from progbench.train.plan import Problem, SplitRequest, plan_runs
from progbench.train.probe import ProbeConfig


def feature_problems(
    task: Task,
    splits: Splits,
    ctx: FeatureContext,
    cfg: ProbeConfig | None = None,
    fewshot: bool = True,
    full: bool = True,
) -> list[Problem]:
    """Every run of `splits`: its full-data runs and (with `fewshot`) every draw it holds."""
    fs = splits.fewshot_config
    req = (
        SplitRequest(shots=tuple(fs["shots"]), repeats=fs["repeats"])
        if fewshot and fs
        else SplitRequest()
    )
    problems = plan_runs(
        task,
        splits,
        req,
        Path("splits.json"),
        ctx.identity(),
        feature_settings(ctx, cfg or ProbeConfig()),
    )
    return [p for p in problems if full or p.spec.regime != "full"]


def feature_runs(
    task: Task,
    splits: Splits,
    features: Any,
    ctx: FeatureContext,
    root: Path,
    cfg: ProbeConfig | None = None,
    fewshot: bool = True,
    full: bool = True,
    **kwargs: Any,
) -> FeatureSummary:
    problems = feature_problems(task, splits, ctx, cfg, fewshot, full)
    return run_feature_probes(task, problems, features, ctx, root, cfg, **kwargs)
