"""The long results table: one row per (run or aggregate) x split x metric.

`evaluate_tree` reads every finished run under a root, recomputes its metrics with one threshold
policy, aggregates each (task, backbone, weights, strategy, regime, shots) group, and returns the
table; `write_results` publishes it as results.parquet and results.csv atomically.

Aggregates are cached under `<root>/.progbench-evaluate/`, keyed by the content digests of the
group's predictions, the policy, B, the seed and the scikit-learn version: re-evaluating a tree
after a few new runs only bootstraps the groups that changed.

The table's columns and the rows of a run and of a group's aggregates (with `n_degenerate`,
the runs behind a row that predicted one class) are built in evaluate.rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from progbench.atomic import atomic_write_json, atomic_write_with
from progbench.errors import RunError
from progbench.evaluate.aggregate import (
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    AggregateRow,
    EvaluatedRun,
    aggregate_group,
    evaluate_run,
    group_runs,
)
from progbench.evaluate.metrics import METRIC_NAMES
from progbench.evaluate.rows import SPEC_COLUMNS, aggregate_rows, run_rows, to_table
from progbench.evaluate.thresholds import parse_threshold_policy
from progbench.provenance import file_digest, fingerprint, now_iso
from progbench.runs import FEWSHOT_REGIMES, PREDICTIONS_FILE, iter_runs, read_run

RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
CACHE_DIR = ".progbench-evaluate"
# Bump when the aggregate rows' meaning changes, so old cache entries are not reused.
AGGREGATE_VERSION = 1

ProgressFn = Callable[[str, int, int], None]  # (stage, completed, total)


@dataclass(frozen=True)
class TreeEvaluation:
    results: pd.DataFrame
    done: list[Path]
    incomplete: list[Path]
    n_groups: int


def _cache_key(runs: Sequence[EvaluatedRun], policy: str, n_boot: int, seed: int) -> str:
    members = []
    for r in sorted(runs, key=lambda x: (x.spec.fold, x.spec.repeat or 0)):
        run = r.run
        digest = None
        if run is not None:
            digest = run.digests.get(PREDICTIONS_FILE) or file_digest(run.path / PREDICTIONS_FILE)
        members.append([r.spec.key(), digest])
    return fingerprint(
        {
            "version": AGGREGATE_VERSION,
            "sklearn": version("scikit-learn"),
            "policy": policy,
            "n_boot": n_boot,
            "seed": seed,
            "runs": members,
        },
        length=24,
    )


def _aggregate_cached(
    runs: Sequence[EvaluatedRun], policy: str, n_boot: int, seed: int, cache_dir: Path | None
) -> list[AggregateRow]:
    if cache_dir is None:
        return aggregate_group(runs, n_boot, seed)
    path = cache_dir / f"{_cache_key(runs, policy, n_boot, seed)}.json"
    if path.is_file():
        try:
            return [AggregateRow(**row) for row in json.loads(path.read_text())["rows"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged entry is recomputed and replaced
    rows = aggregate_group(runs, n_boot, seed)
    atomic_write_json(path, {"rows": [r.as_dict() for r in rows]})
    return rows


def evaluate_tree(
    root: str | os.PathLike[str],
    threshold: str = "fixed:0.5",
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    n_jobs: int = 1,
    cache: bool = True,
    progress: ProgressFn | None = None,
) -> TreeEvaluation:
    """Evaluate every finished run under `root` and aggregate each group. Incomplete runs are
    skipped and returned in `incomplete`; a tree without finished runs is an error."""
    root = Path(root)
    policy = parse_threshold_policy(threshold).name
    scan = iter_runs(root)
    if not scan.done:
        listed = "".join(f"\n  {p}" for p in scan.incomplete[:10])
        raise RunError(
            f"no finished runs under {root}"
            + (
                f"; {len(scan.incomplete)} incomplete (no DONE):{listed}" if scan.incomplete else ""
            ),
            "Point at a run tree (runs/...) whose runs finished, or at a predictions file.",
        )
    evaluated: list[EvaluatedRun] = []
    for i, path in enumerate(scan.done):
        evaluated.append(evaluate_run(read_run(path), threshold))
        if progress:
            progress("runs", i + 1, len(scan.done))
    groups = group_runs(evaluated)
    measured_at = now_iso()
    cache_dir = root / CACHE_DIR if cache else None

    def job(runs: list[EvaluatedRun]) -> list[AggregateRow]:
        return _aggregate_cached(runs, policy, n_boot, seed, cache_dir)

    if n_jobs == 1:
        aggregated = []
        for i, runs in enumerate(groups.values()):
            aggregated.append(job(runs))
            if progress:
                progress("groups", i + 1, len(groups))
    else:
        from joblib import Parallel, delayed

        aggregated = []
        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(job)(runs) for runs in groups.values()
        )
        for i, rows in enumerate(results):
            aggregated.append(rows)
            if progress:
                progress("groups", i + 1, len(groups))

    table_rows: list[dict[str, Any]] = []
    for runs, agg in zip(groups.values(), aggregated, strict=True):
        for er in sorted(runs, key=lambda r: (r.spec.fold, r.spec.repeat or 0)):
            table_rows += run_rows(er, root)
        table_rows += aggregate_rows(runs, agg, policy, measured_at)
    return TreeEvaluation(
        results=to_table(table_rows),
        done=scan.done,
        incomplete=scan.incomplete,
        n_groups=len(groups),
    )


def write_results(results: pd.DataFrame, root: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write results.parquet and results.csv under `root`, each atomically."""
    root = Path(root)
    parquet, csv = root / RESULTS_PARQUET, root / RESULTS_CSV
    atomic_write_with(parquet, lambda tmp: results.to_parquet(tmp, index=False))
    atomic_write_with(csv, lambda tmp: results.to_csv(tmp, index=False))
    return parquet, csv


