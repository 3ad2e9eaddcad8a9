"""Submitting a sweep's cells to SLURM: resources, job arrays, and requeue on timeout.

`submit_array` sends one job array through submitit and appends its ids to
`<folder>/jobs.json`, where `job_states` and `wait` (progbench.sweep.slurm_status, re-exported
here) find them later from another process; submitit keeps each job's pickled call, result and
logs (`<job_id>_0_log.err`...) in the same folder. Calls are wrapped in `RequeueOnTimeout`:
SLURM sends USR2 `signal_delay_s` before the time limit (or on preemption), submitit's handler
checkpoints and requeues the job, and the requeued job calls the function again, which resumes
from its own on-disk state. The functions must be picklable module-level callables (submitit
pickles them with cloudpickle). See docs/SLURM.md.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import submitit
from filelock import FileLock
from submitit.core.utils import DelayedSubmission, FailedJobError

from progbench.atomic import atomic_write_json
from progbench.errors import ConfigError
from progbench.provenance import now_iso
from progbench.sweep.slurm_status import (
    JOBS_FILE,
    START_HINT,
    JobRecord,
    JobStatus,
    SlurmError,
    SlurmWaitTimeout,
    State,
    cancel,
    job_result,
    job_states,
    read_jobs,
    slurm_available,
    wait,
)

__all__ = [
    "JobRecord",
    "JobStatus",
    "RequeueLimitError",
    "RequeueOnTimeout",
    "SlurmError",
    "SlurmResources",
    "SlurmWaitTimeout",
    "State",
    "cancel",
    "job_result",
    "job_states",
    "read_jobs",
    "slurm_available",
    "submit_array",
    "wait",
]

# Slurm checks time limits every 30 s, so the warning signal can come up to 30 s early; keep
# 10 s more for python to start and install submitit's signal handler.
SIGNAL_SLACK_S = 40
# Options that SlurmResources sets itself; `extra` may not override them.
_OWNED = {"job_name", "partition", "time", "cpus_per_task", "mem", "gpus_per_node"}
_OWNED |= {"array_parallelism", "signal_delay_s", "additional_parameters"}


class RequeueLimitError(SlurmError):
    """A job reached its time limit (or was preempted) more often than allowed."""


# ----------------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class SlurmResources:
    """What one job of an array asks for. `extra` passes sbatch options through (see below)."""

    partition: str | None = None
    time_min: int = 60
    cpus: int = 1
    mem_gb: float = 4.0
    gpus: int = 0
    array_parallelism: int = 16
    signal_delay_s: int | None = None  # None: min(120, time_min * 60 - SIGNAL_SLACK_S)
    max_requeues: int = 3
    extra: Mapping[str, str | int | float | bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", dict(self.extra))  # a private copy, never shared
        in_range = {
            "time_min": self.time_min >= 1,
            "cpus": self.cpus >= 1,
            "mem_gb": self.mem_gb > 0,
            "gpus": self.gpus >= 0,
            "array_parallelism": self.array_parallelism >= 1,
            "max_requeues": self.max_requeues >= 0,
        }
        for name in (name for name, ok in in_range.items() if not ok):
            raise ConfigError(f"SLURM resources: {name}={getattr(self, name)!r} is out of range")
        limit = self.time_min * 60 - SIGNAL_SLACK_S
        if self.signal_delay_s is not None and not 0 < self.signal_delay_s <= limit:
            raise ConfigError(
                f"SLURM resources: signal_delay_s={self.signal_delay_s} with time_min={self.time_min}",
                hint=f"use 1..{limit} s: SLURM may signal up to 30 s early, and the job "
                "needs a few seconds to start",
            )
        for key in self.extra:
            if _option_name(key) in _OWNED:
                raise ConfigError(
                    f"--slurm-extra {key}: set by progbench itself",
                    hint="use the dedicated option (partition, time, cpus, mem, gpus...)",
                )

    def __hash__(self) -> int:  # `extra` is a dict; hash its items so resources can group cells
        fields = (self.partition, self.time_min, self.cpus, self.mem_gb, self.gpus)
        more = (self.array_parallelism, self.signal_delay_s, self.max_requeues)
        return hash((*fields, *more, tuple(sorted(self.extra.items()))))

    @property
    def signal_s(self) -> int:
        """Seconds before the time limit at which the job is asked to checkpoint."""
        if self.signal_delay_s is not None:
            return self.signal_delay_s
        return max(1, min(120, self.time_min * 60 - SIGNAL_SLACK_S))

    def executor_parameters(self, name: str) -> dict[str, Any]:
        """Keyword arguments for `submitit.SlurmExecutor.update_parameters`.

        An `extra` key that submitit knows (qos, account, constraint, exclude, gres, comment,
        nodelist, mem_per_cpu, exclusive, setup...) becomes that parameter; any other key becomes
        a raw `#SBATCH --key=value` line through `additional_parameters`.
        """
        params: dict[str, Any] = {
            "job_name": name,
            "time": self.time_min,
            "cpus_per_task": self.cpus,
            "mem": f"{max(1, round(self.mem_gb * 1024))}MB",
            "signal_delay_s": self.signal_s,
            "array_parallelism": self.array_parallelism,
        }
        if self.partition:
            params["partition"] = self.partition
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        known = submitit.SlurmExecutor._valid_parameters()
        extra = {_option_name(key): value for key, value in self.extra.items()}
        params |= {k: v for k, v in extra.items() if k in known}
        additional = {k: v for k, v in extra.items() if k not in known}
        if additional:
            params["additional_parameters"] = additional
        return params


def _option_name(key: str) -> str:
    """`--mail-type`, `mail-type`, `slurm_mail_type` (AutoExecutor's spelling) -> `mail_type`."""
    return key.strip().lstrip("-").replace("-", "_").removeprefix("slurm_")


# ------------------------------------------------------------------------------------- requeue


class RequeueOnTimeout(submitit.helpers.Checkpointable):
    """Calls `fn(*args)`; on a timeout or preemption signal, requeues the same call.

    `fn` resumes from its own on-disk state when called again. submitit bounds requeues after
    timeouts (max_num_timeout) but not after preemptions; `max_requeues` bounds both.
    """

    def __init__(self, fn: Callable[..., Any], max_requeues: int) -> None:
        self.fn = fn
        self.max_requeues = max_requeues
        self.requeues = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        if self.requeues >= self.max_requeues:
            raise RequeueLimitError(
                f"hit the time limit or was preempted after {self.requeues} requeue(s) "
                f"(max_requeues={self.max_requeues})",
                hint="ask for a longer time limit or allow more requeues",
            )
        self.requeues += 1
        return DelayedSubmission(self, *args, **kwargs)


def _record_array(
    folder: Path, name: str, resources: SlurmResources, ids: list[str], keys: Sequence[str] | None
) -> None:
    path = folder / JOBS_FILE
    with FileLock(str(path) + ".lock"):
        data: dict[str, Any] = (
            json.loads(path.read_text()) if path.exists() else {"version": 1, "arrays": []}
        )
        per_job: Sequence[str | None] = keys or [None] * len(ids)
        jobs = [{"job_id": i, "key": k} for i, k in zip(ids, per_job, strict=True)]
        entry = {"name": name, "submitted": now_iso(), "resources": asdict(resources)}
        data["arrays"].append(entry | {"jobs": jobs})
        atomic_write_json(path, data)


# ----------------------------------------------------------------------------------- submission


def submit_array(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    resources: SlurmResources,
    folder: str | os.PathLike[str],
    name: str,
    keys: Sequence[str] | None = None,
) -> list[str]:
    """Submit `fn(item)` for each item as one job array; return the job ids in item order.

    The ids (with `keys`, e.g. cell names, when given) are appended to `<folder>/jobs.json`.
    """
    items = list(items)
    if keys is not None and len(keys) != len(items):
        raise ConfigError(f"submit_array: {len(keys)} keys for {len(items)} items")
    if not items:
        return []
    folder = Path(folder).absolute()
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise SlurmError("sbatch/srun not found: no SLURM client on this machine", hint=START_HINT)
    executor = submitit.SlurmExecutor(folder, max_num_timeout=resources.max_requeues)
    try:
        executor.update_parameters(**resources.executor_parameters(name))
    except ValueError as err:  # submitit checks the sbatch parameters it builds
        raise ConfigError(f"SLURM parameters for '{name}': {err}") from err
    try:
        jobs = executor.map_array(RequeueOnTimeout(fn, resources.max_requeues), items)
    except (FailedJobError, OSError) as err:
        raise SlurmError(
            f"sbatch refused the array '{name}': {str(err).strip()}",
            hint="Check what the array asks for (the sweep's `resources`: gpus, cpus, mem_gb, "
            "time_min; --slurm-partition, --slurm-extra) against the cluster (`sinfo -o '%P %G "
            f"%c %m %l'`); {START_HINT}",
        ) from err
    ids = [job.job_id for job in jobs]
    _record_array(folder, name, resources, ids, keys)
    return ids
