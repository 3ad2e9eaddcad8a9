"""Provenance of a report: the runs' cost, weights and git SHAs (from the results table), the
library versions and the feature variant each run recorded in spec.json, and the versions that
drew the report."""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from progbench.errors import ProgbenchError
from progbench.runs import SPEC_FILE, iter_runs, read_spec

# Libraries that compute the report's statistics and draw its figures.
REPORT_LIBRARIES = (
    "progbench",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
    "scikit-posthocs",
    "matplotlib",
    "jinja2",
)
COST_COLUMNS = ("wall_time_s", "device_time_s", "peak_host_mb", "peak_device_mb")


def report_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in REPORT_LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def collect_run_versions(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Distinct library-version sets recorded by the finished runs under `root`, with how many
    runs recorded each, most common first. Runs whose spec.json lacks them count as `unknown`."""
    counts: Counter[str] = Counter()
    for run_dir in iter_runs(root).done:
        try:
            spec = json.loads((Path(run_dir) / SPEC_FILE).read_text(encoding="utf-8"))
            versions = spec.get("provenance", {}).get("library_versions") or {}
        except (OSError, ValueError, AttributeError):
            versions = {}
        counts[json.dumps(versions, sort_keys=True)] += 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"versions": json.loads(k), "runs": n} for k, n in ordered]


def cost_by_group(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs and summed cost per (backbone, scheme, strategy, regime), with a final `total` row."""
    if runs.empty:
        return pd.DataFrame()
    keys = [k for k in ("backbone", "scheme", "strategy", "regime") if k in runs.columns]
    cols = [c for c in COST_COLUMNS if c in runs.columns]
    numeric = runs[keys + cols].copy()
    for c in cols:
        numeric[c] = pd.to_numeric(numeric[c], errors="coerce")

    def summarise(part: pd.DataFrame) -> dict[str, Any]:
        out: dict[str, Any] = {"runs": len(part)}
        for c in cols:
            values = part[c].dropna()
            # Time adds up over runs; memory is a peak, so the worst run is what matters.
            if c.endswith("_s"):
                out[c.replace("_s", "_h")] = values.sum() / 3600 if len(values) else float("nan")
            else:
                out[f"max_{c}"] = values.max() if len(values) else float("nan")
        return out

    rows = [
        dict(zip(keys, key, strict=True)) | summarise(part)
        for key, part in numeric.groupby(keys, sort=True)
    ]
    rows.append({k: "total" if k == "backbone" else "" for k in keys} | summarise(numeric))
    return pd.DataFrame(rows)


def weights_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Distinct (backbone, weights, weights fingerprint) and how many runs used each."""
    cols = [c for c in ("backbone", "weights", "weights_fingerprint") if c in runs.columns]
    if runs.empty or not cols:
        return pd.DataFrame(columns=[*cols, "runs"])
    return (
        runs[cols]
        .astype("string")
        .fillna("—")
        .value_counts(sort=False)
        .rename("runs")
        .reset_index()
        .sort_values(cols)
        .reset_index(drop=True)
    )


def git_shas(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "git_sha" not in runs.columns:
        return pd.DataFrame(columns=["git_sha", "runs"])
    return (
        runs["git_sha"]
        .astype("string")
        .fillna("unknown")
        .value_counts(sort=False)
        .rename("runs")
        .reset_index()
        .sort_values("git_sha")
        .reset_index(drop=True)
    )


def collect_run_variants(root: str | os.PathLike[str]) -> dict[str, str]:
    """The feature variant each finished run under `root` read (spec.json `extra.variant`: the
    LP's or estimator's chosen input, a streamed run's head input), keyed like the results
    table's `run_dir`. Runs made before feature variants record none."""
    root = Path(root)
    out: dict[str, str] = {}
    for run_dir in iter_runs(root).done:
        try:
            variant = read_spec(Path(run_dir)).extra.get("variant")
        except (OSError, ValueError, ProgbenchError):
            continue
        if variant:
            out[str(Path(run_dir).relative_to(root))] = str(variant)
    return out


def with_variants(runs: pd.DataFrame, variants: dict[str, str] | None) -> pd.DataFrame:
    """The runs table with a `variant` column after `strategy` (when the variants are known)."""
    if variants is None or "run_dir" not in runs.columns or runs.empty:
        return runs
    out = runs.copy()
    at = list(out.columns).index("strategy") + 1 if "strategy" in out.columns else len(out.columns)
    out.insert(at, "variant", out["run_dir"].map(variants).astype("string"))
    return out
