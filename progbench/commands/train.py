"""`progbench train` and `progbench predict`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
from progbench.train.options import FinetuneOptions

if TYPE_CHECKING:
    from progbench.train.pipeline import TrainRequest, TrainSummary

_DEFAULTS = FinetuneOptions()


def _dflt(field: str, where: str = "") -> str:
    """The help text's default: the preset's value, `default`'s shown."""
    return f" Default: the preset's{where} ({getattr(_DEFAULTS, field)} in `default`)."


StrategyOpt = Annotated[
    str,
    typer.Option(
        "--strategy",
        help="lp | fft | lora-r4/8/16 | dora-r4/8/16 | vera-r4/8/16 | loha-r8 | lokr-r8 | "
        "oft-b32 | bitfit | ia3, or a scikit-learn baseline on the features: knn | svm-rbf | "
        "random-forest | logreg (`progbench models` lists every preset).",
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seed for splits, draws and training.")]
SplitsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--splits",
        help="Use this splits JSON, and every few-shot draw it holds unless --shots/--repeats "
        "pick some.",
    ),
]
RunsOpt = Annotated[Path, typer.Option("--runs", help="Root of the run tree.")]
ForceRunsOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace finished runs made with other settings (the old ones are moved to "
        "<runs>/.replaced/). Runs already finished with these settings are kept, so a --force "
        "command that was interrupted can be run again. Not for damaged runs: delete those.",
    ),
]
PresetOpt = Annotated[
    str,
    typer.Option(
        "--preset",
        help="Training preset (PEFT/FFT): default, ruffini2025 (the reference study's "
        "schedule), demo, or a <name>.yaml in $PROGBENCH_TRAINING_DIR. The flags below "
        "override it.",
    ),
]
ProbeOpt = Annotated[
    str,
    typer.Option(
        "--probe",
        help="LP probe preset (configs/probes/*.yaml): default (lbfgs over L2 strength, "
        "cls1), variants (lbfgs over the study's feature variants) or reference (the "
        "study's head-lr grid 1e-2,1e-3,1e-4 with Adam over its feature variants).",
    ),
]

TrainDeviceOpt = Annotated[
    str | None,
    typer.Option("--device", help="auto | cpu | cuda. auto picks CUDA." + _dflt("device")),
]
TrainDtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--dtype", help="auto | fp32 | bf16. auto: bf16 on CUDA, fp32 on CPU." + _dflt("dtype")
    ),
]
BatchSizeOpt = Annotated[
    int | None,
    typer.Option("--batch-size", help="Images per step." + _dflt("batch_size", " or per task")),
]
EpochsOpt = Annotated[int | None, typer.Option(help="Maximum epochs (PEFT/FFT)." + _dflt("epochs"))]
AccumulateOpt = Annotated[
    int | None,
    typer.Option(help="Gradient accumulation steps (PEFT/FFT)." + _dflt("accumulate")),
]
LrBackboneOpt = Annotated[
    float | None,
    typer.Option("--lr-backbone", help="Backbone/adapter lr. Default: 1e-5 FFT, 1e-4 PEFT."),
]
LrHeadOpt = Annotated[
    float | None,
    typer.Option("--lr-head", help="Head lr. Default: chosen on validation from 1e-2,1e-3,1e-4."),
]
PatienceOpt = Annotated[
    int | None,
    typer.Option(help="Early-stopping patience in epochs (PEFT/FFT)." + _dflt("patience")),
]
MinEpochsOpt = Annotated[
    int | None,
    typer.Option(
        "--min-epochs",
        help="Early-stopping patience counts from this epoch at the earliest."
        + _dflt("min_epochs"),
    ),
]
EvalEveryOpt = Annotated[
    int | None,
    typer.Option("--eval-every", help="Validate every N epochs (PEFT/FFT)." + _dflt("eval_every")),
]
MinLrOpt = Annotated[
    float | None, typer.Option("--min-lr", help="Floor of the lr schedule." + _dflt("min_lr"))
]
AugmentOpt = Annotated[
    bool | None,
    typer.Option(
        "--augment/--no-augment", help="On-device CXR-safe augmentation." + _dflt("augment")
    ),
]
CompileOpt = Annotated[
    bool | None, typer.Option("--compile", help="torch.compile the model (PEFT/FFT).")
]
TrainImageSizeOpt = Annotated[
    int | None,
    typer.Option("--image-size", help="Side of the image store." + _dflt("image_size")),
]
InputSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--input-size", help="Model input side (PEFT/FFT; CNNs only). Default: the backbone's."
    ),
]
WeightDecayOpt = Annotated[
    float | None,
    typer.Option("--weight-decay", help="AdamW weight decay (PEFT/FFT)." + _dflt("weight_decay")),
]


@dataclass(frozen=True)
class TrainArgs:
    """`train`'s options as given (typed as declared above), from which its request is built."""

    task: TaskArg
    backbone: BackboneOpt
    strategy: StrategyOpt
    weights: WeightsOpt
    scheme: SchemeOpt
    folds: FoldsOpt
    val_fraction: ValFractionOpt
    seed: SeedOpt
    shots: ShotsOpt
    repeats: RepeatsOpt
    per_center: PerCenterOpt
    splits_file: SplitsFileOpt
    runs: RunsOpt
    force: ForceRunsOpt
    preset: PresetOpt
    device: TrainDeviceOpt
    dtype: TrainDtypeOpt
    batch_size: BatchSizeOpt
    epochs: EpochsOpt
    accumulate: AccumulateOpt
    lr_backbone: LrBackboneOpt
    lr_head: LrHeadOpt
    patience: PatienceOpt
    min_epochs: MinEpochsOpt
    eval_every: EvalEveryOpt
    min_lr: MinLrOpt
    augment: AugmentOpt
    compile_model: CompileOpt
    image_size: TrainImageSizeOpt
    probe: ProbeOpt
    input_size: InputSizeOpt
    weight_decay: WeightDecayOpt
    cache_dir: CacheDirOpt
    manifest: ManifestOpt
    outcome: OutcomeOpt
    positive: PositiveOpt
    negative: NegativeOpt

    def training_flags(self) -> dict[str, Any]:
        """The training flags given, by FinetuneOptions field (`compile_model` is `compile`);
        None (not given) leaves the preset's value."""
        flags: dict[str, Any] = {
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "accumulate": self.accumulate,
            "lr_backbone": self.lr_backbone,
            "lr_head": self.lr_head,
            "patience": self.patience,
            "min_epochs": self.min_epochs,
            "eval_every": self.eval_every,
            "min_lr": self.min_lr,
            "augment": self.augment,
            "compile": self.compile_model,
            "image_size": self.image_size,
            "input_size": self.input_size,
            "weight_decay": self.weight_decay,
            "cache_dir": self.cache_dir,
        }
        return {key: value for key, value in flags.items() if value is not None}


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
