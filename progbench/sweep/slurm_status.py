"""Reading a sweep's SLURM jobs back: the job file, job states, results, waiting, cancelling.

Everything here starts from `<folder>/jobs.json` (written by `progbench.sweep.slurm`), so any
process can follow jobs that another one submitted (`sweep status`, `sweep wait`). States come
from `squeue` (the controller's view, which needs no accounting), from the result file submitit
writes when the function returns or raises, and, for jobs already purged from the controller,
from `sacct` through submitit when accounting is enabled. Import these from
`progbench.sweep.slurm`, which re-exports them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Literal

import submitit
from submitit.core.utils import JobPaths, pickle_load

from progbench.errors import ProgbenchError

JOBS_FILE = "jobs.json"
START_HINT = "start the local one-node cluster with `sudo scripts/slurm-local.sh up`"
SLURM_TIMEOUT_S = 30

State = Literal["pending", "running", "done", "failed"]
_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "PREEMPTED"}
_RUNNING = {"RUNNING", "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
_RUNNING |= {"SUSPENDED", "STOPPED"}
# Pending reasons SLURM gives a job that can never start as submitted (asks for more than its
# partition or account allows): waiting for it would wait for ever.
NEVER_STARTS = {
    "PartitionConfig": "it asks for more CPUs, memory or GPUs than its partition has",
    "PartitionNodeLimit": "it asks for more nodes than its partition allows",
    "PartitionTimeLimit": "its time limit is over its partition's MaxTime",
    "BadConstraints": "its constraints match no node",
    "InvalidAccount": "its account is not valid",
    "InvalidQOS": "its QOS is not valid",
}


class SlurmError(ProgbenchError):
    """sbatch/squeue failed, no cluster is reachable, or a sweep's job file is unreadable."""


# ------------------------------------------------------------------------------------ job file


@dataclass(frozen=True)
class JobRecord:
    """One submitted job as saved in jobs.json: its id, the array's name, the caller's key."""

    job_id: str
    name: str
    key: str | None = None


def read_jobs(folder: str | os.PathLike[str]) -> list[JobRecord]:
    """The jobs recorded in `<folder>/jobs.json`, in submission order ([] when none yet)."""
    path = Path(folder) / JOBS_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        return [
            JobRecord(job["job_id"], array["name"], job.get("key"))
            for array in data["arrays"]
            for job in array["jobs"]
        ]
    except (ValueError, KeyError, TypeError) as err:
        raise SlurmError(f"{path}: not a progbench job file ({err})") from err


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands; for a failed job, the line that says why and the log to read."""

    job_id: str
    state: State
    slurm_state: str  # as SLURM or the result file says, e.g. RUNNING, COMPLETED, FAILED
    key: str | None = None
    error: str | None = None
    log: Path | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=SLURM_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmError(f"`{' '.join(cmd)}` failed: {err}", hint=START_HINT) from err


def _squeue_states(job_ids: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({job_id: SLURM state}, {job_id: pending reason}) for the jobs the controller still knows
    (finished ones for MinJobAge)."""
    bases = sorted({j.split("_")[0] for j in job_ids})
    if not bases:
        return {}, {}
    proc = _run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(bases)])
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:  # none of them is known any more
            return {}, {}
        raise SlurmError(f"squeue failed: {proc.stderr.strip()}", hint=START_HINT)
    states, reasons = {}, {}
    for line in proc.stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        states[job_id] = state.split()[0] if state else "UNKNOWN"
        reasons[job_id] = reason.strip()
    return states, reasons


@lru_cache(maxsize=1)
def _accounting_enabled() -> bool:
    proc = _run(["scontrol", "show", "config"])
    match = re.search(r"^AccountingStorageType\s*=\s*(\S+)", proc.stdout, re.MULTILINE)
    return match is not None and match.group(1) != "accounting_storage/none"


def _sacct_states(folder: Path, job_ids: Sequence[str]) -> dict[str, str]:
    """States of jobs purged from the controller, from sacct through submitit (needs accounting)."""
    if not job_ids or not _accounting_enabled():
        return {}
    jobs: list[submitit.SlurmJob[Any]] = [submitit.SlurmJob(folder, j) for j in job_ids]
    submitit.SlurmJob.watcher.update()  # one sacct call for all of them
    states = {j.job_id: j.watcher.get_state(j.job_id, mode="cache").split()[0] for j in jobs}
    return {j: s for j, s in states.items() if s != "UNKNOWN"}


# (pattern, take its first match?) in order of preference: slurmstepd's reason (CANCELLED,
# DUE TO TIME LIMIT, OUT OF MEMORY...), the outermost exception, srun's own error.
_ERROR_LINES = (
    (re.compile(r"^slurmstepd(-\S+)?: error:"), True),
    (re.compile(r"^[\w.]+(Error|Exception|Exit)\b"), False),
    (re.compile(r"^srun: error:"), True),
)


def _error_line(text: str) -> str | None:
    """The line of a traceback or log that says what went wrong (else its last line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for pattern, first in _ERROR_LINES:
        found = [line for line in lines if pattern.match(line)]
        if found:
            return found[0] if first else found[-1]
    return lines[-1] if lines else None


def _outcome(paths: JobPaths) -> tuple[str, Any] | None:
    """("success", value) or ("error", traceback) from the job's result file, None if none yet."""
    if not paths.result_pickle.exists():
        return None
    try:
        outcome, value = pickle_load(paths.result_pickle)
    except (EOFError, OSError) as err:
        raise SlurmError(f"{paths.result_pickle}: unreadable result file ({err})") from err
    return str(outcome), value


