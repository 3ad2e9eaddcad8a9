"""`progbench train` and `progbench predict`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from progbench.commands.app import command
from progbench.commands.options import (
    BackboneOpt,
    CacheDirOpt,
    DeviceOpt,
    DtypeOpt,
    FoldsOpt,
    ForceOutOpt,
    ManifestOpt,
    NegativeOpt,
    OutcomeOpt,
    PerCenterOpt,
    PositiveOpt,
    RepeatsOpt,
    SchemeOpt,
    ShotsOpt,
    TaskArg,
    ValFractionOpt,
    WeightsDirOpt,
    WeightsOpt,
    load_task_from_options,
    refuse_existing,
    split_list,
    use_weights_dir,
)
from progbench.commands.output import console, print_wide, progress
from progbench.commands.render import result_warning_lines, summary_table
from progbench.commands.train_options import (
    AccumulateOpt,
    AugmentOpt,
    BatchSizeOpt,
    CompileOpt,
    EpochsOpt,
    EvalEveryOpt,
    ForceRunsOpt,
    InputSizeOpt,
    LrBackboneOpt,
    LrHeadOpt,
    MinEpochsOpt,
    MinLrOpt,
    PatienceOpt,
    PresetOpt,
    ProbeOpt,
    RunsOpt,
    SeedOpt,
    SplitsFileOpt,
    StrategyOpt,
    TrainArgs,
    TrainDeviceOpt,
    TrainDtypeOpt,
    TrainImageSizeOpt,
    WeightDecayOpt,
)

if TYPE_CHECKING:
    from progbench.train.pipeline import TrainRequest, TrainSummary


def train(
    task: TaskArg = None,
    backbone: BackboneOpt = "resnet18",
    strategy: StrategyOpt = "lp",
    weights: WeightsOpt = "pretrained",
    scheme: SchemeOpt = "auto",
    folds: FoldsOpt = 5,
    val_fraction: ValFractionOpt = 0.2,
    seed: SeedOpt = 42,
    shots: ShotsOpt = None,
    repeats: RepeatsOpt = 5,
    per_center: PerCenterOpt = False,
    splits_file: SplitsFileOpt = None,
    runs: RunsOpt = Path("runs"),
    force: ForceRunsOpt = False,
    preset: PresetOpt = "default",
    device: TrainDeviceOpt = None,
    dtype: TrainDtypeOpt = None,
    batch_size: BatchSizeOpt = None,
    epochs: EpochsOpt = None,
    accumulate: AccumulateOpt = None,
    lr_backbone: LrBackboneOpt = None,
    lr_head: LrHeadOpt = None,
    patience: PatienceOpt = None,
    min_epochs: MinEpochsOpt = None,
    eval_every: EvalEveryOpt = None,
    min_lr: MinLrOpt = None,
    augment: AugmentOpt = None,
    compile_model: CompileOpt = None,
    image_size: TrainImageSizeOpt = None,
    probe: ProbeOpt = "default",
    input_size: InputSizeOpt = None,
    weight_decay: WeightDecayOpt = None,
    cache_dir: CacheDirOpt = None,
    weights_dir: WeightsDirOpt = None,
    manifest: ManifestOpt = None,
    outcome: OutcomeOpt = None,
    positive: PositiveOpt = None,
    negative: NegativeOpt = None,
) -> None:
    """Train one strategy on one backbone over every fold (and few-shot draw), then score the runs.

    lp trains linear probes, and knn / svm-rbf / random-forest / logreg scikit-learn estimators, on
    cached features (extracting them first if needed); the other strategies stream images
    through the model. Finished runs are skipped; a killed command
    resumes where it stopped.

    Examples:

    [bold]progbench train cohort/tasks/severity.yaml --backbone resnet18 --weights random --strategy lp --shots 2,4,8 --repeats 5[/]

    [bold]progbench train cohort/tasks/severity.yaml --backbone dinov2-s --strategy lora-r8 --scheme loco[/]
    """
    args = TrainArgs(
        task=task,
        backbone=backbone,
        strategy=strategy,
        weights=weights,
        scheme=scheme,
        folds=folds,
        val_fraction=val_fraction,
        seed=seed,
        shots=shots,
        repeats=repeats,
        per_center=per_center,
        splits_file=splits_file,
        runs=runs,
        force=force,
        preset=preset,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        epochs=epochs,
        accumulate=accumulate,
        lr_backbone=lr_backbone,
        lr_head=lr_head,
        patience=patience,
        min_epochs=min_epochs,
        eval_every=eval_every,
        min_lr=min_lr,
        augment=augment,
        compile_model=compile_model,
        image_size=image_size,
        probe=probe,
        input_size=input_size,
        weight_decay=weight_decay,
        cache_dir=cache_dir,
        manifest=manifest,
        outcome=outcome,
        positive=positive,
        negative=negative,
    )
    from progbench.train.pipeline import run_train

    use_weights_dir(weights_dir)
    summary = run_train(_train_request(args), progress)
    _print_train_summary(summary)


def _train_request(args: TrainArgs) -> TrainRequest:
    """The TrainRequest that `train`'s options describe (task, training options, splits)."""
    from progbench.data.fewshot import parse_shots
    from progbench.train.pipeline import SplitRequest, TrainRequest
    from progbench.train.presets import resolve_training

    t = load_task_from_options(args.task, args.manifest, args.outcome, args.positive, args.negative)
    options = resolve_training(args.preset, t.name, args.training_flags(), "the command line")
    shot_list = split_list(args.shots)
    splits = SplitRequest(
        scheme=args.scheme,
        folds=args.folds,
        val_fraction=args.val_fraction,
        seed=args.seed,
        shots=tuple(parse_shots(",".join(shot_list))) if shot_list else (),
        repeats=args.repeats,
        per_center=args.per_center,
        splits_file=args.splits_file,
    )
    return TrainRequest(
        task=t,
        backbone=args.backbone,
        strategy=args.strategy,
        weights=args.weights,
        splits=splits,
        runs_root=args.runs,
        force=args.force,
        probe=args.probe,
        options=options,
    )


