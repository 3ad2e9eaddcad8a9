"""The SLURM executor: a sweep's units as job arrays through submitit (progbench.sweep.slurm).

Each phase (image stores, feature stores, LP cells, streamed cells) becomes one array per
resource set (the sweep's `resources` per family), and every array of a phase waits for the
arrays of the phase before it (`--dependency=afterany`: a failed store fails its cells with
their own error instead of blocking them). A job that hits its time limit or is preempted is
requeued and calls its unit again, which resumes from the runs' training checkpoints. The job
ids are kept in `<runs>/.sweep/<name>/slurm/jobs.json`, so `sweep status` and `sweep wait` find
them from another process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from progbench.config.sweeps import ResourceName
from progbench.sweep.execute import Unit, run_unit_from_file
from progbench.sweep.slurm import SlurmResources, job_states, submit_array, wait
from progbench.sweep.spec import Sweep


@dataclass(frozen=True)
class SlurmExecutor:
    partition: str | None = None
    time_min: int | None = None  # overrides every family's time_min
    array_parallelism: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


def slurm_folder(sweep: Sweep) -> Path:
    return sweep.state_dir / "slurm"


def unit_family(sweep: Sweep, unit: Unit) -> ResourceName:
    if unit.kind == "images":
        return "images"
    if unit.kind == "features":
        return "extract"
    return sweep.family(unit.strategy)


def resources_for(
    sweep: Sweep, family: ResourceName, executor: SlurmExecutor, after: list[str]
) -> SlurmResources:
    spec = sweep.config.resources[family]
    slurm = sweep.config.slurm
    extra: dict[str, str | int | float | bool] = dict(slurm.extra) | dict(executor.extra)
    if after:
        extra["dependency"] = "afterany:" + ":".join(after)
    return SlurmResources(
        partition=executor.partition or slurm.partition,
        time_min=executor.time_min or spec.time_min,
        cpus=spec.cpus,
        mem_gb=spec.mem_gb,
        gpus=spec.gpus,
        array_parallelism=executor.array_parallelism or slurm.array_parallelism,
        max_requeues=slurm.max_requeues,
        signal_delay_s=slurm.signal_delay_s,
        extra=extra,
    )


def _array_ids(job_ids: Sequence[str]) -> list[str]:
    """`123_4` -> `123`: a dependency names whole arrays."""
    return sorted({j.split("_")[0] for j in job_ids})


def submit_sweep(
    sweep: Sweep, phases: Sequence[Sequence[Unit]], executor: SlurmExecutor
) -> list[str]:
    """Submit every phase; return all job ids (in submission order)."""
    folder = slurm_folder(sweep)
    folder.mkdir(parents=True, exist_ok=True)
    submitted: list[str] = []
    previous: list[str] = []
    for i, phase in enumerate(phases):
        by_family: dict[ResourceName, list[Unit]] = {}
        for unit in phase:
            by_family.setdefault(unit_family(sweep, unit), []).append(unit)
        ids: list[str] = []
        for family, units in by_family.items():
            resources = resources_for(sweep, family, executor, _array_ids(previous))
            ids += submit_array(
                _Job(str(sweep.source), str(sweep.root)),
                units,
                resources,
                folder,
                name=f"{sweep.name}-{i}-{family}",
                keys=[u.key for u in units],
            )
        submitted += ids
        previous = ids or previous
    return submitted


@dataclass(frozen=True)
class _Job:
    """The picklable callable a job runs: one unit of the sweep, loaded from its file."""

    source: str
    root: str

    def __call__(self, unit: Unit) -> object:
        return run_unit_from_file(self.source, self.root, unit)


def wait_sweep(sweep: Sweep, on_poll=None, poll_s: float = 5.0) -> dict:
    return wait(slurm_folder(sweep), poll_s=poll_s, on_poll=on_poll)


def states(sweep: Sweep) -> dict:
    folder = slurm_folder(sweep)
    return job_states(folder) if (folder / "jobs.json").is_file() else {}
