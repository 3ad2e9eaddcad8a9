"""`progbench report`: tables, statistics, figures and report.html from a run tree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from progbench.commands.app import command
from progbench.commands.evaluate import (
    JobsOpt,
    NBootOpt,
    SeedOpt,
    ThresholdOpt,
    evaluate_with_progress,
    warn_incomplete,
)
from progbench.commands.output import console, progress
from progbench.evaluate.registry import METRIC_NAMES, PRIMARY_METRICS


def report(
    runs: Annotated[
        Path,
        typer.Argument(help="A tree of runs, or a results table (results.parquet / results.csv)."),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder for the report (new, empty, or an earlier report)."),
    ],
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="Metric(s) to report, repeatable or comma-separated: "
            + " | ".join(METRIC_NAMES)
            + f". Default: {','.join(PRIMARY_METRICS)}; the page switches between them.",
            show_default=False,
        ),
    ] = None,
    threshold: ThresholdOpt = "fixed:0.5",
    n_boot: NBootOpt = 1000,
    seed: SeedOpt = 42,
    jobs: JobsOpt = 1,
) -> None:
    """Tables, significance tests, figures and a self-contained report.html from a run tree.

    Evaluates the tree as `progbench evaluate` does (cached), then writes the report: the same
    runs give byte-identical files; new runs update it. Each metric's files go into
    DIR/<metric>/; report.html shows one metric at a time. Definitions: docs/METHODOLOGY.md, 7.
    Audits in the tree (`progbench audit`, <runs>/<task>/audit/<backbone>/audit.json) make an
    Audit section, flags first, before the results.

    Example: [bold]progbench report runs/ --out report/ --metric mcc,pr_auc[/]
    """
    from progbench.evaluate.paths import EvaluateConfig
    from progbench.report import build_report, collect_run_variants, collect_run_versions
    from progbench.report.audit import collect_audits
    from progbench.report.data import parse_metrics, read_results

    metrics = parse_metrics(metric)
    run_versions = run_variants = None
    if runs.is_file():
        results = read_results(runs)
    else:
        evaluated = evaluate_with_progress(
            EvaluateConfig(runs, threshold, n_boot, seed, jobs, write=False, tree_only=True)
        )
        warn_incomplete(evaluated.tree.incomplete)
        results = evaluated.tree.results
        run_versions = collect_run_versions(runs)
        run_variants = collect_run_variants(runs)
    with progress("writing the report") as update:
        result = build_report(
            results,
            out,
            metrics=metrics,
            run_versions=run_versions,
            run_variants=run_variants,
            progress=update,
            audits=collect_audits(runs if runs.is_dir() else runs.parent),
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"wrote {len(result.files)} files to {result.out_dir}", soft_wrap=True)
    console.print(f"report: {result.html}", soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    command(app, report)
