"""`progbench audit`: the controls every medical-imaging benchmark should run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from progbench.commands.app import command
from progbench.commands.options import (
    BackboneOpt,
    CacheDirOpt,
    FoldsOpt,
    ManifestOpt,
    NegativeOpt,
    OutcomeOpt,
    PositiveOpt,
    SchemeOpt,
    TaskArg,
    ValFractionOpt,
    WeightsDirOpt,
    WeightsOpt,
    load_task_from_options,
    split_list,
    use_weights_dir,
)
from progbench.commands.output import console, err_console, progress
from progbench.commands.render import audit_table

if TYPE_CHECKING:
    from progbench.audit.runner import AuditRequest

CHECK_HELP = "metadata_shortcut, centre_predicts_label, random_init_control, label_permutation"

AuditOutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Folder for audit.json. Default: <runs>/<task>/audit/<backbone>/ (the report "
        "finds it there).",
    ),
]
AuditRunsOpt = Annotated[
    Path, typer.Option("--runs", help="Root of the run tree (its splits are reused).")
]
AuditSeedOpt = Annotated[int, typer.Option(help="Seed for splits, CV, bootstrap, permutations.")]
AuditSplitsOpt = Annotated[Path | None, typer.Option("--splits", help="Use this splits JSON.")]
PermutationsOpt = Annotated[
    int,
    typer.Option(
        "--permutations",
        help="label_permutation repeats (the smallest p-value is 1/(n+1); 0 skips it).",
    ),
]
NBootOpt = Annotated[
    int, typer.Option("--n-boot", help="Patient-bootstrap replicates of every CI.")
]
AuditProbeOpt = Annotated[
    str, typer.Option("--probe", help="LP probe preset; its first feature variant is probed.")
]
ChecksOpt = Annotated[
    list[str] | None,
    typer.Option("--check", help=f"Run only these checks (comma-separated): {CHECK_HELP}."),
]
FailOnFlagOpt = Annotated[
    bool, typer.Option("--fail-on-flag", help="Exit with code 3 when any check flags.")
]
# Extraction flags: None (not given) leaves the `default` training preset's value.
AuditDeviceOpt = Annotated[str | None, typer.Option(help="auto | cpu | cuda (extraction).")]
AuditDtypeOpt = Annotated[str | None, typer.Option(help="auto | fp32 | bf16 (extraction).")]
AuditBatchSizeOpt = Annotated[
    int | None, typer.Option("--batch-size", help="Images per extraction batch.")
]
AuditImageSizeOpt = Annotated[
    int | None,
    typer.Option("--image-size", help="Side of the image store (as given to train)."),
]


@dataclass(frozen=True)
class AuditArgs:
    """`audit`'s options as given (typed as declared above), from which its request is built."""

    task: TaskArg
    backbone: BackboneOpt
    weights: WeightsOpt
    out: AuditOutOpt
    runs: AuditRunsOpt
    scheme: SchemeOpt
    folds: FoldsOpt
    val_fraction: ValFractionOpt
    seed: AuditSeedOpt
    splits_file: AuditSplitsOpt
    permutations: PermutationsOpt
    n_boot: NBootOpt
    probe: AuditProbeOpt
    checks: ChecksOpt
    device: AuditDeviceOpt
    dtype: AuditDtypeOpt
    batch_size: AuditBatchSizeOpt
    image_size: AuditImageSizeOpt
    cache_dir: CacheDirOpt
    manifest: ManifestOpt
    outcome: OutcomeOpt
    positive: PositiveOpt
    negative: NegativeOpt

    def extraction_flags(self) -> dict[str, Any]:
        """The extraction flags given; None (not given) leaves the `default` preset's value."""
        flags: dict[str, Any] = {
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "image_size": self.image_size,
            "cache_dir": self.cache_dir,
        }
        return {key: value for key, value in flags.items() if value is not None}


def audit(
    task: TaskArg = None,
    backbone: BackboneOpt = "resnet18",
    weights: WeightsOpt = "pretrained",
    out: AuditOutOpt = None,
    runs: AuditRunsOpt = Path("runs"),
    scheme: SchemeOpt = "auto",
    folds: FoldsOpt = 5,
    val_fraction: ValFractionOpt = 0.2,
    seed: AuditSeedOpt = 42,
    splits_file: AuditSplitsOpt = None,
    permutations: PermutationsOpt = 50,
    n_boot: NBootOpt = 1000,
    probe: AuditProbeOpt = "default",
    checks: ChecksOpt = None,
    fail_on_flag: FailOnFlagOpt = False,
    device: AuditDeviceOpt = None,
    dtype: AuditDtypeOpt = None,
    batch_size: AuditBatchSizeOpt = None,
    image_size: AuditImageSizeOpt = None,
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
    args = AuditArgs(
        task=task,
        backbone=backbone,
        weights=weights,
        out=out,
        runs=runs,
        scheme=scheme,
        folds=folds,
        val_fraction=val_fraction,
        seed=seed,
        splits_file=splits_file,
        permutations=permutations,
        n_boot=n_boot,
        probe=probe,
        checks=checks,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        image_size=image_size,
        cache_dir=cache_dir,
        manifest=manifest,
        outcome=outcome,
        positive=positive,
        negative=negative,
    )
    from progbench.audit.runner import run_audit

    use_weights_dir(weights_dir)
    request = _audit_request(args)
    t = request.task
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


def _audit_request(args: AuditArgs) -> AuditRequest:
    """The AuditRequest that `audit`'s options describe (task, splits, extraction, checks)."""
    from progbench.audit.context import AuditConfig
    from progbench.audit.runner import AuditRequest
    from progbench.train.plan import SplitRequest
    from progbench.train.presets import resolve_training

    t = load_task_from_options(args.task, args.manifest, args.outcome, args.positive, args.negative)
    return AuditRequest(
        task=t,
        backbone=args.backbone,
        runs_root=args.runs,
        weights=args.weights,
        splits=SplitRequest(
            scheme=args.scheme,
            folds=args.folds,
            val_fraction=args.val_fraction,
            seed=args.seed,
            splits_file=args.splits_file,
        ),
        options=resolve_training("default", t.name, args.extraction_flags(), "the command line"),
        config=AuditConfig(
            n_boot=args.n_boot,
            seed=args.seed,
            permutations=args.permutations,
            probe=args.probe,
        ),
        out=args.out,
        checks=tuple(split_list(args.checks)) or None,
    )


def register(app: typer.Typer) -> None:
    command(app, audit)
