"""The SLURM layer against a real one-node cluster (`sudo scripts/slurm-local.sh up`).

Without a cluster these tests skip with that hint, unless PROGBENCH_REQUIRE_SLURM=1 (CI), where
a missing cluster fails them. The requeue job is submitted first (module fixture) so that its
minute-long first attempt overlaps the other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from progbench.atomic import atomic_write_json
from progbench.errors import ConfigError
from progbench.sweep.slurm import (
    JOBS_FILE,
    RequeueLimitError,
    RequeueOnTimeout,
    SlurmError,
    SlurmResources,
    cancel,
    job_result,
    job_states,
    read_jobs,
    submit_array,
    wait,
)
from progbench.sweep.slurm_status import _error_line

# Jobs unpickle these functions by value, so they need not import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TINY = SlurmResources(time_min=2, cpus=1, mem_gb=0.25, array_parallelism=3, max_requeues=0)
# The shortest SLURM limit is 1 minute; SLURM signals 20-50 s before it (its 30 s tick).
REQUEUE = SlurmResources(time_min=1, cpus=1, mem_gb=0.25, signal_delay_s=20, max_requeues=2)
SLOW_STEPS = 120  # at 1 s a step the first attempt cannot finish inside the 1-minute limit


# -------------------------------------------------------------------------------- job functions


def square_or_fail(x: int) -> int:
    if x < 0:
        raise ValueError(f"item {x} is negative")
    return x * x


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def count_steps(spec: dict[str, Any]) -> dict[str, Any]:
    """Do `total` steps, saving each to `path`; a later call resumes after the last saved step.

    The first attempt takes 1 s a step (so the time limit interrupts it), resumed ones 10 ms.
    """
    path = Path(spec["path"])
    state = json.loads(path.read_text()) if path.exists() else {"steps": [], "attempts": []}
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    state["attempts"].append({"start_step": len(state["steps"]), "slurm_restarts": restarts})
    atomic_write_json(path, state)
    step_s = 1.0 if len(state["attempts"]) == 1 else 0.01
    while len(state["steps"]) < spec["total"]:
        time.sleep(step_s)
        state["steps"].append(len(state["steps"]))
        atomic_write_json(path, state)  # atomic: a signal mid-write leaves the last good state
    return state


# ------------------------------------------------------------------------------------- fixtures


# One job queue: the SLURM tests run on one xdist worker, one after another (`make test`).
pytestmark = pytest.mark.xdist_group("slurm")


@pytest.fixture(scope="module")
def requeue_run(cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("slurm-requeue")
    specs = [
        {"path": str(folder / "slow.json"), "total": SLOW_STEPS},
        {"path": str(folder / "quick.json"), "total": 2},
    ]
    ids = submit_array(count_steps, specs, REQUEUE, folder, "requeue", keys=["slow", "quick"])
    yield folder, ids
    cancel(folder)


@pytest.fixture(autouse=True)
def _submit_requeue_first(request: pytest.FixtureRequest) -> None:
    """Start the slow requeue job before the other cluster tests, so that they overlap it."""
    if "cluster" in request.fixturenames:
        request.getfixturevalue("requeue_run")


@pytest.fixture
def folder(cluster: str, tmp_path: Path) -> Any:
    yield tmp_path / "jobs"
    if (tmp_path / "jobs" / JOBS_FILE).exists():
        cancel(tmp_path / "jobs")


# ------------------------------------------------------------------------- tests on the cluster


@pytest.mark.slow
def test_array_results_read_back_from_saved_ids_in_a_fresh_process(folder: Path) -> None:
    ids = submit_array(square_or_fail, [1, 2, 3], TINY, folder, "squares", keys=["a", "b", "c"])
    assert len(ids) == 3 and len({i.split("_")[0] for i in ids}) == 1  # one array
    assert [(r.job_id, r.key, r.name) for r in read_jobs(folder)] == [
        (i, k, "squares") for i, k in zip(ids, "abc", strict=True)
    ]
    reader = (
        "import json, sys\n"
        "from progbench.sweep.slurm import job_result, wait\n"
        "states = wait(sys.argv[1], timeout_s=120, poll_s=0.5)\n"
        "print(json.dumps({j: [s.state, s.key, job_result(sys.argv[1], j)]"
        " for j, s in states.items()}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", reader, str(folder)], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {i: ["done", k, x * x] for i, k, x in zip(ids, "abc", [1, 2, 3], strict=True)}


@pytest.mark.slow
def test_failing_item_reports_its_error_line_and_log_while_others_finish(folder: Path) -> None:
    ids = submit_array(square_or_fail, [5, -1, 6], TINY, folder, "mixed")
    states = wait(folder, timeout_s=120, poll_s=0.5)
    assert [states[i].state for i in ids] == ["done", "failed", "done"]
    failed = states[ids[1]]
    assert failed.error == "ValueError: item -1 is negative"
    assert failed.log is not None and "item -1 is negative" in failed.log.read_text()
    assert [job_result(folder, i) for i in (ids[0], ids[2])] == [25, 36]
    with pytest.raises(SlurmError, match="item -1 is negative"):
        job_result(folder, ids[1])


def test_a_job_that_can_never_start_fails_with_the_reason_and_leaves_the_queue(
    folder: Path,
) -> None:
    """More CPUs than the node has: SLURM keeps it PENDING (PartitionConfig) for ever; wait must
    not. It fails, naming the reason and the fix, and is cancelled."""
    greedy = SlurmResources(time_min=2, cpus=(os.cpu_count() or 1) * 64, mem_gb=0.25)
    (job_id,) = submit_array(square_or_fail, [1], greedy, folder, "greedy")
    status = wait(folder, timeout_s=60, poll_s=0.5)[job_id]
    assert status.state == "failed" and status.error is not None
    assert "PartitionConfig" in status.error and "resources" in status.error
    queue = subprocess.run(["squeue", "-h", "-j", job_id.split("_")[0]], capture_output=True)
    assert job_id.split("_")[0] not in queue.stdout.decode()


@pytest.mark.slow
def test_cancelled_job_is_failed_with_slurms_reason(folder: Path) -> None:
    (job_id,) = submit_array(sleep_for, [300], TINY, folder, "cancelled")
    _wait_for_file(folder / f"{job_id}_0_log.out", "Starting with")  # submitit's first line
    assert job_states(folder)[job_id].state == "running"
    assert cancel(folder) == [job_id]
    status = wait(folder, timeout_s=60, poll_s=0.5)[job_id]
    assert status.state == "failed" and status.slurm_state == "CANCELLED"
    assert status.error is not None and "CANCELLED" in status.error
    assert status.log is not None and status.error in status.log.read_text()


@pytest.mark.slow
def test_job_at_its_time_limit_is_requeued_and_resumes(requeue_run: Any) -> None:
    folder, (slow_id, quick_id) = requeue_run
    states = wait(folder, timeout_s=240, poll_s=1)
    assert {j: s.state for j, s in states.items()} == {slow_id: "done", quick_id: "done"}
    slow, quick = job_result(folder, slow_id), job_result(folder, quick_id)
    assert [a["start_step"] for a in quick["attempts"]] == [0]
    first, second = slow["attempts"]  # exactly one requeue
    assert 0 < second["start_step"] < SLOW_STEPS  # resumed where the first attempt stopped
    assert (first["slurm_restarts"], second["slurm_restarts"]) == (0, 1)  # SLURM requeued it
    assert slow["steps"] == list(range(SLOW_STEPS))  # every step done once, none redone
    log = (folder / f"{slow_id}_0_log.out").read_text()
    assert "Requeued job" in log


@pytest.mark.slow
def test_requeues_stop_at_max_requeues(folder: Path) -> None:
    spec = {"path": str(folder.parent / "state.json"), "total": SLOW_STEPS}
    no_requeue = SlurmResources(time_min=1, mem_gb=0.25, signal_delay_s=20, max_requeues=0)
    (job_id,) = submit_array(count_steps, [spec], no_requeue, folder, "bounded")
    _wait_for_file(Path(spec["path"]))  # the function runs, so submitit's handler is set
    # The signal SLURM sends before the time limit (or on preemption), sent now.
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    status = wait(folder, timeout_s=60, poll_s=0.5)[job_id]
    assert status.state == "failed"  # from its result file, maybe before SLURM says FAILED
    assert status.error is not None and status.error.startswith("progbench.sweep.slurm.Requeue")
    assert "after 0 requeue(s) (max_requeues=0)" in status.error
    assert len(json.loads(Path(spec["path"]).read_text())["attempts"]) == 1


def _wait_for_file(path: Path, text: str = "") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (path.exists() and text in path.read_text()):
        time.sleep(0.3)
    assert path.exists() and text in path.read_text(), f"{path} never got {text!r}"


# -------------------------------------------------------------------------- tests without SLURM


def test_resources_map_to_submitit_parameters() -> None:
    res = SlurmResources(
        partition="gpu",
        time_min=90,
        cpus=8,
        mem_gb=1.5,
        gpus=1,
        extra={"slurm_qos": "high", "--mail-type": "END", "reservation": "r1"},
    )
    params = res.executor_parameters("cells")
    assert params == {
        "job_name": "cells",
        "partition": "gpu",
        "time": 90,
        "cpus_per_task": 8,
        "mem": "1536MB",
        "gpus_per_node": 1,
        "signal_delay_s": 120,
        "array_parallelism": 16,
        "qos": "high",
        "mail_type": "END",
        "additional_parameters": {"reservation": "r1"},
    }
    assert SlurmResources(time_min=1).signal_s == 20  # limit minus SLURM's 30 s tick and 10 s
    assert hash(res) == hash(SlurmResources(**{**res.__dict__, "extra": dict(res.extra)}))


@pytest.mark.parametrize(
    "kwargs",
    [{"time_min": 0}, {"mem_gb": 0}, {"signal_delay_s": 30, "time_min": 1}, {"extra": {"time": 5}}],
)
def test_bad_resources_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SlurmResources(**kwargs)


def test_requeues_are_bounded() -> None:
    call = RequeueOnTimeout(square_or_fail, max_requeues=1)
    again = call.checkpoint(3)
    assert again.function is call and again.args == (3,) and call(3) == 9
    with pytest.raises(RequeueLimitError, match="after 1 requeue"):
        call.checkpoint(3)


def test_error_line_prefers_slurm_then_the_exception() -> None:
    trace = "Traceback (most recent call last):\n  File 'x'\n    raise KeyError(1)\nKeyError: 1\n"
    assert _error_line(trace) == "KeyError: 1"
    reason = "slurmstepd-vm: error: *** JOB 7 ON vm CANCELLED AT now ***"
    assert _error_line(f"srun: error: task 0: Killed\n{reason}\nValueError: x\n") == reason
    assert _error_line("srun: error: vm: task 0: Killed\nbye") == "srun: error: vm: task 0: Killed"
    assert _error_line("") is None
