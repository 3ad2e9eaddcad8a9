"""Sweeps: plan, run locally (workers, kills, failures, two at once) and on a real SLURM cluster,
against the same runs made by `progbench train`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from progbench.cli import main
from progbench.runs import iter_runs, read_run
from progbench.sweep.spec import load_sweep
from progbench.sweep.status import sweep_status
from tests.helpers.sweeps import FAST_TRAIN, write_sweep
from tests.helpers.twins import STUDY_BACKBONES

PROGBENCH = [sys.executable, "-c", "from progbench.cli import main; main()"]


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def done_files(runs: Path) -> dict[str, tuple[int, bytes]]:
    """Every DONE file under `runs`: its mtime and content (a DONE is never rewritten)."""
    return {
        str(p.relative_to(runs)): (p.stat().st_mtime_ns, p.read_bytes()) for p in runs.rglob("DONE")
    }


# ------------------------------------------------------------------------------------ the file


def test_plan_counts_cells_runs_and_not_applicable(tmp_path: Path, capsys) -> None:
    path = write_sweep(tmp_path, strategies=["lp", "bitfit", "vera-r4"])
    code, out, _ = cli(["sweep", "plan", str(path), "--json"], capsys)
    assert code == 0
    plan = json.loads(out)
    cells = {(c["backbone"], c["strategy"], c["regime"]): c for c in plan["cells"]}
    # 2 backbones x 3 strategies, plus LP's few-shot regime; VeRA does not apply to the CNN.
    assert len(cells) == 8
    assert cells[("tiny-resnet", "vera-r4", "full")]["state"] == "n/a"
    assert "Linear" in cells[("tiny-resnet", "vera-r4", "full")]["reason"]
    assert cells[("tiny-dinov2", "lp", "fewshot")]["runs_total"] == 2 * 1 * 2  # folds x k x repeats
    totals = plan["totals"]
    assert totals["cells"] == 7 and totals["cells_not_applicable"] == 1
    assert totals["runs_pending"] == totals["runs"] == 2 * (2 + 4 + 2 + 2) - 2
    assert [s["name"] for s in plan["stages"]] == [
        "image stores", "feature stores", "lp cells", "streamed cells",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ({"backbones": ["resnet-9000"]}, "backbones", "unknown backbone"),
        ({"strategies": ["lp", "lora-r99"]}, "strategies", "unknown strategy"),
        ({"scheme": "random"}, "scheme", "unknown scheme"),
        ({"fewshot": {"shots": [0]}}, "fewshot.shots", "positive"),
        (
            {"fewshot": {"shots": [2], "strategies": ["fft"]}},
            "fewshot.strategies",
            "not strategies",
        ),
        ({"train": {"epochz": 3}}, "train", "unknown setting"),
        ({"strategy_train": {"lora-r16": {"epochs": 1}}}, "strategy_train", "neither a strategy"),
        ({"weights": {"resnet50": "x"}}, "weights", "not backbones"),
        ({"tasks": ["nowhere/task.yaml"]}, "tasks", "does not exist"),
        ({"folds": 1}, "folds", "greater than or equal to 2"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
        (  # a ViT takes one input side: refused at plan time, not when its cell runs
            {"strategy_train": {"peft": {"input_size": 24}}},
            "tiny-dinov2/bitfit",
            "takes only",
        ),
    ],
)
def test_bad_sweep_files_are_refused_by_name(
    tmp_path: Path, override: dict, key: str, words: str, capsys
) -> None:
    path = write_sweep(tmp_path, **override)
    code, _, err = cli(["sweep", "plan", str(path)], capsys)
    assert code != 0
    assert str(path) in err and key in err and words in err, err
    assert "Traceback" not in err


@pytest.mark.slow
def test_the_reference_grid_is_planned_without_its_data(capsys) -> None:
    code, out, _ = cli(["sweep", "plan", "ruffini2025", "--json"], capsys)
    assert code == 0
    plan = json.loads(out)
    assert {c["task"] for c in plan["cells"]} == {"afc", "afc-m", "car", "cc", "ny-small", "ny-all"}
    assert {c["state"] for c in plan["cells"]} <= {"not prepared", "n/a"}
    assert plan["totals"]["study_gpu_hours"] == 3200 and plan["totals"]["device_hours"] > 0
    code, _, err = cli(["sweep", "run", "ruffini2025"], capsys)
    assert code != 0 and "not prepared" in err and "progbench prepare aiforcovid" in err


def test_the_reference_sweep_plans_the_study_backbones_whatever_the_registry_adds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from progbench.models.registry import CONFIGS_DIR, MODELS_DIR_ENV, list_backbones

    extra = yaml.safe_load((CONFIGS_DIR / "models" / "resnet18.yaml").read_text())
    extra |= {"name": "my-resnet", "description": "a user backbone", "order": 0}
    (tmp_path / "my-resnet.yaml").write_text(yaml.safe_dump(extra))
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    assert list_backbones()[0] == "my-resnet"  # `backbones: [all]` would have planned it
    assert load_sweep("ruffini2025").backbones == STUDY_BACKBONES
    code, out, _ = cli(["sweep", "plan", "ruffini2025", "--json"], capsys)
    assert code == 0
    cells = json.loads(out)["cells"]
    assert list(dict.fromkeys(c["backbone"] for c in cells)) == STUDY_BACKBONES


# ---------------------------------------------------------------------------- local executor


def _train_like_the_sweep(root: Path, runs: Path, capsys) -> None:
    """The same runs as the mini sweep, with one `progbench train` call per cell."""
    task = str(root / "cohort" / "tasks" / "severity.yaml")
    common = ["--weights", "random", "--scheme", "kfold", "--folds", "2", "--runs", str(runs)]
    common += ["--cache-dir", str(root / "cache"), "--image-size", "32", "--device", "cpu"]
    ft = ["--epochs", "2", "--eval-every", "1", "--batch-size", "8", "--lr-head", "0.01"]
    ft += ["--lr-backbone", "0.001", "--no-augment"]
    for backbone in ("tiny-resnet", "tiny-dinov2"):
        lp = ["train", task, "--backbone", backbone, "--strategy", "lp", *common]
        assert cli([*lp, "--shots", "2", "--repeats", "2"], capsys)[0] == 0
        for strategy in ("bitfit", "lora-r4"):
            args = ["train", task, "--backbone", backbone, "--strategy", strategy, *common, *ft]
            assert cli(args, capsys)[0] == 0


@pytest.mark.slow
def test_a_sweep_on_two_workers_equals_the_same_train_calls(tmp_path: Path, capsys) -> None:
    path = write_sweep(tmp_path)
    code, out, err = cli(["sweep", "run", str(path), "--workers", "2"], capsys)
    assert code == 0, err
    assert "report:" in out and (tmp_path / "runs" / "report" / "report.html").is_file()
    sweep_runs = {str(p.relative_to(tmp_path / "runs")) for p in iter_runs(tmp_path / "runs").done}
    _train_like_the_sweep(tmp_path, tmp_path / "train-runs", capsys)
    train_runs = {
        str(p.relative_to(tmp_path / "train-runs")) for p in iter_runs(tmp_path / "train-runs").done
    }
    assert sweep_runs == train_runs and len(sweep_runs) == 2 * (2 + 4 + 2 + 2)
    for rel in sorted(sweep_runs):
        a, b = read_run(tmp_path / "runs" / rel), read_run(tmp_path / "train-runs" / rel)
        assert a.spec.settings == b.spec.settings, rel  # same identity: same splits, options
        pd.testing.assert_frame_equal(
            a.predictions.drop(columns="p_pos"), b.predictions.drop(columns="p_pos")
        )
        np.testing.assert_allclose(a.predictions["p_pos"], b.predictions["p_pos"], atol=1e-5)
    status = {c.plan.cell.id: c.state for c in sweep_status(load_sweep(path))}
    assert set(status.values()) == {"done"}


@pytest.mark.slow
def test_kill_9_then_rerun_finishes_without_redoing_a_run(tmp_path: Path) -> None:
    path = write_sweep(tmp_path)
    runs = tmp_path / "runs"
    seen: dict[str, tuple[int, bytes]] = {}
    for wait_for in (3, 12):  # kill once early and once in the middle of the sweep
        proc = subprocess.Popen([*PROGBENCH, "sweep", "run", str(path)], start_new_session=True)
        while len(list(runs.rglob("DONE"))) < wait_for and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        now = done_files(runs)
        assert all(now[k] == v for k, v in seen.items())  # finished runs untouched
        seen = now
    subprocess.run([*PROGBENCH, "sweep", "run", str(path)], check=True, capture_output=True)
    final = done_files(runs)
    assert all(final[k] == v for k, v in seen.items())
    scan = iter_runs(runs)
    assert len(scan.done) == 20 and not scan.incomplete
    for d in scan.done:
        read_run(d)  # every digest checks out: nothing half-written


@pytest.mark.slow
def test_a_failing_cell_does_not_stop_the_others_and_a_rerun_does_only_it(
    tmp_path: Path, capsys
) -> None:
    path = write_sweep(tmp_path, weights={"tiny-resnet": "random", "tiny-dinov2": "no/such/ckpt"})
    code, _, err = cli(["sweep", "run", str(path)], capsys)
    assert code != 0 and "failed" in err
    cells = {c.plan.cell.id: c for c in sweep_status(load_sweep(path))}
    failed = {k for k, c in cells.items() if c.state == "failed"}
    assert failed == {k for k in cells if "tiny-dinov2" in k}
    assert all("no/such/ckpt" in cells[k].error for k in failed)
    assert all(Path(cells[k].log).is_file() for k in failed)
    assert {c.state for k, c in cells.items() if k not in failed} == {"done"}
    code, out, _ = cli(["sweep", "status", str(path), "--json"], capsys)
    listed = json.loads(out)
    assert listed["totals"]["failed"] == len(failed)
    assert {c["state"] for c in listed["cells"]} == {"done", "failed"}
    before = done_files(tmp_path / "runs")
    write_sweep(tmp_path, weights="random")  # the fix
    code, out, err = cli(["sweep", "run", str(path)], capsys)
    assert code == 0, err
    assert all("tiny-dinov2" in line for line in out.splitlines() if line.startswith("done "))
    after = done_files(tmp_path / "runs")
    assert all(after[k] == v for k, v in before.items()) and len(after) == 20
    text = " ".join(out.split())
    n_ok = len(cells) - len(failed)
    assert f"{len(failed)} cell(s) done, 0 unit(s) failed" in text
    assert f"{n_ok} cell(s) already done before ({len(before)} runs reused)" in text
    assert "warning: random weights: tiny-dinov2, tiny-resnet ran with --weights random" in text
    # A finished sweep run again says so, instead of "0 cell(s) done".
    code, out, err = cli(["sweep", "run", str(path)], capsys)
    assert code == 0, err
    text = " ".join(out.split())
    assert f"all {len(cells)} cell(s) were already done (20 runs reused); nothing to run" in text
    assert "0 cell(s) done" not in text


@pytest.mark.slow
def test_two_sweep_runs_at_once_do_each_run_exactly_once(tmp_path: Path) -> None:
    path = write_sweep(tmp_path)
    procs = [
        subprocess.Popen(
            [*PROGBENCH, "sweep", "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    written = sum(
        int(line.split(":")[1].split("run(s) written")[0])
        for out, _ in outs
        for line in out.splitlines()
        if line.startswith("done ")
    )
    assert written == 20  # every run computed by exactly one of the two
    assert len(iter_runs(tmp_path / "runs").done) == 20


@pytest.mark.slow
def test_local_gpus_give_each_worker_its_device(tmp_path: Path, capsys) -> None:
    """With --gpus, one worker per listed GPU, CUDA_VISIBLE_DEVICES set before torch starts (on
    a CPU-only machine the runs still train on the CPU: the variable only names the device)."""
    path = write_sweep(tmp_path, backbones=["tiny-resnet"], strategies=["lp"], fewshot=None)
    code, _, err = cli(["sweep", "run", str(path), "--gpus", "0,1"], capsys)
    assert code == 0, err
    states = [json.loads(p.read_text()) for p in (tmp_path / "runs/.sweep/mini/cells").glob("*")]
    assert len({s["pid"] for s in states}) >= 1 and all(s["state"] == "done" for s in states)


# ----------------------------------------------------------------------------- SLURM executor


def _signal_like_a_time_limit(runs: Path, job_suffix: str, timeout_s: float = 240) -> None:
    """Once the bitfit run has saved an evaluation, send its running job the signal SLURM sends
    before a time limit (`--signal=USR2@delay`): what happens next is the time-limit path,
    whatever this machine's speed (tests/test_slurm.py also lets a real limit expire)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logs = [p for p in runs.rglob("train_log.jsonl") if "bitfit" in str(p)]
        if logs and logs[0].read_text().strip():
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the bitfit run never saved an evaluation")
    # This sweep's own job of that family (jobs.json), not another's left on the cluster.
    arrays = json.loads((runs / ".sweep" / "mini" / "slurm" / "jobs.json").read_text())["arrays"]
    mine = {j["job_id"] for a in arrays if a["name"].endswith(job_suffix) for j in a["jobs"]}
    out = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True, check=True
    ).stdout
    ids = [i for i in out.split() if i in mine]
    subprocess.run(["scancel", "--signal=USR2", ids[0]], check=True)