def _none(x: Any) -> Any:
    if x is None or x is pd.NA:
        return None
    if isinstance(x, float | np.floating):
        return None if np.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def summarise(results: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per group: mean, std, pooled value and CI (and few-shot spreads) per metric."""
    agg = results[results["level"] != "run"]
    keys = [*SPEC_COLUMNS, "shots"]
    run_rows_ = results[
        (results["level"] == "run") & (results["split"] == "test") & (results["metric"] == "n")
    ]
    n_runs = {
        tuple(str(v) for v in k): len(g)
        for k, g in run_rows_.groupby(keys, dropna=False, sort=False)
    }
    out: list[dict[str, Any]] = []
    for key, group in agg.groupby(keys, dropna=False, sort=True):
        record = {k: _none(v) for k, v in zip(keys, key, strict=True)}
        fewshot = record["regime"] in FEWSHOT_REGIMES
        pooled_level = "pooled-mean" if fewshot else "pooled"

        def pick(level: str, metric: str, g: pd.DataFrame = group) -> pd.Series | None:
            hit = g[(g["level"] == level) & (g["metric"] == metric)]
            return hit.iloc[0] if len(hit) else None

        metrics: dict[str, dict[str, Any]] = {}
        for m in METRIC_NAMES:
            mean, std, pooled = (
                pick("aggregate-mean", m),
                pick("aggregate-std", m),
                pick(pooled_level, m),
            )
            entry = {
                "mean": _none(mean["value"]) if mean is not None else None,
                "std": _none(std["value"]) if std is not None else None,
                "pooled": _none(pooled["value"]) if pooled is not None else None,
                "ci_low": _none(pooled["ci_low"]) if pooled is not None else None,
                "ci_high": _none(pooled["ci_high"]) if pooled is not None else None,
                "n_folds": _none(mean["n_runs"]) if mean is not None else None,
            }
            if fewshot:
                rs, ps = pick("repeat-std", m), pick("pooled-std", m)
                entry["repeat_std"] = _none(rs["value"]) if rs is not None else None
                entry["pooled_std"] = _none(ps["value"]) if ps is not None else None
            metrics[m] = entry
        prevalence = group[(group["level"] == "pooled") & (group["metric"] == "prevalence")]
        n_test = group[(group["level"] == "pooled") & (group["metric"] == "n")]
        record["prevalence"] = _none(prevalence["value"].iloc[0]) if len(prevalence) else None
        record["n_test"] = _none(n_test["value"].iloc[0]) if len(n_test) else None
        record["threshold_rule"] = _none(group["threshold_rule"].iloc[0])
        # Runs of the group that predicted one class on their test split (constant classifier).
        whole = pick("aggregate-mean", "mcc")
        record["n_degenerate"] = (
            int(_none(whole["n_degenerate"]) or 0)
            if whole is not None and "n_degenerate" in group
            else 0
        )
        record["n_runs"] = n_runs.get(tuple(str(v) for v in key), 0)
        record["metrics"] = metrics
        out.append(record)
    return out


RANDOM_WEIGHTS = "random"
MAX_GROUP_WARNINGS = 5  # degenerate groups named one by one; the rest are counted


def result_warnings(groups: Sequence[dict[str, Any]]) -> list[str]:
    """What a reader of `summarise`'s groups must know before reading their numbers: groups whose
    backbone had random weights, and groups with runs that predicted one class on their test
    split (a constant classifier; MCC is 0 by convention, not by skill)."""
    out: list[str] = []
    random = sorted({str(g["backbone"]) for g in groups if g.get("weights") == RANDOM_WEIGHTS})
    if random:
        out.append(
            f"random weights: {', '.join(random)} ran with --weights random (a seeded random "
            "initialisation, not pretrained weights); these results say nothing about the "
            "pretrained backbone"
        )
    degenerate = [g for g in groups if int(g.get("n_degenerate") or 0)]
    for g in degenerate[:MAX_GROUP_WARNINGS]:
        k = f", k={g['shots']}" if g.get("shots") else ""
        out.append(
            f"degenerate classifier: {g['n_degenerate']} of {g.get('n_runs') or '?'} run(s) of "
            f"{g['task']} / {g['backbone']} / {g['strategy']} ({g['regime']}{k}) predicted "
            "one class for every test image at the chosen threshold; their MCC is 0 by "
            "convention and their sensitivity or specificity 0"
        )
    if len(degenerate) > MAX_GROUP_WARNINGS:
        out.append(
            f"degenerate classifier: {len(degenerate) - MAX_GROUP_WARNINGS} more group(s) "
            "with one-class runs (column n_degenerate of results.parquet)"
        )
    return out
