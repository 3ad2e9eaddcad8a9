"""`progbench train` and `progbench predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from progbench.commands.app import command
from progbench.commands.options import (
    BackboneOpt,
    CacheDirOpt,
    DeviceOpt,
    DtypeOpt,
    ForceOutOpt,
    ManifestOpt,
    NegativeOpt,
    OutcomeOpt,
    PositiveOpt,
    TaskArg,
    WeightsDirOpt,
    WeightsOpt,
    load_task_from_options,
    refuse_existing,
    split_list,
    use_weights_dir,
)
from progbench.commands.output import console, print_wide, progress
from progbench.commands.render import summary_table
from progbench.train.options import FinetuneOptions

_DEFAULTS = FinetuneOptions()


def _dflt(field: str, where: str = "") -> str:
    """The help text's default: the preset's value, `default`'s shown."""
    return f" Default: the preset's{where} ({getattr(_DEFAULTS, field)} in `default`)."


def train(
    task: TaskArg = None,
    backbone: BackboneOpt = "resnet18",
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="lp | fft | lora-r4/8/16 | vera-r4/8/16 | bitfit | ia3, or a scikit-learn "
            "baseline on the features: knn | svm-rbf | random-forest | logreg.",
        ),
    ] = "lp",
    weights: WeightsOpt = "pretrained",
    scheme: Annotated[
        str,
        typer.Option(
            help="auto | loco | kfold | holdout. auto: LOCO when every centre holds both "
            "classes, else kfold."
        ),
    ] = "auto",
    folds: Annotated[int, typer.Option(help="Folds for kfold.")] = 5,
    val_fraction: Annotated[
        float, typer.Option(help="Share of training patients for validation.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for splits, draws and training.")] = 42,
    shots: Annotated[
        list[str] | None, typer.Option(help="Few-shot k values, e.g. 2,4,8,16,32.")
    ] = None,
    repeats: Annotated[int, typer.Option(help="Few-shot draws per k.")] = 5,
    per_center: Annotated[
        bool, typer.Option("--per-center", help="Draw k per class in every centre.")
    ] = False,
    splits_file: Annotated[
        Path | None, typer.Option("--splits", help="Use this splits JSON.")
    ] = None,
    runs: Annotated[Path, typer.Option("--runs", help="Root of the run tree.")] = Path("runs"),
    force: Annotated[
        bool,
        typer.Option("--force", help="Recompute finished runs (old ones are kept in .replaced/)."),
    ] = False,
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="Training preset (PEFT/FFT): default, ruffini2025 (the reference study's "
            "schedule), demo, or a <name>.yaml in $PROGBENCH_TRAINING_DIR. The flags below "
            "override it.",
        ),
    ] = "default",
    device: Annotated[
        str | None,
        typer.Option("--device", help="auto | cpu | cuda. auto picks CUDA." + _dflt("device")),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype", help="auto | fp32 | bf16. auto: bf16 on CUDA, fp32 on CPU." + _dflt("dtype")
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="Images per step." + _dflt("batch_size", " or per task")),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Maximum epochs (PEFT/FFT)." + _dflt("epochs"))
    ] = None,
    accumulate: Annotated[
        int | None,
        typer.Option(help="Gradient accumulation steps (PEFT/FFT)." + _dflt("accumulate")),
    ] = None,
    lr_backbone: Annotated[
        float | None,
        typer.Option("--lr-backbone", help="Backbone/adapter lr. Default: 1e-5 FFT, 1e-4 PEFT."),
    ] = None,
    lr_head: Annotated[
        float | None,
        typer.Option(
            "--lr-head", help="Head lr. Default: chosen on validation from 1e-2,1e-3,1e-4."
        ),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="Early-stopping patience in epochs (PEFT/FFT)." + _dflt("patience")),
    ] = None,
    min_epochs: Annotated[
        int | None,
        typer.Option(
            "--min-epochs",
            help="Early-stopping patience counts from this epoch at the earliest."
            + _dflt("min_epochs"),
        ),
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option(
            "--eval-every", help="Validate every N epochs (PEFT/FFT)." + _dflt("eval_every")
        ),
    ] = None,
    min_lr: Annotated[
        float | None, typer.Option("--min-lr", help="Floor of the lr schedule." + _dflt("min_lr"))
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option(
            "--augment/--no-augment", help="On-device CXR-safe augmentation." + _dflt("augment")
        ),
    ] = None,
    compile_model: Annotated[
        bool | None, typer.Option("--compile", help="torch.compile the model (PEFT/FFT).")
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="Side of the image store." + _dflt("image_size")),
    ] = None,
    probe: Annotated[
        str,
        typer.Option(
            "--probe",
            help="LP probe preset (configs/probes/*.yaml): default (lbfgs over L2 strength, "
            "cls1), variants (lbfgs over the study's feature variants) or reference (the "
            "study's head-lr grid 1e-2,1e-3,1e-4 with Adam over its feature variants).",
        ),
    ] = "default",
    input_size: Annotated[
        int | None,
        typer.Option(
            "--input-size", help="Model input side (PEFT/FFT; CNNs only). Default: the backbone's."
        ),
    ] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option(
            "--weight-decay", help="AdamW weight decay (PEFT/FFT)." + _dflt("weight_decay")
        ),
    ] = None,
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
    from progbench.data.fewshot import parse_shots
    from progbench.train.pipeline import SplitRequest, TrainRequest, run_train
    from progbench.train.presets import resolve_training

    use_weights_dir(weights_dir)
    t = load_task_from_options(task, manifest, outcome, positive, negative)
    given = {
        "device": device,
        "dtype": dtype,
        "batch_size": batch_size,
        "epochs": epochs,
        "accumulate": accumulate,
        "lr_backbone": lr_backbone,
        "lr_head": lr_head,
        "patience": patience,
        "min_epochs": min_epochs,
        "eval_every": eval_every,
        "min_lr": min_lr,
        "augment": augment,
        "compile": compile_model,
        "image_size": image_size,
        "input_size": input_size,
        "weight_decay": weight_decay,
        "cache_dir": cache_dir,
    }
    options = resolve_training(
        preset, t.name, {k: v for k, v in given.items() if v is not None}, "the command line"
    )
    shot_list = split_list(shots)
    request = TrainRequest(
        task=t,
        backbone=backbone,
        strategy=strategy,
        weights=weights,
        splits=SplitRequest(
            scheme=scheme,  # type: ignore[arg-type]
            folds=folds,
            val_fraction=val_fraction,
            seed=seed,
            shots=tuple(parse_shots(",".join(shot_list))) if shot_list else (),
            repeats=repeats,
            per_center=per_center,
            splits_file=splits_file,
        ),
        runs_root=runs,
        force=force,
        probe=probe,
        options=options,
    )
    summary = run_train(request, progress)
    for note in summary.notes:
        console.print(note)
    console.print(
        f"{len(summary.written)} run(s) written, {len(summary.skipped)} already finished, "
        f"in {summary.seconds:.1f} s; splits: {summary.splits_file}",
        soft_wrap=True,
    )
    print_wide(summary_table(f"{summary.cell_root} (test split)", summary.groups))
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

    Writes image_id, p_pos (and y_true when a manifest holds the run's outcome column).

    Example: [bold]progbench predict runs/severity/kfold/resnet18/lora-r8/full/fold-0 new/manifest.csv --out preds.csv[/]
    """
    from progbench.atomic import atomic_write_with
    from progbench.predict import PredictOptions, predict_run

    refuse_existing(out, force)
    use_weights_dir(weights_dir)
    opts = PredictOptions(device, dtype, batch_size, weights, image_size, cache_dir)
    preds = predict_run(run_dir, images, opts)
    atomic_write_with(out, lambda tmp: preds.to_csv(tmp, index=False))
    console.print(f"wrote {len(preds)} predictions to {out}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    command(app, train)
    command(app, predict)
