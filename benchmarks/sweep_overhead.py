"""The sweep's overhead: a sweep of LP runs against the same runs through direct library calls.

    python benchmarks/sweep_overhead.py [--patients 300] [--repeats 3] [--out benchmarks/results/sweep_overhead.json]

One process, one synthetic cohort (`progbench synth`), features extracted once beforehand into a
cache both paths share (extraction is the same work either way and would drown the figure).
The grid: backbones resnet18 and tiny-dinov2 (random weights) x LP, 5 folds x (full data +
k in {2, 4, 8, 16} x 5 repeats) = 105 runs per backbone, 210 in all.

- direct: one `run_train(TrainRequest(...), score=False)` per backbone (what `progbench train
  --shots 2,4,8,16 --repeats 5` calls), into a fresh run tree;
- sweep: `run_sweep(sweep, LocalExecutor(workers=1))` (plan, phases, unit locks, state files,
  cell by cell) into another fresh tree.

Both are then scored the same way (`evaluate_tree` + results + report: `finish_sweep`'s work),
timed apart: overhead = sweep / direct - 1, for the training part and end to end. The two trees
are checked to hold the same runs with the same predictions, so the sweep did the same work.
Each path first runs once untimed (what a process pays once either way: imports, the LP writer
processes, which then serve every later grid), then `--repeats` times on fresh trees, which path goes first alternating; the figure is the median of each path's times (the best of each is written too: on a
shared machine one repeat's noise can exceed the overhead either way).
Prints a summary and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from progbench.provenance import git_sha, library_versions, now_iso

BACKBONES = ["resnet18", "tiny-dinov2"]
SHOTS = [2, 4, 8, 16]
REPEATS = 5
FOLDS = 5
IMAGE_SIZE = 64
GOAL_OVERHEAD = 0.10


def write_sweep(root: Path, runs: str) -> Path:
    spec = {
        "name": f"overhead-{runs}",
        "runs": runs,
        "cache": "cache",
        "tasks": ["cohort/tasks/severity.yaml"],
        "backbones": BACKBONES,
        "strategies": ["lp"],
        "weights": "random",
        "scheme": "kfold",
        "folds": FOLDS,
        "fewshot": {"shots": SHOTS, "repeats": REPEATS},
        "train": {"image_size": IMAGE_SIZE, "device": "cpu"},
        "report": {"n_boot": 200},
    }
    path = root / f"{runs}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def warm_stores(root: Path) -> float:
    """Image and feature stores of the grid, built once through the sweep's own store units."""
    from progbench.sweep.execute import run_unit
    from progbench.sweep.plan import make_plan
    from progbench.sweep.run import phases
    from progbench.sweep.spec import load_sweep

    sweep = load_sweep(write_sweep(root, "runs-warm"))
    t0 = time.perf_counter()
    for phase in phases(sweep, make_plan(sweep))[:2]:
        for unit in phase:
            result = run_unit(sweep, unit)
            if result.state != "done":
                raise SystemExit(f"building {unit.key} failed: {result.error} ({result.log})")
    return time.perf_counter() - t0


def score(runs: Path) -> None:
    from progbench.evaluate.results import evaluate_tree, write_results
    from progbench.report import build_report, collect_run_versions

    tree = evaluate_tree(runs, n_boot=200)
    write_results(tree.results, runs)
    build_report(tree.results, runs / "report", run_versions=collect_run_versions(runs))


def direct(root: Path, runs: Path) -> tuple[float, float, int]:
    from progbench.data.manifest import load_task
    from progbench.train.pipeline import SplitRequest, TrainRequest, run_train
    from progbench.train.presets import resolve_training

    t0 = time.perf_counter()
    task = load_task(root / "cohort" / "tasks" / "severity.yaml")
    options = dataclasses.replace(
        resolve_training(overrides={"image_size": IMAGE_SIZE, "device": "cpu"}),
        cache_dir=root / "cache",
    )
    splits = SplitRequest(scheme="kfold", folds=FOLDS, shots=tuple(SHOTS), repeats=REPEATS)
    written = 0
    for backbone in BACKBONES:
        request = TrainRequest(
            task=task,
            backbone=backbone,
            strategy="lp",
            splits=splits,
            runs_root=runs,
            weights="random",
            options=options,
        )
        written += len(run_train(request, score=False).written)
    t1 = time.perf_counter()
    score(runs)
    return t1 - t0, time.perf_counter() - t1, written


def swept(root: Path, name: str) -> tuple[float, float, int]:
    from progbench.sweep.local import LocalExecutor
    from progbench.sweep.run import finish_sweep, run_sweep
    from progbench.sweep.spec import load_sweep

    t0 = time.perf_counter()
    sweep = load_sweep(write_sweep(root, name))
    result = run_sweep(sweep, LocalExecutor(workers=1))
    if result.failed:
        raise SystemExit(f"sweep cells failed: {[(r.key, r.error) for r in result.failed]}")
    t1 = time.perf_counter()
    finish_sweep(sweep)
    return t1 - t0, time.perf_counter() - t1, sum(r.written for r in result.results)


