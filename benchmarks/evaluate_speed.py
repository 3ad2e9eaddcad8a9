"""Benchmark `progbench evaluate` with the vectorised patient bootstrap against the per-replicate loop.

    python benchmarks/evaluate_speed.py [--n-boot 1000] [--out benchmarks/results/evaluate_speed.json]

The tree has the demo's size: 2 backbones x (5 full-data folds + 4 k x 3 repeats x 5 folds) =
130 finished runs written with progbench.runs, 30 test images of 20 patients per fold (ten
patients with two images), scores with ties (two decimals), 10 groups and 26 pooled sets.

1. `evaluate_tree` (B = --n-boot, cache off) with the new bootstrap, then with the old loop (the
   evaluator's former `bootstrap_metrics`, kept below as `loop_bootstrap`: np.repeat the rows of
   each replicate and score them with scikit-learn), then the new one again (drift hits both).
   The time spent inside the bootstrap is measured apart; the two results tables must agree
   (same values, CIs within 1e-9).
2. A Stony Brook-sized pooled set (13,639 test images of 1,365 patients): the new path at B =
   --n-boot with its peak traced memory, and the loop on --loop-replicates replicates, projected.
Prints a summary and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from progbench.evaluate import aggregate
from progbench.evaluate.aggregate import PredictionSet, bootstrap_metrics
from progbench.evaluate.bootstrap import patient_bootstrap
from progbench.evaluate.finish import finish_scored_run
from progbench.evaluate.metrics import METRIC_NAMES, binary_metrics
from progbench.evaluate.results import evaluate_tree
from progbench.provenance import git_sha, library_versions, now_iso
from progbench.runs import RunSpec, run_dir_for, write_spec

BACKBONES = ("resnet18", "dinov2-s")
FOLDS = 5
SHOTS = (2, 4, 8, 16)
REPEATS = 3
N_TEST, N_VAL = 30, 12


def loop_bootstrap(
    sets: list[PredictionSet], n_boot: int, seed: int, metrics: tuple[str, ...] = METRIC_NAMES
) -> np.ndarray:
    """The former implementation: one scikit-learn evaluation per replicate and set."""
    universe = np.unique(np.concatenate([s.patient_id for s in sets]).astype(str))
    codes = [np.searchsorted(universe, s.patient_id.astype(str)) for s in sets]
    out = np.full((n_boot, len(sets), len(metrics)), np.nan)
    for b, counts in enumerate(patient_bootstrap(universe, n_boot, seed)):
        for j, s in enumerate(sets):
            rows = np.repeat(np.arange(len(s.y_true)), counts[codes[j]])
            values = binary_metrics(s.y_true[rows], s.p_pos[rows], s.threshold[rows], metrics)
            out[b, j] = [np.nan if values[m] is None else values[m] for m in metrics]
    return out


def predictions(spec: RunSpec, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    effect = 1.0 if spec.shots is None else spec.shots / (spec.shots + 4)
    for split, n in (("val", N_VAL), ("test", N_TEST)):
        # Patients 0-9 have two images, 10-19 one; labels are per patient.
        patient = (
            np.r_[np.repeat(np.arange(10), 2), np.arange(10, n - 10)] if n > 20 else np.arange(n)
        )
        y_patient = (np.random.default_rng([spec.fold, len(split)]).random(n) < 0.4).astype(int)
        y = y_patient[patient]
        p = np.round(1 / (1 + np.exp(-(effect * (2 * y - 1) + rng.normal(0, 1, n)))), 2)
        for i in range(n):
            pid = f"{split}-f{spec.fold}-{patient[i]:03d}"
            rows.append((f"{split}-f{spec.fold}-{i:03d}-img", pid, split, int(y[i]), float(p[i])))
    return pd.DataFrame(rows, columns=["image_id", "patient_id", "split", "y_true", "p_pos"])


def write_tree(root: Path) -> int:
    rng = np.random.default_rng(0)
    specs = []
    for backbone in BACKBONES:
        common: dict[str, Any] = dict(
            task="demo", backbone=backbone, weights="random", scheme="kfold"
        )
        specs += [RunSpec(strategy="lp", regime="full", fold=f, **common) for f in range(FOLDS)]
        specs += [
            RunSpec(
                strategy="lp", regime="fewshot", fold=f, shots=k, repeat=r, seed=42 + r, **common
            )
            for k in SHOTS
            for r in range(REPEATS)
            for f in range(FOLDS)
        ]
    for spec in specs:
        run_dir = run_dir_for(root, spec)
        write_spec(run_dir, spec)
        finish_scored_run(run_dir, predictions(spec, rng))
    return len(specs)


def timed(fn: Callable[..., np.ndarray], spent: list[float]) -> Callable[..., np.ndarray]:
    def wrapper(*args: Any, **kwargs: Any) -> np.ndarray:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        spent.append(time.perf_counter() - t0)
        return out

    return wrapper


def evaluate_with(root: Path, boot: Callable[..., np.ndarray], n_boot: int) -> dict[str, Any]:
    spent: list[float] = []
    aggregate.bootstrap_metrics = timed(boot, spent)  # what aggregate_group calls
    try:
        t0 = time.perf_counter()
        table = evaluate_tree(root, n_boot=n_boot, cache=False).results
        wall = time.perf_counter() - t0
    finally:
        aggregate.bootstrap_metrics = bootstrap_metrics
    return {"wall_s": wall, "bootstrap_s": sum(spent), "calls": len(spent), "table": table}


def compare_tables(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Largest CI difference between two results tables; values and undefined CIs must match."""
    agg_a, agg_b = (t[t["level"] != "run"].reset_index(drop=True) for t in (a, b))
    pd.testing.assert_series_equal(agg_a["value"], agg_b["value"])
    worst = 0.0
    for col in ("ci_low", "ci_high"):
        x, y = agg_a[col].to_numpy(float), agg_b[col].to_numpy(float)
        assert np.array_equal(np.isnan(x), np.isnan(y)), col
        worst = max(worst, float(np.nanmax(np.abs(x - y), initial=0.0)))
    assert worst < 1e-9, worst
    return worst


