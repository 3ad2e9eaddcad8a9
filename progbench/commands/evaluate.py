"""`progbench evaluate`: the shared evaluator on a predictions file, a run or a tree of runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from progbench.commands.app import command
from progbench.commands.output import console, err_console, print_wide, staged_progress
from progbench.commands.render import metrics_table, result_warning_lines, summary_table

ThresholdOpt = Annotated[
    str,
    typer.Option(
        help="Decision threshold: fixed:<t> (t in [0, 1]), val-mcc or val-youden "
        "(chosen on the validation rows only, then applied to test)."
    ),
]
NBootOpt = Annotated[
    int, typer.Option("--n-boot", help="Bootstrap replicates (patients resampled) for pooled CIs.")
]
SeedOpt = Annotated[int, typer.Option(help="Bootstrap seed.")]
JobsOpt = Annotated[int, typer.Option(help="Processes for aggregating groups of runs.")]


def evaluate_with_progress(cfg: Any, show: bool = True) -> Any:
    """`evaluate_path` with a progress display (none when stdout must stay pure JSON)."""
    from progbench.evaluate.paths import evaluate_path

    if not show:
        return evaluate_path(cfg)
    with staged_progress("evaluating") as update:  # runs, then groups
        return evaluate_path(cfg, update)


def warn_incomplete(incomplete: list[Path]) -> None:
    if not incomplete:
        return
    err_console.print(
        f"[yellow]warning:[/] skipped {len(incomplete)} incomplete run(s) (no DONE):",
        highlight=False,
    )
    for p in incomplete:
        err_console.print(f"  {p}", highlight=False, soft_wrap=True)


def _print_single(result: Any, path: Path, emit: Any | None) -> None:
    """One file's or run's metrics: as JSON through `emit`, else as a table with its notes."""
    single = result.single
    ordered = {s: single[s] for s in ("test", "val") if s in single}
    if emit is not None:
        left_out = result.left_out_train
        emit({**ordered, "left_out_train": left_out} if left_out else ordered)
        return
    if result.left_out_train:
        console.print(
            f"note: {result.left_out_train} row(s) with part = train left out: the run "
            "trained on those images",
            highlight=False,
            soft_wrap=True,
        )
    print_wide(metrics_table(str(path), single))
    for split in ("test", "val"):
        if single.get(split, {}).get("degenerate"):
            console.print(
                f"[yellow]warning:[/] degenerate classifier: every {split} row is "
                "predicted one class at this threshold; MCC is 0 by convention",
                highlight=False,
                soft_wrap=True,
            )


def evaluate(
    path: Annotated[
        Path,
        typer.Argument(
            help="A run directory, a tree of runs, or a predictions .parquet/.csv file."
        ),
    ],
    threshold: ThresholdOpt = "fixed:0.5",
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print machine-readable metrics (JSON) instead of tables."),
    ] = False,
    n_boot: NBootOpt = 1000,
    seed: SeedOpt = 42,
    jobs: JobsOpt = 1,
) -> None:
    """Score predictions; for a tree of runs, also aggregate and write the results table.

    A file needs columns image_id, patient_id, split (val|test), y_true (0/1), p_pos.
    A tree gets results.parquet and results.csv: one row per (run or aggregate) x metric.
    Incomplete runs (no DONE) are named and skipped. Definitions: docs/METHODOLOGY.md, 6.

    Examples:

    [bold]progbench evaluate predictions.csv --json[/]

    [bold]progbench evaluate runs/ --threshold val-mcc[/]
    """
    import json

    from progbench.evaluate.paths import EvaluateConfig
    from progbench.evaluate.results import result_warnings, summarise

    def emit(obj: object) -> None:
        typer.echo(json.dumps(obj, indent=2, allow_nan=False))

    cfg = EvaluateConfig(path, threshold, n_boot, seed, jobs)
    result = evaluate_with_progress(cfg, show=not json_out)
    if result.single is not None:
        _print_single(result, path, emit if json_out else None)
        return
    tree = result.tree
    warn_incomplete(tree.incomplete)
    parquet, csv = result.written
    groups = summarise(tree.results)
    if json_out:
        emit(
            {
                "results": {"parquet": str(parquet), "csv": str(csv)},
                "runs": len(tree.done),
                "incomplete": [str(p) for p in tree.incomplete],
                "threshold": threshold,
                "warnings": result_warnings(groups),
                "groups": groups,
            }
        )
        return
    print_wide(summary_table(f"{path}: {len(tree.done)} runs, threshold {threshold}", groups))
    for line in result_warning_lines(groups):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"wrote {parquet} and {csv} ({len(tree.results)} rows)", soft_wrap=True)


def register(app: typer.Typer) -> None:
    command(app, evaluate)
