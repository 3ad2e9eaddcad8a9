"""What a report reads from the results table: one metric, arranged for tables, tests and plots.

The results table (progbench.evaluate.results, docs/METHODOLOGY.md 6.5) is long: one row per
(run or aggregate) x split x metric. `prepare` keeps the test split of one metric and returns

- `groups`: one row per (task, model, strategy, regime, shots) with the mean and std over folds
  (`aggregate-mean` / `aggregate-std`), the few-shot draw spread (`repeat-std`) and the mean
  trainable share of the group's runs;
- `folds`: one value per (task, model, strategy, setting, fold), the unit that paired tests match
  on: the run's value in the full regime, the mean over repeats (`fold-mean`) in few-shot regimes;
- `runs`: one row per run with its spec, cost and provenance.

A model is a backbone, or `backbone (weights)` when the table holds one backbone with several
weights, so that runs with different weights are never paired or averaged together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from progbench.errors import RegistryError, RunError
from progbench.evaluate.registry import METRICS, get_metric
from progbench.evaluate.results import COST_COLUMNS, SPEC_COLUMNS
from progbench.models.registry import get_backbone_spec, list_backbones, list_strategies

REQUIRED_COLUMNS = (
    "level",
    "task",
    "backbone",
    "weights",
    "strategy",
    "regime",
    "shots",
    "fold",
    "split",
    "metric",
    "value",
    "n_runs",
)
REGIME_ORDER = ("full", "fewshot", "fewshot-center")
# The results table's spec and cost columns, in its order, for one row per run.
RUN_COLUMNS = (
    "run_dir",
    *SPEC_COLUMNS,
    "shots",
    "repeat",
    "fold",
    *COST_COLUMNS,
    "git_sha",
    "measured_at",
)


@dataclass(frozen=True, order=True)
class Setting:
    """A training regime and, for few-shot regimes, k (images per class)."""

    regime_rank: int
    shots: int
    regime: str

    @classmethod
    def of(cls, regime: str, shots: int | None) -> Setting:
        rank = REGIME_ORDER.index(regime) if regime in REGIME_ORDER else len(REGIME_ORDER)
        return cls(rank, int(shots or 0), regime)

    @property
    def is_fewshot(self) -> bool:
        return self.regime != "full"

    @property
    def key(self) -> str:
        return self.regime if not self.is_fewshot else f"{self.regime}-k{self.shots}"

    @property
    def title(self) -> str:
        if not self.is_fewshot:
            return "Full data"
        name = "Centre-wise few-shot" if self.regime == "fewshot-center" else "Few-shot"
        return f"{name}, k = {self.shots}"


def family_of(backbone: str) -> str:
    """CNN or FM from the backbone registry; `unknown` for names the registry lacks."""
    try:
        return "CNN" if get_backbone_spec(backbone).is_cnn else "FM"
    except RegistryError:
        return "unknown"


def _order(names: list[str], canonical: list[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(canonical)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


@dataclass(frozen=True)
class ReportData:
    metric: str
    groups: pd.DataFrame
    folds: pd.DataFrame
    runs: pd.DataFrame
    tasks: list[str]
    models: list[str]
    strategies: list[str]
    families: dict[str, str]  # model -> CNN | FM | unknown

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric].higher_is_better

    @property
    def label(self) -> str:
        return METRICS[self.metric].label

    @cached_property
    def settings(self) -> list[Setting]:
        keys = self.groups[["regime", "shots"]].drop_duplicates()
        return sorted(Setting.of(r, s) for r, s in keys.itertuples(index=False))

    def groups_in(self, setting: Setting) -> pd.DataFrame:
        g = self.groups
        return g[(g["regime"] == setting.regime) & (g["shots"] == setting.shots)]

    def folds_in(self, setting: Setting) -> pd.DataFrame:
        f = self.folds
        return f[(f["regime"] == setting.regime) & (f["shots"] == setting.shots)]


def check_metric(metric: str) -> str:
    return get_metric(metric).name


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a results table written by `progbench evaluate` (.parquet or .csv)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise RunError(
            f"cannot read {path}: unknown extension {path.suffix!r}",
            "Give a run tree, or the results.parquet / results.csv that `progbench evaluate` wrote.",
        )
    try:
        df = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise RunError(f"cannot read {path}: {err}") from err
    _check_columns(df)
    return df


def _check_columns(results: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise RunError(
            f"the results table lacks column(s) {', '.join(missing)}",
            "Give the table written by `progbench evaluate` (results.parquet or results.csv).",
        )


def _model_labels(df: pd.DataFrame) -> pd.Series:
    pairs = df[["backbone", "weights"]].drop_duplicates()
    several = set(pairs["backbone"][pairs["backbone"].duplicated()])
    return df["backbone"].where(
        ~df["backbone"].isin(several), df["backbone"] + " (" + df["weights"] + ")"
    )


def prepare(results: pd.DataFrame, metric: str = "mcc") -> ReportData:
    """Select the test rows of `metric` and arrange them (see the module docstring)."""
    check_metric(metric)
    _check_columns(results)
    df = results[(results["split"] == "test")].copy()
    for col in ("task", "backbone", "weights", "strategy", "regime", "level", "metric"):
        df[col] = df[col].astype("string").fillna("").astype(str)
    df["shots"] = pd.to_numeric(df["shots"], errors="coerce").fillna(0).astype(int)
    df["model"] = _model_labels(df)
    runs = _runs(df)
    df = df[df["metric"] == metric]
    if df.empty:
        raise RunError(
            f"the results table has no test rows for metric {metric!r}",
            "Evaluate the run tree again with `progbench evaluate RUNS`.",
        )
    keys = ["task", "model", "backbone", "weights", "strategy", "regime", "shots"]

    def level(name: str, column: str) -> pd.DataFrame:
        part = df[df["level"] == name]
        return part[[*keys, "value"]].rename(columns={"value": column})

    mean = df[df["level"] == "aggregate-mean"][
        [*keys, "value", "n_runs", *(["trainable_percent"] if "trainable_percent" in df else [])]
    ].rename(columns={"value": "mean"})
    if "trainable_percent" not in mean:
        mean["trainable_percent"] = float("nan")
    groups = mean.merge(level("aggregate-std", "std"), on=keys, how="left").merge(
        level("repeat-std", "repeat_std"), on=keys, how="left"
    )
    groups["n_runs"] = pd.to_numeric(groups["n_runs"], errors="coerce").astype("Int64")
    for col in ("mean", "std", "repeat_std", "trainable_percent"):
        groups[col] = pd.to_numeric(groups[col], errors="coerce").astype(float)

    run_level = df[(df["level"] == "run") & (df["regime"] == "full")]
    fold_level = df[(df["level"] == "fold-mean") & (df["regime"] != "full")]
    folds = pd.concat([run_level, fold_level])[[*keys, "fold", "value"]]
    folds["fold"] = pd.to_numeric(folds["fold"], errors="coerce").astype(int)
    folds["value"] = pd.to_numeric(folds["value"], errors="coerce").astype(float)

    tasks = sorted(groups["task"].unique())
    strategies = _order(list(groups["strategy"].unique()), list_strategies())
    backbone_rank = {b: i for i, b in enumerate(list_backbones(include_tiny=True))}
    model_keys = groups[["model", "backbone", "weights"]].drop_duplicates()
    models = [
        m
        for m, b, w in sorted(
            model_keys.itertuples(index=False),
            key=lambda t: (backbone_rank.get(t[1], len(backbone_rank)), t[1], t[2]),
        )
    ]
    families = {
        m: family_of(b) for m, b in model_keys[["model", "backbone"]].itertuples(index=False)
    }
    sort_keys = ["task", "model", "strategy", "regime", "shots"]
    return ReportData(
        metric=metric,
        groups=groups.sort_values(sort_keys).reset_index(drop=True),
        folds=folds.sort_values([*sort_keys, "fold"]).reset_index(drop=True),
        runs=runs,
        tasks=tasks,
        models=models,
        strategies=strategies,
        families=families,
    )


def _runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (its first metric row carries the run's spec, cost and provenance)."""
    part = df[df["level"] == "run"]
    cols = [c for c in RUN_COLUMNS if c in part.columns]
    identity = [
        c
        for c in ("task", "backbone", "weights", "strategy", "regime", "shots", "repeat", "fold")
        if c in part
    ]
    out = part.drop_duplicates(subset=identity)[cols].copy()
    for col in ("shots", "repeat", "fold"):
        if col in out:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    if "shots" in out and "regime" in out:
        out.loc[out["regime"] == "full", "shots"] = pd.NA  # k means nothing without few-shot
    sort = [
        c for c in ("task", "backbone", "strategy", "regime", "shots", "fold", "repeat") if c in out
    ]
    return out.sort_values(sort, na_position="first").reset_index(drop=True)
