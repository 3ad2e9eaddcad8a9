"""Data commands: `synth`, `splits` and `demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from progbench.commands.app import command
from progbench.commands.options import (
    ManifestOpt,
    NegativeOpt,
    OutcomeOpt,
    PerCenterOpt,
    PositiveOpt,
    RepeatsOpt,
    SchemeOpt,
    ShotsOpt,
    TaskArg,
    load_task_from_options,
    refuse_existing,
    split_list,
)
from progbench.commands.output import console, print_wide, progress
from progbench.commands.render import dict_table, fold_table, matrix_tables


def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the cohort into.")],
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 300,
    centers: Annotated[int, typer.Option(help="Number of centres (acquisition sites).")] = 3,
    seed: Annotated[
        int, typer.Option(help="Random seed; the output is a pure function of it.")
    ] = 0,
    dicom: Annotated[bool, typer.Option("--dicom", help="Write DICOM instead of PNG.")] = False,
    signal: Annotated[float, typer.Option(help="Effect size of the outcome on the images.")] = 1.0,
) -> None:
    """Write a synthetic chest X-ray cohort: manifest.csv, images/ and tasks/*.yaml.

    Example: [bold]progbench synth --out cohort --patients 300 --centers 3[/]
    """
    from progbench.data.synth import synthesize

    summary = synthesize(
        out, patients=patients, centers=centers, seed=seed, dicom=dicom, signal=signal
    )
    tasks = ", ".join(str(p) for p in sorted((out / "tasks").glob("*.yaml")))
    console.print(
        f"wrote {summary.n_images} images of {summary.n_patients} patients to {out}\n"
        f"manifest: {out / 'manifest.csv'}\ntasks: {tasks}"
    )


def splits(
    task: TaskArg = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the splits JSON.")] = Path(
        "splits.json"
    ),
    scheme: SchemeOpt = "auto",
    folds: Annotated[int, typer.Option(help="Number of folds for kfold.")] = 5,
    val_fraction: Annotated[
        float,
        typer.Option(
            help="Share of each fold's training patients held out for validation, per class "
            "(at least one of each)."
        ),
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for folds and draws.")] = 42,
    shots: ShotsOpt = None,
    repeats: RepeatsOpt = 5,
    per_center: PerCenterOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing --out file.")
    ] = False,
    manifest: ManifestOpt = None,
    outcome: OutcomeOpt = None,
    positive: PositiveOpt = None,
    negative: NegativeOpt = None,
) -> None:
    """Write patient-level splits (and optional few-shot draws) as JSON.

    Example: [bold]progbench splits cohort/tasks/severity.yaml --scheme loco --shots 2,4,8 --repeats 5 --out splits.json[/]
    """
    from progbench.data.fewshot import add_fewshot, parse_shots
    from progbench.data.splits import make_splits, resolve_scheme, scheme_warnings, write_splits
    from progbench.data.summary import split_summary

    refuse_existing(out, force)
    t = load_task_from_options(task, manifest, outcome, positive, negative)
    resolved, why = resolve_scheme(t, scheme)
    _refuse_unused(resolved, why, folds, shots, repeats, per_center)
    console.print(f"scheme {why}")
    for warning in scheme_warnings(t, scheme, resolved):
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True, highlight=False)
    result = make_splits(t, resolved, folds=folds, val_fraction=val_fraction, seed=seed)
    if shots:
        result = add_fewshot(
            result, t, parse_shots(",".join(split_list(shots))), repeats, per_center
        )
    write_splits(result, out)
    title = (
        f"{t.name}: {result.scheme} splits (seed {result.seed}, "
        f"--val-fraction {result.val_fraction:g})"
    )
    print_wide(fold_table(title, split_summary(t, result)))
    console.print(f"wrote {out}")


def _refuse_unused(
    scheme: str, why: str, folds: int, shots: list[str] | None, repeats: int, per_center: bool
) -> None:
    """A split option that this call would not use is refused, not silently dropped."""
    from progbench.errors import ConfigError

    if scheme != "kfold" and folds != 5:
        raise ConfigError(
            f"--folds {folds} applies to the kfold scheme; the scheme is {why}",
            "Pass --scheme kfold to use it, or leave out --folds.",
        )
    unused = [f for f, on in (("--repeats", repeats != 5), ("--per-center", per_center)) if on]
    if unused and not shots:
        raise ConfigError(
            f"{' and '.join(unused)} apply to few-shot draws, and no --shots was given",
            "Add --shots (e.g. --shots 2,4,8), or leave out " + " and ".join(unused) + ".",
        )


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the demo cohort, stores, runs and report.")
    ] = Path("demo-output"),
) -> None:
    """Run the whole study end to end on a synthetic cohort (a few minutes on 2 CPU cores).

    It is the `demo` sweep (progbench sweep plan demo) with --out as its root: LP and few-shot
    LP under LOCO and 5-fold CV for a CNN and a foundation model, then LoRA, BitFit and FFT on
    the CNN, the evaluator and the report. Rerunning reuses every finished piece.

    Example: [bold]progbench demo --out demo-output[/]
    """
    import time

    from progbench.commands.render import result_warning_lines, summary_table
    from progbench.commands.sweep import cell_line
    from progbench.demo import run_demo

    start = time.perf_counter()
    result = run_demo(
        out,
        progress=progress,
        log=lambda m: console.print(f"[bold cyan]{m}[/]"),
        on_result=cell_line,
    )
    print_wide(dict_table("cohort", result.cohort))
    for scheme, rows in result.split_rows.items():
        print_wide(fold_table(f"{scheme} splits ({result.splits[scheme]})", rows))
    if result.matrix is not None:
        info, grid, notes = matrix_tables(result.matrix)
        print_wide(info)
        print_wide(grid)
        for note in notes:
            console.print(note, highlight=False)
    if result.summary:
        print_wide(summary_table(f"{result.runs}: test split", result.summary))
        for line in result_warning_lines(result.summary):
            console.print(line, highlight=False, soft_wrap=True)
        console.print(f"results table: {result.report.results[0]}", soft_wrap=True)
    if result.report is not None and result.report.html is not None:
        console.print(f"report: {result.report.html}", soft_wrap=True, highlight=False)
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    console.print(
        f"[green]demo finished in {time.perf_counter() - start:.0f} s[/] ({stages}); "
        f"outputs in {out}",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    command(app, synth)
    command(app, splits)
    command(app, demo)
