"""Options shared by several commands, declared once.

Every list option takes comma-separated values, repeated flags, or both, the same way:
`--negative a,b`, `--negative a --negative b` and `--negative a,b --negative c` all work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def split_list(values: list[str] | str | None) -> list[str]:
    """Comma-separated and repeated values as one flat list, in order, blanks dropped."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else values
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


TaskArg = Annotated[
    Path | None,
    typer.Argument(help="Task YAML (or, for commands that need no outcome, a manifest)."),
]
SourceArg = Annotated[Path, typer.Argument(help="Task YAML or manifest (.csv/.parquet).")]
ManifestOpt = Annotated[
    Path | None, typer.Option("--manifest", help="Manifest file, instead of a task YAML.")
]
OutcomeOpt = Annotated[
    str | None, typer.Option("--outcome", help="Outcome column (with --manifest).")
]
PositiveOpt = Annotated[
    str | None, typer.Option("--positive", help="Value of the outcome column that is positive.")
]
NegativeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--negative",
        help="Negative value(s), comma-separated or repeated; only needed for columns with "
        "more than two values.",
    ),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", help="Store root. Default: $PROGBENCH_CACHE, else ~/.cache/progbench."
    ),
]
WeightsOpt = Annotated[
    str,
    typer.Option(
        "--weights",
        help="pretrained (hub/torchvision/open_clip), random (seeded init, for tests and dry "
        "runs), or a local PATH.",
    ),
]
WeightsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights-dir",
        help="Local pretrained weights (`progbench weights fetch --to DIR`) for --weights "
        "pretrained. Default: $PROGBENCH_WEIGHTS_DIR, else <cache root>/weights when it holds "
        "the backbone, else the library's own download.",
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto | cpu | cuda. auto picks CUDA when present.")
]
DtypeOpt = Annotated[
    str, typer.Option("--dtype", help="auto | fp32 | bf16. auto: bf16 on CUDA, fp32 on CPU.")
]
BackboneOpt = Annotated[
    str, typer.Option("--backbone", help="Registry name, see `progbench models`.")
]
SchemeOpt = Annotated[
    str,
    typer.Option(
        help="auto | loco | kfold | holdout. auto: LOCO when every centre holds both "
        "classes, else kfold."
    ),
]
FoldsOpt = Annotated[int, typer.Option(help="Folds for kfold.")]
ValFractionOpt = Annotated[float, typer.Option(help="Share of training patients for validation.")]
ShotsOpt = Annotated[list[str] | None, typer.Option(help="Few-shot k values, e.g. 2,4,8,16,32.")]
RepeatsOpt = Annotated[int, typer.Option(help="Few-shot draws per k.")]
PerCenterOpt = Annotated[
    bool, typer.Option("--per-center", help="Draw k per class in every centre.")
]
ImageSizeOpt = Annotated[int, typer.Option("--image-size", help="Side of the image store.")]
ForceOutOpt = Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")]


def load_task_from_options(
    task: Path | None,
    manifest: Path | None,
    outcome: str | None,
    positive: str | None,
    negative: list[str] | None = None,
):
    """The task named by a YAML argument or by --manifest/--outcome/--positive[/--negative]."""
    from progbench.data.manifest import load_task

    neg = split_list(negative) or None
    return load_task(task, manifest=manifest, outcome=outcome, positive=positive, negative=neg)


def refuse_existing(out: Path, force: bool) -> None:
    """Refuse to overwrite `out` unless --force (the same rule for every --out file)."""
    from progbench.errors import ConfigError

    if out.exists() and not force:
        raise ConfigError(f"{out} exists", "Pass --force to overwrite it, or choose another --out.")


def use_weights_dir(weights_dir: Path | None) -> None:
    """--weights-dir for this process and the workers it starts: every loader reads
    $PROGBENCH_WEIGHTS_DIR (progbench.models.weights.local_weights)."""
    if weights_dir is not None:
        from progbench.models.weights import WEIGHTS_DIR_ENV

        os.environ[WEIGHTS_DIR_ENV] = str(weights_dir.expanduser().resolve())
