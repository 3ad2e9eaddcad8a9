"""The Python side of `benchmarks/gpu_check.sh`: one part per call, each written as one JSON file.

    python benchmarks/gpu_check.py PART --dir FOLDER [--dry-run] [part options]

Parts (and their files in FOLDER):
- env (gpu_env.json): torch / CUDA / cuDNN versions, torch's device properties, `nvidia-smi`.
- cuda-tests (gpu_cuda_tests.json): the outcome of `pytest -m cuda`, read from its JUnit XML
  (gpu_check.sh runs pytest, time-boxed).
- extract, train (gpu_extract.json, gpu_train.json): benchmarks/gpu_throughput.py.
- calibrate (gpu_calibration.json): `progbench.sweep.calibrate.calibrate` for the reference
  study's 11 backbones x the strategies that differ in cost (lp = extraction, fft, lora-r8, and
  bitfit for the light adapters), with its defaults (so that `progbench sweep plan --calibrate`
  reads the records back from the cache) and a time budget.
- plan (gpu_plan.json): `progbench sweep plan ruffini2025 --calibrate --json` next to the study's
  3,200 A40-hours, when `progbench sweep` exists; "not available" otherwise.
- summary (gpu_summary.json): the goals (extract >= 0.95x bare, trainer step <= 1.05x minimal,
  whole grid <= 100 GPU-hours) from the other files, with every step's exit status and time.

`--dry-run` runs the same code at toy size on the CPU; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gpu_throughput import part_extract, part_train

from progbench.provenance import git_sha, library_versions, now_iso

REFERENCE_A40_HOURS = 3200  # the reference study's whole grid (Ruffini et al. 2025)
GOALS = {"extract_ratio_min": 0.95, "train_ratio_max": 1.05, "grid_gpu_hours_max": 100.0}
TOY_CALIBRATE = ["tiny-resnet", "tiny-dinov2"]
CALIBRATE_STRATEGIES = ["lp", "fft", "lora-r8", "bitfit"]


def _header(part: str, dry: bool) -> dict[str, Any]:
    return {
        "benchmark": f"gpu_check/{part}",
        "mode": "cpu-dry-run" if dry else "gpu",
        "measured_at": now_iso(),
        # The device machine's copy of the tree has no .git: the caller names the commit.
        "git_sha": os.environ.get("GPU_CHECK_GIT_SHA") or git_sha(),
    }


# ------------------------------------------------------------------------------------- env


def _run_text(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return f"not available: {err}"
    return out.stdout if out.returncode == 0 else f"exit {out.returncode}: {out.stderr.strip()}"


def part_env(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    props = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        fields = (
            "name",
            "major",
            "minor",
            "total_memory",
            "multi_processor_count",
            "L2_cache_size",
        )
        props = {f: getattr(p, f, None) for f in fields}
        props["bf16_supported"] = torch.cuda.is_bf16_supported()
    query = "name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu,power.draw"
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "device_count": torch.cuda.device_count(),
        "device_properties": props,
        "nvidia_smi": _run_text(["nvidia-smi"]),
        "nvidia_smi_query": _run_text(["nvidia-smi", f"--query-gpu={query}", "--format=csv"]),
        "versions": library_versions(),
    }


# ------------------------------------------------------------------------------ cuda tests


def part_cuda_tests(args: argparse.Namespace) -> dict[str, Any]:
    """The JUnit XML of `pytest -m cuda` as outcomes per test and counts."""
    tests: list[dict[str, Any]] = []
    path = Path(args.junit)
    if path.is_file():
        for case in ET.parse(path).getroot().iter("testcase"):
            outcome, message = "passed", None
            for tag in ("failure", "error", "skipped"):
                el = case.find(tag)
                if el is not None:
                    outcome, message = tag, el.get("message")
                    if tag == "skipped" and el.get("type") == "pytest.xfail":
                        outcome = "xfailed"
            tests.append(
                {
                    "name": f"{case.get('classname')}::{case.get('name')}",
                    "outcome": outcome,
                    "seconds": float(case.get("time") or 0.0),
                    "message": message,
                }
            )
    counts = {
        k: sum(t["outcome"] == k for t in tests)
        for k in ("passed", "failed", "error", "skipped", "xfailed")
    }
    return {"pytest_rc": args.rc, "junit_found": path.is_file(), "counts": counts, "tests": tests}


# ------------------------------------------------------------------------------- calibrate


def part_calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from progbench.models.registry import list_backbones
    from progbench.sweep.calibrate import calibrate

    backbones = TOY_CALIBRATE if args.dry_run else list_backbones()  # the study's 11
    size = {"batch_size": 4, "steps": 1, "warmup": 1} if args.dry_run else {}  # GPU: the defaults
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"calibrate: {done}/{total} backbones, {time.perf_counter() - t0:.0f} s", flush=True)

    records = calibrate(
        backbones, CALIBRATE_STRATEGIES, budget_s=args.budget, progress=progress, **size
    )
    reached = {(r.backbone, r.strategy) for r in records}
    missing = [
        f"{b} x {s}" for b in backbones for s in CALIBRATE_STRATEGIES if (b, s) not in reached
    ]
    return {
        "backbones": backbones,
        "strategies": CALIBRATE_STRATEGIES,
        "budget_s": args.budget,
        "seconds": round(time.perf_counter() - t0, 1),
        "records": [asdict(r) for r in records],
        "missing": missing,
    }


# ------------------------------------------------------------------------------------ plan


def has_sweep(cli: list[str]) -> bool:
    """Whether `progbench --help` lists a `sweep` command group."""
    out = subprocess.run([*cli, "--help"], capture_output=True, text=True, timeout=120)
    return any(re.match(r"^\W*sweep\b", line) for line in out.stdout.splitlines())


HOURS_KEYS = ("projected_device_hours", "device_hours", "projected_gpu_hours", "gpu_hours")


def _hours(plan: Any) -> float | None:
    """The projected whole-grid device-hours in the planner's JSON (its schema is the sweep's:
    the first of HOURS_KEYS at the top level or in its `total` object); the whole plan is kept
    in the file whatever its schema."""
    if not isinstance(plan, dict):
        return None
    for scope in (plan, plan.get("totals"), plan.get("total")):
        for key in HOURS_KEYS:
            value = scope.get(key) if isinstance(scope, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return None


def part_plan(args: argparse.Namespace) -> dict[str, Any]:
    cli = [sys.executable, "-m", "progbench.cli"]
    base = {
        "reference_a40_hours": REFERENCE_A40_HOURS,
        "goal_gpu_hours_max": GOALS["grid_gpu_hours_max"],
    }
    if not has_sweep(cli):
        return base | {
            "available": False,
            "projected_device_hours": None,
            "note": "not available: `progbench sweep` does not exist yet",
        }
    # On the CPU the planner's calibration would time full-size models for minutes: plan only.
    # The calibrate part cached the reference strategies; the planner reads them (budget 0) and
    # gives each uncalibrated strategy its family's median: no new GPU time here.
    cmd = [*cli, "sweep", "plan", "ruffini2025", "--json"] + (
        [] if args.dry_run else ["--calibrate", "--calibrate-budget", "0"]
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.budget)
    try:
        plan = json.loads(out.stdout)
    except json.JSONDecodeError:
        plan = None
    hours = _hours(plan)
    return base | {
        "available": True,
        "command": " ".join(cmd[3:]),
        "rc": out.returncode,
        "stderr_tail": out.stderr[-2000:],
        "plan": plan,
        "projected_device_hours": hours,
        "ratio_to_reference": None if hours is None else round(hours / REFERENCE_A40_HOURS, 4),
    }


# --------------------------------------------------------------------------------- summary

FILES = {
    "env": "gpu_env.json",
    "cuda-tests": "gpu_cuda_tests.json",
    "extract": "gpu_extract.json",
    "train": "gpu_train.json",
    "calibrate": "gpu_calibration.json",
    "plan": "gpu_plan.json",
    "summary": "gpu_summary.json",
}


def _load(folder: Path, part: str) -> dict[str, Any]:
    path = folder / FILES[part]
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return {"error": f"{path.name}: {err}"}


def _goal(value: float | None, ok: Callable[[float], bool]) -> dict[str, Any]:
    return {"value": value, "pass": None if value is None else bool(ok(value))}


def _steps(path: Path | None) -> list[dict[str, Any]]:
    """gpu_check.sh's record of its steps: one `name rc seconds` line each."""
    if path is None or not path.is_file():
        return []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [{"step": r[0], "rc": int(r[1]), "seconds": int(r[2])} for r in rows]