@pytest.mark.slow
@pytest.mark.xdist_group("slurm")
def test_the_same_sweep_on_slurm_with_a_requeued_job(cluster: str, tmp_path: Path, capsys) -> None:
    # Long enough to be signalled after its first evaluation; it is requeued and resumes from it.
    slow = dict(FAST_TRAIN, epochs=60, patience=60, eval_every=5)
    path = write_sweep(
        tmp_path,
        backbones=["tiny-resnet"],
        strategies=["lp", "bitfit"],
        strategy_train={"peft": slow},
        limits={"peft": {"folds": 1}},
        resources={  # the one-node test cluster has no GPU
            "images": {"cpus": 1, "mem_gb": 2},
            "extract": {"gpus": 0, "cpus": 1, "mem_gb": 2},
            "lp": {"cpus": 1, "mem_gb": 2},
            "peft": {"gpus": 0, "cpus": 1, "mem_gb": 2, "time_min": 30},
        },
        slurm={"max_requeues": 10, "signal_delay_s": 30},
    )
    code, out, err = cli(["sweep", "run", str(path), "--executor", "slurm", "--no-wait"], capsys)
    assert code == 0, err
    assert "submitted" in out
    _signal_like_a_time_limit(tmp_path / "runs", "-peft")
    code, out, err = cli(["sweep", "wait", str(path), "--poll", "2"], capsys)
    assert code == 0, err
    runs = tmp_path / "runs"
    scan = iter_runs(runs)
    assert len(scan.done) == 2 + 4 + 1 and not scan.incomplete
    (bitfit,) = [d for d in scan.done if "bitfit" in str(d)]
    log = [json.loads(line) for line in (bitfit / "train_log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "resume" for r in log)  # it hit its time limit and resumed
    assert (runs / "report" / "report.html").is_file()
    status = yaml.safe_load(cli(["sweep", "status", str(path), "--json"], capsys)[1])
    assert {c["state"] for c in status["cells"]} == {"done"}