def _status(
    record: JobRecord,
    paths: JobPaths,
    slurm_state: str | None,
    outcome: tuple[str, Any] | None,
    reason: str = "",
) -> JobStatus:
    base = partial(JobStatus, job_id=record.job_id, key=record.key)
    if outcome is not None and outcome[0] == "success":
        return base(state="done", slurm_state=slurm_state or "COMPLETED")
    if outcome is None and slurm_state == "PENDING" and reason in NEVER_STARTS:
        why = (
            f"SLURM will never start it ({reason}): {NEVER_STARTS[reason]}; lower the sweep"
            "'s `resources` (or use --slurm-partition, --slurm-time)"
        )
        return base(state="failed", slurm_state=slurm_state, error=why)
    if outcome is None and slurm_state in _PENDING:
        return base(state="pending", slurm_state=slurm_state)
    if outcome is None and slurm_state in _RUNNING:
        return base(state="running", slurm_state=slurm_state)
    if outcome is not None:  # the function raised; submitit saved the traceback
        error = _error_line(str(outcome[1]))
    else:  # ended without a result: killed, cancelled, out of memory, never started...
        log = paths.stderr.read_text(errors="replace") if paths.stderr.exists() else ""
        error = _error_line(log) or (
            f"no result and SLURM state {slurm_state}"
            if slurm_state
            else "no result, and SLURM no longer knows the job (cancelled or killed?)"
        )
    return base(state="failed", slurm_state=slurm_state or "FAILED", error=error, log=paths.stderr)


def job_states(folder: str | os.PathLike[str]) -> dict[str, JobStatus]:
    """{job_id: JobStatus} for every job recorded in `<folder>/jobs.json`."""
    folder = Path(folder).absolute()
    records = read_jobs(folder)
    # SLURM first, result files second: a job writes its result before it ends.
    slurm, reasons = _squeue_states([r.job_id for r in records])
    paths = {r.job_id: JobPaths(folder, job_id=r.job_id) for r in records}
    outcomes = {r.job_id: _outcome(paths[r.job_id]) for r in records}
    lost = [j for j, o in outcomes.items() if o is None and j not in slurm]
    slurm |= _sacct_states(folder, lost)
    return {
        r.job_id: _status(
            r, paths[r.job_id], slurm.get(r.job_id), outcomes[r.job_id], reasons.get(r.job_id, "")
        )
        for r in records
    }


class SlurmWaitTimeout(SlurmError):
    """`wait` ran out of time; `states` holds the last view."""

    def __init__(self, message: str, states: dict[str, JobStatus]) -> None:
        super().__init__(message, hint="wait again later: `progbench sweep wait`")
        self.states = states


def wait(
    folder: str | os.PathLike[str],
    timeout_s: float | None = None,
    poll_s: float = 5.0,
    on_poll: Callable[[dict[str, JobStatus]], None] | None = None,
) -> dict[str, JobStatus]:
    """Poll `job_states(folder)` until every job is done or failed; return the final states."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        states = job_states(folder)
        if on_poll is not None:
            on_poll(states)
        if all(s.finished for s in states.values()):
            stuck = [s.job_id for s in states.values() if s.slurm_state == "PENDING"]
            if stuck:  # failed as never startable: leave nothing in the queue
                _run(["scancel", *stuck])
            return states
        if deadline is not None and time.monotonic() >= deadline:
            left = sum(not s.finished for s in states.values())
            raise SlurmWaitTimeout(f"{left} job(s) in {folder} still unfinished", states)
        time.sleep(poll_s)


def job_result(folder: str | os.PathLike[str], job_id: str) -> Any:
    """The value a finished job returned (raises SlurmError when it failed or is unfinished)."""
    paths = JobPaths(Path(folder).absolute(), job_id=job_id)
    outcome = _outcome(paths)
    if outcome is None:
        raise SlurmError(f"job {job_id} in {folder} has no result yet")
    if outcome[0] != "success":
        error = _error_line(str(outcome[1]))
        raise SlurmError(f"job {job_id} failed: {error}", hint=f"see {paths.stderr}")
    return outcome[1]


def cancel(folder: str | os.PathLike[str]) -> list[str]:
    """scancel every unfinished job recorded in `folder`; return their ids."""
    ids = [j for j, s in job_states(folder).items() if not s.finished]
    if ids:
        proc = _run(["scancel", *ids])
        if proc.returncode != 0:
            raise SlurmError(f"scancel failed: {proc.stderr.strip()}")
    return ids


def slurm_available() -> tuple[bool, str]:
    """(True, description) when sinfo answers and a node can run jobs, else (False, why + how)."""
    for tool in ("sinfo", "sbatch", "srun", "squeue"):
        if shutil.which(tool) is None:
            return False, f"no SLURM: `{tool}` not found; {START_HINT}"
    try:
        proc = _run(["sinfo", "-h", "-o", "%n %T"])
    except SlurmError as err:
        return False, f"no SLURM: {err.message}; {START_HINT}"
    if proc.returncode != 0:
        return False, f"no SLURM: sinfo failed ({proc.stderr.strip()}); {START_HINT}"
    nodes = [line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2]
    usable = [
        name for name, state in nodes if state in ("idle", "mixed", "allocated", "completing")
    ]
    if not usable:
        return False, f"no usable SLURM node ({proc.stdout.strip() or 'none'}); {START_HINT}"
    return True, f"SLURM nodes up: {', '.join(usable)}"
