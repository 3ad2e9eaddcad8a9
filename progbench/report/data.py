"""What a report reads from the results table: one metric, arranged for tables, tests and plots.

The results table (progbench.evaluate.results, docs/METHODOLOGY.md 6.5) is long: one row per
(run or aggregate) x split x metric. `prepare` keeps the test split of one metric and returns

- `groups`: one row per (task, scheme, model, strategy, regime, shots) with the mean and std over
  folds (`aggregate-mean` / `aggregate-std`) and the folds they count (`n_runs`), the few-shot
  draw spread (`repeat-std`), the pooled value with its patient-bootstrap CI (`pooled` in the
  full regime, `pooled-mean` in few-shot regimes), the runs that predicted one class on their
  test split (`n_degenerate`) and the mean trainable share of the group's runs;
- `folds`: one value per (task, scheme, model, strategy, setting, fold), the unit that paired tests
  match on: the run's value in the full regime, the mean over repeats (`fold-mean`) in few-shot
  regimes, with the fold's held-out centre (`test_center`, LOCO only) and its runs that predicted
  one class (`n_degenerate`);
- `runs`: one row per run with its spec, cost and provenance.

A model is a backbone, or `backbone (weights)` when the table holds one backbone with several
weights, so that runs with different weights are never paired or averaged together. Likewise a
task is shown as `task (scheme)` (`task_label`) when the table holds several split schemes of it
(kfold and LOCO runs side by side): every grouping keys on the scheme as well as the task.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from progbench.errors import ConfigError, RegistryError, RunError
from progbench.evaluate.registry import METRICS, PRIMARY_METRICS, get_metric
from progbench.evaluate.rows import COST_COLUMNS, SPEC_COLUMNS
from progbench.models.registry import get_backbone_spec, list_backbones, list_strategies

REQUIRED_COLUMNS = (
    "level",
    "task",
    "backbone",
    "weights",
    "strategy",
    "regime",
    "scheme",
    "shots",
    "fold",
    "split",
    "metric",
    "value",
    "n_runs",
)
# Filled in when a table lacks them (tables of older progbench versions, hand-made tables).
OPTIONAL_DEFAULTS = {
    "test_center": pd.NA,
    "ci_low": float("nan"),
    "ci_high": float("nan"),
    "run_dir": pd.NA,
    "n_degenerate": 0,  # tables before progbench flagged degenerate runs
}
REGIME_ORDER = ("full", "fewshot", "fewshot-center")
# The results table's spec and cost columns, in its order, for one row per run.
RUN_COLUMNS = (
    "run_dir",
    *SPEC_COLUMNS,
    "shots",
    "repeat",
    "fold",
    "test_center",
    *COST_COLUMNS,
    "git_sha",
    "measured_at",
)
# What identifies a group of runs (one cell of a results table) and one unit of a paired test.
GROUP_KEYS = ["task", "scheme", "task_label", "model", "backbone", "weights", "strategy"]
GROUP_KEYS += ["regime", "shots"]
UNIT_KEYS = ["task", "scheme", "model", "strategy", "regime", "shots", "fold"]
RUN_IDENTITY: tuple[str, ...] = ("task", "scheme", "backbone", "weights", "strategy")
RUN_IDENTITY += ("regime", "shots", "repeat", "fold")


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


def _order(names: Iterable[str], canonical: list[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(canonical)}
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


@dataclass(frozen=True)
class ReportData:
    metric: str
    groups: pd.DataFrame
    folds: pd.DataFrame
    runs: pd.DataFrame
    tasks: list[str]  # task labels: `task`, or `task (scheme)` for a task with several schemes
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


def parse_metrics(values: str | Sequence[str] | None) -> tuple[str, ...]:
    """Metric names from repeated and/or comma-separated values, in order, without repeats;
    none given: the primary metrics (MCC and PR-AUC)."""
    if values is None:
        return PRIMARY_METRICS
    items = [values] if isinstance(values, str) else list(values)
    names = [n.strip() for v in items for n in v.split(",") if n.strip()]
    if not names:
        raise ConfigError("no metric given", f"Choose from: {', '.join(METRICS)}.")
    return tuple(dict.fromkeys(check_metric(n) for n in names))


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


def _task_labels(df: pd.DataFrame) -> pd.Series:
    pairs = df[["task", "scheme"]].drop_duplicates()
    several = set(pairs["task"][pairs["task"].duplicated()])
    return df["task"].where(~df["task"].isin(several), df["task"] + " (" + df["scheme"] + ")")


def _test_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The test split, with typed keys and the model and task labels."""
    _check_columns(results)
    df = results[results["split"] == "test"].copy()
    for col, default in OPTIONAL_DEFAULTS.items():
        if col not in df:
            df[col] = default
    text = ("task", "scheme", "backbone", "weights", "strategy", "regime", "level", "metric")
    for col in text:
        df[col] = df[col].astype("string").fillna("").astype(str)
    df["test_center"] = df["test_center"].astype("string")
    df["shots"] = pd.to_numeric(df["shots"], errors="coerce").fillna(0).astype(int)
    df["model"] = _model_labels(df)
    df["task_label"] = _task_labels(df)
    return df


