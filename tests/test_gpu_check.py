"""benchmarks/gpu_check.sh cannot rot between GPU runs: its CPU dry run runs every step at toy
size and writes every file, with the keys the GPU run fills; the goals are read right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
FILES = {
    "env": "gpu_env.json",
    "cuda-tests": "gpu_cuda_tests.json",
    "extract": "gpu_extract.json",
    "train": "gpu_train.json",
    "calibrate": "gpu_calibration.json",
    "plan": "gpu_plan.json",
    "summary": "gpu_summary.json",
}
STEPS = ["setup", "env", "cuda-tests", "extract", "train", "calibrate", "plan"]
RECORD_KEYS = {
    "backbone",
    "strategy",
    "kind",
    "applicable",
    "reason",
    "train_s_per_image",
    "extract_s_per_image",
    "peak_memory_mb",
    "device",
    "dtype",
    "batch_size",
    "input_size",
    "steps",
    "warmup",
    "key",
    "measured_at",
}


def _gpu_check_module() -> Any:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check

        return gpu_check
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def _check_figures(d: dict[str, dict[str, Any]]) -> None:
    env = d["env"]
    assert {"torch", "cuda", "cudnn", "device_properties", "nvidia_smi", "versions"} <= env.keys()
    tests = d["cuda-tests"]
    assert tests["junit_found"] and tests["pytest_rc"] == 0
    assert tests["counts"]["skipped"] == len(tests["tests"]) >= 10  # collected, then skipped
    assert all("no CUDA device" in t["message"] for t in tests["tests"])
    extract = d["extract"]["results"]
    assert [r["backbone"] for r in extract] == ["tiny-resnet", "tiny-dinov2", "tiny-clip"]
    for r in extract:
        assert r["ratio"] > 0 and len(r["bare_img_s"]) == len(r["extract_img_s"]) + 1
        assert r["peak_memory_mb"].keys() == {"bare", "extract"}
    train = d["train"]["results"]
    assert len(train) == 2
    for r in train:
        assert r["ratio_median"] > 0 and {"trainer_step_s", "minimal_step_s"} <= r.keys()
        assert "peak_memory_mb" in r
    cal = d["calibrate"]
    assert cal["missing"] == [] and len(cal["records"]) == 2 * len(cal["strategies"])
    for rec in cal["records"]:
        assert rec.keys() == RECORD_KEYS
        assert (rec["train_s_per_image"] is None) == (rec["strategy"] == "lp")
    plan = d["plan"]
    assert plan["reference_a40_hours"] == 3200 and "projected_device_hours" in plan
    if not plan["available"]:
        assert plan["note"].startswith("not available")


@pytest.mark.slow
def test_cpu_dry_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = os.environ | {"PY": sys.executable, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-dry-run", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*FILES.values(), "gpu_check.log"])
    assert len(names) <= 8  # the device tool brings back at most 8 files
    d = {part: json.loads((out / name).read_text()) for part, name in FILES.items()}
    assert {v["mode"] for v in d.values()} == {"cpu-dry-run"}
    _check_figures(d)
    summary = d["summary"]
    assert [s["step"] for s in summary["steps"]] == STEPS and summary["all_steps_ok"]
    goals = summary["goals"]
    assert len(goals["extract_over_bare"]) == 3 and len(goals["trainer_over_minimal"]) == 2
    assert "gpu_check summary" in (out / "gpu_check.log").read_text()


def test_summary_reads_the_goals(tmp_path: Path) -> None:
    gpu_check = _gpu_check_module()
    assert gpu_check.FILES == FILES

    def write(part: str, body: dict[str, Any]) -> None:
        (tmp_path / FILES[part]).write_text(json.dumps(body))

    write(
        "extract", {"results": [{"backbone": "a", "ratio": 0.96}, {"backbone": "b", "ratio": 0.9}]}
    )
    write("train", {"results": [{"case": "c", "ratio_median": 1.04}, {"case": "d", "error": "x"}]})
    write("plan", {"projected_device_hours": 120.0})
    steps = tmp_path / "steps.tsv"
    steps.write_text("setup 0 3\nextract 124 100\n")
    args = gpu_check.argparse.Namespace(dir=str(tmp_path), steps=str(steps))
    s = gpu_check.part_summary(args)
    assert s["goals"]["extract_over_bare"] == {
        "a": {"value": 0.96, "pass": True},
        "b": {"value": 0.9, "pass": False},
    }
    assert s["goals"]["trainer_over_minimal"] == {
        "c": {"value": 1.04, "pass": True},
        "d": {"value": None, "pass": None},  # a failed case passes nothing
    }
    assert s["goals"]["grid_gpu_hours"]["value"] == 120.0
    assert s["goals"]["grid_gpu_hours"]["pass"] is False
    assert s["steps"][1] == {"step": "extract", "rc": 124, "seconds": 100}
    assert not s["all_steps_ok"]
    assert s["cuda_tests"] is None and s["device"] == "unknown"  # their files are missing


def test_plan_hours_are_read_from_the_planner_json() -> None:
    hours = _gpu_check_module()._hours
    assert hours({"projected_device_hours": 42.5}) == 42.5
    assert hours({"total": {"gpu_hours": 7}}) == 7.0
    assert hours({"cells": [], "total": {"cells": 3}}) is None
    assert hours(None) is None


def test_unknown_argument_is_refused() -> None:
    proc = subprocess.run(["bash", str(SCRIPT), "--no-such"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown argument" in proc.stderr