def _device(env: dict[str, Any]) -> str:
    if env.get("device_properties"):
        return str(env["device_properties"]["name"])
    return "cpu" if env.get("cuda_available") is False else "unknown"


def part_summary(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(args.dir)
    extract, train, plan = _load(folder, "extract"), _load(folder, "train"), _load(folder, "plan")
    lo, hi, cap = GOALS["extract_ratio_min"], GOALS["train_ratio_max"], GOALS["grid_gpu_hours_max"]
    goals = {
        "extract_over_bare": {
            r.get("backbone", r.get("case")): _goal(r.get("ratio"), lambda v: v >= lo)
            for r in extract.get("results", [])
        },
        "trainer_over_minimal": {
            r.get("case"): _goal(r.get("ratio_median"), lambda v: v <= hi)
            for r in train.get("results", [])
        },
        "grid_gpu_hours": _goal(plan.get("projected_device_hours"), lambda v: v <= cap)
        | {"reference_a40_hours": REFERENCE_A40_HOURS, "note": plan.get("note")},
    }
    steps = _steps(Path(args.steps) if args.steps else None)
    calib = _load(folder, "calibrate")
    return {
        "goals_thresholds": GOALS,
        "goals": goals,
        "cuda_tests": _load(folder, "cuda-tests").get("counts"),
        "calibration_records": len(calib.get("records", [])),
        "calibration_missing": calib.get("missing"),
        "device": _device(_load(folder, "env")),
        "steps": steps,
        "all_steps_ok": bool(steps) and all(s["rc"] == 0 for s in steps),
    }


def print_summary(s: dict[str, Any]) -> None:
    """The short table the device tool's reply ends with."""
    print(f"\n== gpu_check summary ({s['mode']}, {s['device']}) ==")
    for step in s["steps"]:
        print(f"step {step['step']:<12} rc {step['rc']:>3}  {step['seconds']:>4} s")
    print(f"cuda tests: {s['cuda_tests']}")
    for group in ("extract_over_bare", "trainer_over_minimal"):
        for name, g in s["goals"][group].items():
            print(f"{group:<22} {name:<22} {g['value']}  pass={g['pass']}")
    g = s["goals"]["grid_gpu_hours"]
    print(
        f"grid GPU-hours (goal <= {GOALS['grid_gpu_hours_max']:g}, study {REFERENCE_A40_HOURS} A40-h): {g['value']} pass={g['pass']}"
    )
    print(f"calibration records: {s['calibration_records']}, missing: {s['calibration_missing']}")


# ------------------------------------------------------------------------------------ main

PARTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "env": part_env,
    "cuda-tests": part_cuda_tests,
    "extract": part_extract,
    "train": part_train,
    "calibrate": part_calibrate,
    "plan": part_plan,
    "summary": part_summary,
}