def _refuse_duplicates(part: pd.DataFrame, keys: Sequence[str], what: str) -> None:
    dup = part.duplicated(subset=list(keys), keep=False)
    if not dup.any():
        return
    first = part.loc[dup].iloc[0]
    same = part.loc[dup & (part[list(keys)] == first[list(keys)]).all(axis=1)]
    where = [str(x) for x in same.get("run_dir", pd.Series(dtype=str)).dropna()][:2]
    key = ", ".join(f"{k}={first[k]}" for k in keys)
    raise RunError(
        f"the results table has {len(same)} {what} rows for {key}"
        + (f" ({' and '.join(where)})" if where else ""),
        "Evaluate one run tree at a time, or remove the duplicate runs.",
    )


def _level(df: pd.DataFrame, name: str, columns: dict[str, str]) -> pd.DataFrame:
    part = df[df["level"] == name]
    return part[[*GROUP_KEYS, *columns]].rename(columns=columns)


def _groups(df: pd.DataFrame) -> pd.DataFrame:
    mean = df[df["level"] == "aggregate-mean"]
    _refuse_duplicates(mean, GROUP_KEYS, "aggregate-mean")
    cols = ["value", "n_runs", "n_degenerate"]
    cols += ["trainable_percent"] if "trainable_percent" in df else []
    groups = mean[[*GROUP_KEYS, *cols]].rename(columns={"value": "mean"})
    if "trainable_percent" not in groups:
        groups["trainable_percent"] = float("nan")
    # The pooled value: `pooled` (one per group) in the full regime, `pooled-mean` in few-shot.
    pooled_full = df[(df["level"] == "pooled") & (df["regime"] == "full")]
    pooled_few = df[(df["level"] == "pooled-mean") & (df["regime"] != "full")]
    pooled = pd.concat([pooled_full, pooled_few])[[*GROUP_KEYS, "value", "ci_low", "ci_high"]]
    groups = (
        groups.merge(_level(df, "aggregate-std", {"value": "std"}), on=GROUP_KEYS, how="left")
        .merge(_level(df, "repeat-std", {"value": "repeat_std"}), on=GROUP_KEYS, how="left")
        .merge(pooled.rename(columns={"value": "pooled"}), on=GROUP_KEYS, how="left")
    )
    groups["n_runs"] = pd.to_numeric(groups["n_runs"], errors="coerce").astype("Int64")
    groups["n_degenerate"] = (
        pd.to_numeric(groups["n_degenerate"], errors="coerce").fillna(0).astype(int)
    )
    for col in ("mean", "std", "repeat_std", "trainable_percent", "pooled", "ci_low", "ci_high"):
        groups[col] = pd.to_numeric(groups[col], errors="coerce").astype(float)
    return groups