def predictions(runs: Path) -> dict[str, pd.DataFrame]:
    from progbench.runs import PREDICTIONS_FILE, iter_runs

    return {
        str(d.relative_to(runs)): pd.read_parquet(d / PREDICTIONS_FILE)
        for d in iter_runs(runs).done
    }


def same_runs(a: Path, b: Path) -> int:
    pa, pb = predictions(a), predictions(b)
    if sorted(pa) != sorted(pb):
        raise SystemExit(f"the trees differ: {sorted(set(pa) ^ set(pb))[:5]}")
    for key, frame in pa.items():
        pd.testing.assert_frame_equal(frame, pb[key], check_exact=True)
    return len(pa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions of each path")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/sweep_overhead.json"))
    args = ap.parse_args()

    from progbench.data.synth import synthesize

    with tempfile.TemporaryDirectory(prefix="progbench-sweep-overhead-") as tmp:
        root = Path(tmp)
        synthesize(root / "cohort", patients=args.patients, centers=4, seed=0)
        warm_s = warm_stores(root)
        print(f"stores built once in {warm_s:.1f} s (shared by both paths)", flush=True)
        direct(root, root / "runs-direct-warm")  # untimed: see the module docstring
        swept(root, "runs-sweep-warm")
        times: dict[str, list[tuple[float, float]]] = {"direct": [], "sweep": []}
        runs = 0
        for i in range(args.repeats):
            # Which path goes first alternates: the second run in a process is a little slower
            # (a bigger heap), the same for either path.
            if i % 2:
                s_train, s_score, s_runs = swept(root, f"runs-sweep-{i}")
            d_train, d_score, runs = direct(root, root / f"runs-direct-{i}")
            if not i % 2:
                s_train, s_score, s_runs = swept(root, f"runs-sweep-{i}")
            times["direct"].append((d_train, d_score))
            times["sweep"].append((s_train, s_score))
            if s_runs != runs:
                raise SystemExit(f"the sweep wrote {s_runs} runs, the direct calls {runs}")
            print(
                f"repeat {i + 1}: {runs} runs; direct {d_train:.1f} s + {d_score:.1f} s scoring, "
                f"sweep {s_train:.1f} s + {s_score:.1f} s scoring",
                flush=True,
            )
        checked = same_runs(root / "runs-direct-0", root / "runs-sweep-0")

    best = {k: min(v, key=sum) for k, v in times.items()}
    train_overhead = best["sweep"][0] / best["direct"][0] - 1
    total_overhead = sum(best["sweep"]) / sum(best["direct"]) - 1
    median = {
        k: (statistics.median(t for t, _ in v), statistics.median(map(sum, v)))
        for k, v in times.items()
    }
    median_train = median["sweep"][0] / median["direct"][0] - 1
    median_total = median["sweep"][1] / median["direct"][1] - 1
    out: dict[str, Any] = {
        "benchmark": "sweep_overhead",
        "when": now_iso(),
        "git": git_sha(),
        "versions": library_versions(),
        "patients": args.patients,
        "backbones": BACKBONES,
        "grid": {"folds": FOLDS, "shots": SHOTS, "repeats": REPEATS, "image_size": IMAGE_SIZE},
        "lp_runs": runs,
        "runs_checked_equal": checked,
        "store_build_s": round(warm_s, 2),
        "direct_train_s": round(best["direct"][0], 3),
        "direct_score_s": round(best["direct"][1], 3),
        "sweep_train_s": round(best["sweep"][0], 3),
        "sweep_score_s": round(best["sweep"][1], 3),
        "overhead_train": round(train_overhead, 4),
        "overhead_end_to_end": round(total_overhead, 4),
        "median_overhead_train": round(median_train, 4),
        "median_overhead_end_to_end": round(median_total, 4),
        "goal_overhead_max": GOAL_OVERHEAD,
        "goal_met": median_train <= GOAL_OVERHEAD and median_total <= GOAL_OVERHEAD,
        "all_times": times,
    }
    print(
        f"{runs} LP runs ({checked} checked equal), median of {args.repeats} repeats: training "
        f"{median['direct'][0]:.2f} s direct vs {median['sweep'][0]:.2f} s swept "
        f"({median_train:+.1%}); end to end {median['direct'][1]:.2f} s vs "
        f"{median['sweep'][1]:.2f} s ({median_total:+.1%}); best of each: {train_overhead:+.1%} "
        f"and {total_overhead:+.1%}; goal <= {GOAL_OVERHEAD:.0%}: "
        f"{'met' if out['goal_met'] else 'NOT met'}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