def large_set(n_boot: int, loop_replicates: int) -> dict[str, Any]:
    """A Stony Brook NY_all-sized pooled set: 13,639 images of 1,365 patients, distinct scores."""
    rng = np.random.default_rng(1)
    patient = np.sort(rng.integers(0, 1365, 13_639))
    y = (rng.random(1365) < 0.13).astype(int)[patient]
    p = 1 / (1 + np.exp(-(y + rng.normal(0, 1, len(y)))))
    s = PredictionSet(patient.astype(str).astype(object), y, p, np.full(len(y), 0.5))
    tracemalloc.start()
    t0 = time.perf_counter()
    fast = bootstrap_metrics([s], n_boot, seed=42)
    new_s = time.perf_counter() - t0
    peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    t0 = time.perf_counter()
    slow = loop_bootstrap([s], loop_replicates, seed=42)
    loop_s = time.perf_counter() - t0
    np.testing.assert_allclose(fast[:loop_replicates], slow, rtol=0, atol=1e-9)
    projected = loop_s / loop_replicates * n_boot
    return {
        "rows": len(y),
        "patients": 1365,
        "new_s": round(new_s, 3),
        "new_peak_traced_mb": round(peak_mb, 1),
        "loop_s_per_replicate": round(loop_s / loop_replicates, 4),
        "loop_projected_s": round(projected, 1),
        "speedup_projected": round(projected / new_s, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--loop-replicates", type=int, default=50, help="loop replicates, large set")
    ap.add_argument("--out", default="benchmarks/results/evaluate_speed.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        n_runs = write_tree(root)
        new = [evaluate_with(root, bootstrap_metrics, args.n_boot)]
        print(
            f"new: evaluate_tree {new[0]['wall_s']:.2f} s (bootstrap {new[0]['bootstrap_s']:.2f} s)"
        )
        old = evaluate_with(root, loop_bootstrap, args.n_boot)
        print(f"old: evaluate_tree {old['wall_s']:.2f} s (bootstrap {old['bootstrap_s']:.2f} s)")
        new.append(evaluate_with(root, bootstrap_metrics, args.n_boot))
        print(
            f"new: evaluate_tree {new[1]['wall_s']:.2f} s (bootstrap {new[1]['bootstrap_s']:.2f} s)"
        )
        worst = max(compare_tables(old["table"], n["table"]) for n in new)
    best = min(new, key=lambda n: n["wall_s"])
    big = large_set(args.n_boot, args.loop_replicates)
    result = {
        "benchmark": "evaluate_speed",
        "tree": {
            "runs": n_runs,
            "groups": old["calls"],
            "test_images_per_fold": N_TEST,
            "test_patients_per_fold": N_TEST - 10,
        },
        "n_boot": args.n_boot,
        "old_loop": {
            "evaluate_tree_s": round(old["wall_s"], 3),
            "bootstrap_s": round(old["bootstrap_s"], 3),
        },
        "new_weighted": {
            "evaluate_tree_s": round(best["wall_s"], 3),
            "bootstrap_s": round(best["bootstrap_s"], 3),
            "evaluate_tree_s_all_passes": [round(n["wall_s"], 3) for n in new],
        },
        "speedup_bootstrap": round(old["bootstrap_s"] / best["bootstrap_s"], 1),
        "speedup_evaluate_tree": round(old["wall_s"] / best["wall_s"], 1),
        "max_ci_difference": worst,
        "large_set": big,
        "versions": library_versions(),
        "git_sha": git_sha(),
        "measured_at": now_iso(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}, indent=2))


if __name__ == "__main__":
    main()