def _fold_numbers(part: pd.DataFrame) -> pd.Series:
    fold = pd.to_numeric(part["fold"], errors="coerce")
    bad = fold.isna() | (fold != fold.round())
    if bad.any():
        first = part.loc[bad].iloc[0]
        raise RunError(
            f"the results table has {int(bad.sum())} {first['level']} row(s) without a whole "
            f"fold number (column 'fold', value {first['fold']!r}, task {first['task']!r}, "
            f"strategy {first['strategy']!r})",
            "Give the table written by `progbench evaluate` (results.parquet or results.csv).",
        )
    return fold.astype(int)


def _folds(df: pd.DataFrame) -> pd.DataFrame:
    """One value per unit; the held-out centre of each fold comes from its runs' rows."""
    run_level = df[(df["level"] == "run") & (df["regime"] == "full")]
    fold_level = df[(df["level"] == "fold-mean") & (df["regime"] != "full")]
    folds = pd.concat([run_level, fold_level])
    cols = [*GROUP_KEYS, "fold", "value", "n_degenerate", "run_dir"]
    folds = folds.assign(fold=_fold_numbers(folds))[cols]
    folds["value"] = pd.to_numeric(folds["value"], errors="coerce").astype(float)
    folds["n_degenerate"] = (
        pd.to_numeric(folds["n_degenerate"], errors="coerce").fillna(0).astype(int)
    )
    _refuse_duplicates(folds, UNIT_KEYS, "per-fold")
    centre_keys = ["task", "scheme", "model", "strategy", "regime", "fold"]
    centres = df[(df["level"] == "run")].dropna(subset=["test_center"])
    centres = centres.assign(fold=_fold_numbers(centres))
    centres = centres.drop_duplicates(subset=centre_keys)[[*centre_keys, "test_center"]]
    return folds.drop(columns="run_dir").merge(centres, on=centre_keys, how="left")


def _models(groups: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    backbone_rank = {b: i for i, b in enumerate(list_backbones(include_tiny=True))}
    keys = groups[["model", "backbone", "weights"]].drop_duplicates()
    ordered = sorted(
        keys.itertuples(index=False),
        key=lambda t: (backbone_rank.get(t[1], len(backbone_rank)), t[1], t[2]),
    )
    families = {m: family_of(b) for m, b, _ in keys.itertuples(index=False)}
    return [m for m, _, _ in ordered], families


def prepare(results: pd.DataFrame, metric: str = "mcc") -> ReportData:
    """Select the test rows of `metric` and arrange them (see the module docstring)."""
    check_metric(metric)
    df = _test_rows(results)
    runs = _runs(df)
    df = df[df["metric"] == metric]
    if df.empty:
        raise RunError(
            f"the results table has no test rows for metric {metric!r}",
            "Evaluate the run tree again with `progbench evaluate RUNS`.",
        )
    groups = _groups(df)
    folds = _folds(df)
    models, families = _models(groups)
    labels = groups[["task", "scheme", "task_label"]].drop_duplicates()
    sort_keys = ["task", "scheme", "model", "strategy", "regime", "shots"]
    return ReportData(
        metric=metric,
        groups=groups.sort_values(sort_keys).reset_index(drop=True),
        folds=folds.sort_values([*sort_keys, "fold"]).reset_index(drop=True),
        runs=runs,
        tasks=list(labels.sort_values(["task", "scheme"])["task_label"]),
        models=models,
        strategies=_order(groups["strategy"], list_strategies()),
        families=families,
    )


def _runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (its first metric row carries the run's spec, cost and provenance)."""
    part = df[df["level"] == "run"]
    cols = [c for c in RUN_COLUMNS if c in part.columns]
    identity = [c for c in RUN_IDENTITY if c in part]
    out = part.drop_duplicates(subset=identity)[cols].copy()
    for col in ("shots", "repeat", "fold"):
        if col in out:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    if "shots" in out and "regime" in out:
        out.loc[out["regime"] == "full", "shots"] = pd.NA  # k means nothing without few-shot
    sort = [c for c in ("task", "scheme", "backbone", "weights", "strategy", "regime") if c in out]
    sort += [c for c in ("shots", "fold", "repeat") if c in out]
    return out.sort_values(sort, na_position="first").reset_index(drop=True)