def _print_train_summary(summary: TrainSummary) -> None:
    """Notes, counts, the test-split table and where to go next."""
    for note in summary.notes:
        console.print(note)
    console.print(
        f"{len(summary.written)} run(s) written, {len(summary.skipped)} already finished, "
        f"in {summary.seconds:.1f} s; splits: {summary.splits_file}",
        soft_wrap=True,
    )
    print_wide(summary_table(f"{summary.cell_root} (test split)", summary.groups))
    for line in result_warning_lines(summary.groups):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"CIs and results table: [bold]progbench evaluate {summary.cell_root}[/]")


def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    images: Annotated[
        Path, typer.Argument(help="A manifest (.csv/.parquet), an image file, or a folder.")
    ],
    out: Annotated[Path, typer.Option("--out", help="CSV to write.")] = Path("preds.csv"),
    weights: Annotated[
        str | None,
        typer.Option("--weights", help="Backbone weights, if not where the run found them."),
    ] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward.")] = 64,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Override the run's image-store side.")
    ] = None,
    force: ForceOutOpt = False,
    cache_dir: CacheDirOpt = None,
    weights_dir: WeightsDirOpt = None,
) -> None:
    """Apply a trained run (adapter, BitFit, FFT, or an LP probe on the frozen backbone) to images.

    Writes image_id, patient_id (from a manifest), split (val for the run's validation images,
    test for the others), y_true (when a manifest holds the run's outcome column), p_pos and
    part (the image's part in the run: train, val, test, unused, new): a table that
    `progbench evaluate` scores. Images in a folder are named by their path without extension.

    Example: [bold]progbench predict runs/severity/kfold/resnet18/lora-r8/full/fold-0 new/manifest.csv --out preds.csv[/]
    """
    from progbench.atomic import atomic_write_with
    from progbench.predict import PredictOptions, predict_run, prediction_notes

    refuse_existing(out, force)
    use_weights_dir(weights_dir)
    opts = PredictOptions(device, dtype, batch_size, weights, image_size, cache_dir)
    preds = predict_run(run_dir, images, opts)
    atomic_write_with(out, lambda tmp: preds.to_csv(tmp, index=False))
    console.print(f"wrote {len(preds)} predictions to {out}", soft_wrap=True)
    for level, text in prediction_notes(preds, out):
        prefix = "[yellow]warning:[/] " if level == "warning" else ""
        console.print(prefix + text, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    command(app, train)
    command(app, predict)
