"""`progbench audit`: the controls every medical-imaging benchmark should run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from progbench.commands.app import command
from progbench.commands.options import (
    BackboneOpt,
    CacheDirOpt,
    ManifestOpt,
    NegativeOpt,
    OutcomeOpt,
    PositiveOpt,
    SchemeOpt,
    TaskArg,
    WeightsDirOpt,
    WeightsOpt,
    load_task_from_options,
    split_list,
    use_weights_dir,
)
from progbench.commands.output import console, err_console, progress
from progbench.commands.render import audit_table

CHECK_HELP = "metadata_shortcut, centre_predicts_label, random_init_control, label_permutation"


def audit(
    task: TaskArg = None,
    backbone: BackboneOpt = "resnet18",
    weights: WeightsOpt = "pretrained",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for audit.json. Default: <runs>/<task>/audit/<backbone>/ (the report "
            "finds it there).",
        ),
    ] = None,
    runs: Annotated[
        Path, typer.Option("--runs", help="Root of the run tree (its splits are reused).")
    ] = Path("runs"),
    scheme: SchemeOpt = "auto",
    folds: Annotated[int, typer.Option(help="Folds for kfold.")] = 5,
    val_fraction: Annotated[
        float, typer.Option(help="Share of training patients for validation.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for splits, CV, bootstrap, permutations.")] = 42,
    splits_file: Annotated[
        Path | None, typer.Option("--splits", help="Use this splits JSON.")
    ] = None,
    permutations: Annotated[
        int,
        typer.Option(
            "--permutations",
            help="label_permutation repeats (the smallest p-value is 1/(n+1); 0 skips it).",
        ),
    ] = 50,
    n_boot: Annotated[
        int, typer.Option("--n-boot", help="Patient-bootstrap replicates of every CI.")
    ] = 1000,
    probe: Annotated[
        str, typer.Option("--probe", help="LP probe preset; its first feature variant is probed.")
    ] = "default",
    checks: Annotated[
        list[str] | None,
        typer.Option("--check", help=f"Run only these checks (comma-separated): {CHECK_HELP}."),
    ] = None,
    fail_on_flag: Annotated[
        bool, typer.Option("--fail-on-flag", help="Exit with code 3 when any check flags.")
    ] = False,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda (extraction).")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto | fp32 | bf16 (extraction).")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per extraction batch.")
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="Side of the image store (as given to train)."),
    ] = None,
    cache_dir: CacheDirOpt = None,
    weights_dir: WeightsDirOpt = None,
    manifest: ManifestOpt = None,
    outcome: OutcomeOpt = None,
    positive: PositiveOpt = None,
    negative: NegativeOpt = None,
) -> None:
    """Run the controls every medical-imaging benchmark should run, and write audit.json.

    Cheap checks on the cached features and the manifest, each [bold]ok[/], [bold red]flag[/]
    or [dim]skip[/] (with the reason): metadata_shortcut (acquisition metadata alone: image
    geometry, bit depth, file size, DICOM tags, file-name tokens; flags when its MCC CI
    excludes 0), centre_predicts_label (the centre alone, and per-centre prevalence),
    random_init_control (the same backbone with random weights: flags when it reaches the
    pretrained run's CI or scores well above chance alone) and label_permutation (the probe
    refitted on permuted training labels: its p-value). Features are extracted once into the
    content-keyed feature stores `train` uses (the random-init store too), then reused; the
    splits are those of the run tree. Methods and thresholds: docs/METHODOLOGY.md, "Audit".

    Example: [bold]progbench audit cohort/tasks/severity.yaml --backbone resnet18 --weights pretrained[/]
    """
    from progbench.audit.context import AuditConfig
    from progbench.audit.runner import AuditRequest, run_audit
    from progbench.train.plan import SplitRequest
    from progbench.train.presets import resolve_training

    use_weights_dir(weights_dir)
    t = load_task_from_options(task, manifest, outcome, positive, negative)
    flags = {
        k: v
        for k, v in {
            "device": device,
            "dtype": dtype,
            "batch_size": batch_size,
            "image_size": image_size,
            "cache_dir": cache_dir,
        }.items()
        if v is not None
    }
    request = AuditRequest(
        task=t,
        backbone=backbone,
        runs_root=runs,
        weights=weights,
        splits=SplitRequest(
            scheme=scheme,
            folds=folds,
            val_fraction=val_fraction,
            seed=seed,
            splits_file=splits_file,
        ),
        options=resolve_training("default", t.name, flags, "the command line"),
        config=AuditConfig(n_boot=n_boot, seed=seed, permutations=permutations, probe=probe),
        out=out,
        checks=tuple(split_list(checks)) or None,
    )
    with progress(f"auditing {t.name}, {backbone}") as update:
        report = run_audit(request, update)
    doc = report.document
    title = f"audit: {doc['task']}, {doc['backbone']} ({doc['weights']}), scheme {doc['scheme']}"
    console.print(audit_table(title, doc["checks"]))
    flagged = [c.name for c in report.flagged]
    if flagged:
        err_console.print(
            f"[bold red]flagged:[/] {', '.join(flagged)} (details in {report.path})",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"wrote {report.path} in {report.seconds:.1f} s", soft_wrap=True)
    if flagged and fail_on_flag:
        raise typer.Exit(code=3)


def register(app: typer.Typer) -> None:
    command(app, audit)
