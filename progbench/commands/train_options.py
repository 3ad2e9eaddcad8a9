"""`progbench train`'s options: the option aliases its signature uses and `TrainArgs`, the
options as given, typed, from which the train request is built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from progbench.commands.options import (
    BackboneOpt,
    CacheDirOpt,
    FoldsOpt,
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
    WeightsOpt,
)
from progbench.train.options import FinetuneOptions

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