def _status(part: str, body: dict[str, Any]) -> int:
    """Non-zero when the part did not produce its figures (a failed case, test or command)."""
    if "error" in body or any("error" in r for r in body.get("results", [])):
        return 1
    if part == "cuda-tests":
        return 0 if body["junit_found"] and body["pytest_rc"] == 0 else 1
    if part == "plan" and body.get("available") and body.get("rc") != 0:
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("part", choices=sorted(PARTS))
    ap.add_argument("--dir", type=Path, required=True, help="folder of the JSON files")
    ap.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", default=None, help="train: steps per round; summary: steps file")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--budget", type=float, default=120.0, help="calibrate / plan: seconds")
    ap.add_argument("--junit", default="", help="cuda-tests: pytest's JUnit XML")
    ap.add_argument("--rc", type=int, default=0, help="cuda-tests: pytest's exit status")
    args = ap.parse_args(argv)
    if args.part == "train" and args.steps is not None:
        args.steps = int(args.steps)
    t0 = time.perf_counter()
    try:
        body = PARTS[args.part](args)
    except Exception as err:  # the JSON says what failed; the step's status is non-zero
        body = {"error": f"{type(err).__name__}: {err}"}
    payload = (
        _header(args.part, args.dry_run) | {"seconds": round(time.perf_counter() - t0, 1)} | body
    )
    args.dir.mkdir(parents=True, exist_ok=True)
    (args.dir / FILES[args.part]).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    if args.part == "summary":
        print_summary(payload)
    return _status(args.part, body)


if __name__ == "__main__":
    sys.exit(main())
