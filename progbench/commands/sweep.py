"""`progbench sweep plan|run|status|wait`: the whole study from one file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from progbench.commands.app import command, group
from progbench.commands.options import split_list
from progbench.commands.output import (
    ProgressFn,
    console,
    err_console,
    print_wide,
    progress,
    staged_progress,
)
from progbench.commands.render import long_table, simple_table

if TYPE_CHECKING:  # imported when a command runs, not at startup
    from progbench.sweep.execute import UnitResult
    from progbench.sweep.plan import SweepPlan
    from progbench.sweep.run import SweepRun
    from progbench.sweep.spec import Sweep

app = group("Run the whole study from one sweep file, locally or on SLURM.")

SweepArg = Annotated[
    str, typer.Argument(help="A sweep YAML, or a preset's name (demo, ruffini2025).")
]
RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Where the sweep's relative paths start. Default: the file's folder (a preset: "
        "the current folder).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _load(source: str, root: Path | None, load_tasks: bool = True) -> Sweep:
    from progbench.sweep.spec import load_sweep

    return load_sweep(source, root, load_tasks=load_tasks)


def _hours(h: float) -> str:
    return f"{h:.3g}" if h else "0"


def plan(
    source: SweepArg,
    root: RootOpt = None,
    as_json: JsonOpt = False,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate", help="Time training steps per backbone on this machine's device first."
        ),
    ] = False,
    calibrate_budget: Annotated[
        float,
        typer.Option(
            "--calibrate-budget",
            help="Seconds of new calibration at most; 0 reads cached calibrations only.",
        ),
    ] = 900.0,
    tflops: Annotated[
        float, typer.Option("--tflops", help="Effective device TFLOP/s for the FLOP-count basis.")
    ] = 60.0,
    gpu: Annotated[
        str, typer.Option("--gpu", help="The device the FLOP basis stands for.")
    ] = "A40",
) -> None:
    """The sweep's cells, what is done and pending, the order of the work, and its cost.

    Example: [bold]progbench sweep plan ruffini2025[/]
    """
    from progbench.sweep.cost import CostOptions
    from progbench.sweep.plan import make_plan

    sweep = _load(source, root)
    calibration = _calibration(sweep, calibrate_budget) if calibrate else None
    result = make_plan(sweep, CostOptions(tflops=tflops, gpu=gpu, calibration=calibration))
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    _print_plan(result)


def _calibration(sweep: Sweep, budget_s: float) -> dict[tuple[str, str], tuple[float, float]]:
    """Streamed strategies are timed per backbone; "lp" stands for every feature-path one (its
    device time is the extraction's forward)."""
    from progbench.sweep.calibrate import calibration_table

    streamed = [s for s in sweep.strategies if sweep.family(s) != "lp"]
    with progress("calibrating backbones") as update:
        return calibration_table(sweep.backbones, [*streamed, "lp"], budget_s, progress=update)


def _print_plan(result: SweepPlan) -> None:
    rows = [
        (
            r.plan.cell.task, r.plan.cell.scheme, r.plan.cell.backbone, r.plan.cell.strategy,
            r.plan.cell.regime, r.state, len(r.plan.runs), r.done, len(r.pending),
            _hours(r.device_hours), r.basis,
        )
        for r in result.applicable
    ]  # fmt: skip
    cols: tuple[str, ...] = ("task", "scheme", "backbone", "strategy", "regime", "state")
    cols += ("runs", "done", "pending", "device-h", "basis")
    print_wide(long_table(f"sweep {result.sweep.name}: cells", cols, rows, cols[6:10]))
    by_reason: dict[str, list[str]] = {}
    for r in result.not_applicable:
        c = r.plan.cell
        by_reason.setdefault(f"{c.backbone} x {c.strategy}: {r.plan.reason}", []).append(c.task)
    for line in by_reason:
        console.print(f"[yellow]n/a:[/] {' '.join(line.split())}", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    stages = ", then ".join(f"{s.items} {s.name}" for s in result.stages)
    console.print(f"order of the work: {stages}", soft_wrap=True)
    t = result.totals()
    console.print(
        f"{t['cells']} cells ({t['cells_not_applicable']} n/a), {t['runs']} runs: "
        f"{t['runs_done']} done, {t['runs_pending']} pending", soft_wrap=True,
    )  # fmt: skip
    console.print(
        f"projected device time of the pending work: [bold]{t['device_hours']:.1f} GPU-hours[/] "
        f"(feature extraction {t['extract_device_hours']:.1f}); basis: {result.basis}. "
        f"The reference study's grid took about {t['study_gpu_hours']:,} A40-hours.",
        soft_wrap=True,
    )


def run(
    source: SweepArg,
    root: RootOpt = None,
    executor: Annotated[str, typer.Option("--executor", help="local | slurm.")] = "local",
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes.")] = 1,
    gpus: Annotated[
        list[str] | None,
        typer.Option("--gpus", help="Local: one worker per listed GPU, e.g. 0,1,2,3."),
    ] = None,
    slurm_partition: Annotated[str | None, typer.Option("--slurm-partition")] = None,
    slurm_time: Annotated[
        int | None, typer.Option("--slurm-time", help="Minutes per job (all families).")
    ] = None,
    slurm_array_parallelism: Annotated[
        int | None, typer.Option("--slurm-array-parallelism")
    ] = None,
    slurm_extra: Annotated[
        list[str] | None,
        typer.Option("--slurm-extra", help="KEY=VALUE passed to submitit's SLURM parameters."),
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="SLURM: return after submission.")
    ] = False,
) -> None:
    """Run every pending cell (image stores, feature stores, LP, then PEFT/FFT), then evaluate
    and report the sweep's tree into <runs>/report/.

    Rerunning does only what is not DONE; one cell failing never stops the others; the command
    exits non-zero if any cell failed.

    Examples:

    [bold]progbench sweep run demo --root demo-output --workers 2[/]

    [bold]progbench sweep run study.yaml --executor slurm --slurm-partition gpu --no-wait[/]
    """
    from progbench.sweep.local import LocalExecutor
    from progbench.sweep.run import run_sweep
    from progbench.sweep.slurm_run import SlurmExecutor

    sweep = _load(source, root)
    if executor == "slurm":
        extra = dict(_key_value(e) for e in split_list(slurm_extra))
        ex: Any = SlurmExecutor(slurm_partition, slurm_time, slurm_array_parallelism, extra)
    elif executor == "local":
        ex = LocalExecutor(workers=workers, gpus=tuple(split_list(gpus)))
    else:
        from progbench.errors import ConfigError

        raise ConfigError(f"--executor must be local or slurm, got {executor!r}")
    with progress(f"sweep {sweep.name}") as update:
        counter = _CellLog(update)
        result = run_sweep(sweep, ex, counter, counter.start)
    if executor == "slurm":
        console.print(f"submitted {len(result.job_ids)} job(s) to SLURM", soft_wrap=True)
        if no_wait:
            console.print(f"follow them with [bold]progbench sweep status {source}[/] and "
                          f"finish with [bold]progbench sweep wait {source}[/]", soft_wrap=True)  # fmt: skip
            return
        _wait_and_finish(sweep)
        return
    for note in result.plan.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    _summary(result)
    _finish(sweep)
    _exit_if_failed(sweep)


def cell_line(r: UnitResult) -> None:
    """One line per finished unit: cells when done, anything that failed."""
    if r.state == "failed":
        err_console.print(f"[red]failed[/] {r.key}: {r.error} (log: {r.log})", highlight=False)
    elif r.kind == "cell":
        console.print(
            f"done {r.key}: {r.written} run(s) written, {r.skipped} already finished, "
            f"{r.seconds:.1f} s", highlight=False, soft_wrap=True,
        )  # fmt: skip


class _CellLog:
    """Progress over units, and one line per finished cell."""

    def __init__(self, update: ProgressFn) -> None:
        self.update, self.done, self.total = update, 0, 0

    def start(self, total: int) -> None:
        self.total = total
        self.update(0, total)

    def __call__(self, r: UnitResult) -> None:
        self.done += 1
        self.update(self.done, max(self.total, self.done))
        cell_line(r)


def _key_value(text: str) -> tuple[str, str]:
    from progbench.errors import ConfigError

    if "=" not in text:
        raise ConfigError(f"--slurm-extra {text!r} is not KEY=VALUE", "e.g. --slurm-extra qos=high")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _summary(result: SweepRun) -> None:
    results = result.results
    cells = [r for r in results if r.kind == "cell"]
    failed = [r for r in results if r.state == "failed"]
    before, reused = result.already_done
    if not results:
        console.print(
            f"all {before} cell(s) were already done ({reused} runs reused); nothing to run",
            soft_wrap=True,
        )
        return
    earlier = f"; {before} cell(s) already done before ({reused} runs reused)" if before else ""
    console.print(
        f"{sum(r.state == 'done' for r in cells)} cell(s) done, {len(failed)} unit(s) failed "
        f"({sum(r.written for r in cells)} runs written, {sum(r.skipped for r in cells)} already "
        f"finished){earlier}", soft_wrap=True,
    )  # fmt: skip
    for r in failed:
        console.print(f"  [red]failed[/] {r.key}: {r.error}\n    log: {r.log}", highlight=False)


def _finish(sweep: Sweep) -> None:
    from progbench.commands.render import result_warning_lines
    from progbench.sweep.run import finish_sweep

    with staged_progress("evaluating the sweep:") as update:  # runs, then groups
        report = finish_sweep(sweep, update)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    for line in result_warning_lines(report.summary):
        console.print(line, highlight=False, soft_wrap=True)
    if report.results is not None:
        console.print(f"results: {report.results[0]}", soft_wrap=True, highlight=False)
    if report.html is not None:
        console.print(f"report: {report.html}", soft_wrap=True, highlight=False)


def _exit_if_failed(sweep: Sweep) -> None:
    from progbench.errors import ProgbenchError
    from progbench.sweep.status import sweep_status

    failed = [c for c in sweep_status(sweep) if c.state == "failed"]
    if failed:
        raise ProgbenchError(
            f"{len(failed)} cell(s) of sweep {sweep.name} failed",
            f"See `progbench sweep status {sweep.source}`; fix the cause and run the same command "
            "again: it runs only what is not done.",
        )


def _wait_and_finish(sweep: Sweep, poll: float = 5.0) -> None:
    from progbench.sweep.slurm_run import wait_sweep

    with progress("SLURM jobs") as update:
        wait_sweep(sweep, lambda s: update(sum(j.finished for j in s.values()), len(s)), poll)
    _finish(sweep)
    _exit_if_failed(sweep)


def status(source: SweepArg, root: RootOpt = None, as_json: JsonOpt = False) -> None:
    """One row per cell: state (done, failed, running, pending, n/a), runs done/total,
    device-hours spent, and the error line of failed cells.

    Example: [bold]progbench sweep status study.yaml --json[/]
    """
    from progbench.sweep.status import sweep_status, totals

    sweep = _load(source, root)
    cells = sweep_status(sweep)
    if as_json:
        typer.echo(
            json.dumps({"cells": [c.to_json() for c in cells], "totals": totals(cells)}, indent=2)
        )
        return
    rows = [
        (
            c.plan.cell.task, c.plan.cell.scheme, c.plan.cell.backbone, c.plan.cell.strategy,
            c.plan.cell.regime, c.state, f"{c.runs_done}/{len(c.plan.runs)}",
            _hours(c.device_hours), c.error or "",
        )
        for c in cells
    ]  # fmt: skip
    cols = (
        "task",
        "scheme",
        "backbone",
        "strategy",
        "regime",
        "state",
        "runs",
        "device-h",
        "error",
    )
    print_wide(simple_table(f"sweep {sweep.name}", cols, rows, ("runs", "device-h")))
    t = totals(cells)
    parts = ", ".join(
        f"{t[k]} {k}" for k in ("done", "running", "pending", "failed", "n/a") if k in t
    )
    console.print(f"{t['cells']} cells: {parts}; {t['runs_done']}/{t['runs_total']} runs done, "
                  f"{t['device_hours']:.2f} device-hours spent", soft_wrap=True)  # fmt: skip


def wait_cmd(
    source: SweepArg,
    root: RootOpt = None,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between two looks.")] = 30.0,
) -> None:
    """Wait for a sweep's SLURM jobs, then evaluate and report it.

    Example: [bold]progbench sweep wait study.yaml[/]
    """
    _wait_and_finish(_load(source, root), poll)


def register(root: typer.Typer) -> None:
    command(app, plan, "plan")
    command(app, run, "run")
    command(app, status, "status")
    command(app, wait_cmd, "wait")
    root.add_typer(app, name="sweep")
