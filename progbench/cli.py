"""The progbench command line. Thin: parse options, call one library function, print with rich.

Library errors (ProgbenchError) are printed as one message without a traceback, unless
`--debug` is given, and the process exits non-zero.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from progbench import __version__
from progbench.errors import ProgbenchError

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="progbench",
    help="Benchmark how to adapt pretrained image backbones to small, imbalanced prognosis tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
cache_app = typer.Typer(help="Build and manage image and feature stores.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        console.print(f"progbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = None,
) -> None:
    _state["debug"] = debug


# ---------------------------------------------------------------- commands: data (synth, cache images, splits, demo)

TaskArg = Annotated[
    Path | None,
    typer.Argument(
        help="Task YAML (or, for commands that need no outcome, a manifest .csv/.parquet)."
    ),
]
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
        "--negative", help="Negative value(s); only needed for columns with more than two values."
    ),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", help="Store root. Default: $PROGBENCH_CACHE, else ~/.cache/progbench."
    ),
]


def _load_task(
    task: Path | None,
    manifest: Path | None,
    outcome: str | None,
    positive: str | None,
    negative: list[str] | None = None,
):
    from progbench.data.manifest import load_task

    return load_task(task, manifest=manifest, outcome=outcome, positive=positive, negative=negative)


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar driven by `callback(done, total)`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        tid = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(tid, completed=done, total=total)

        yield update


@app.command()
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
    console.print(
        f"wrote {summary.n_images} images of {summary.n_patients} patients to {out}\n"
        f"manifest: {out / 'manifest.csv'}\ntasks: {', '.join(str(p) for p in sorted((out / 'tasks').glob('*.yaml')))}"
    )


@cache_app.command("images")
def cache_images(
    source: Annotated[Path, typer.Argument(help="Task YAML or manifest (.csv/.parquet).")],
    size: Annotated[int, typer.Option(help="Side of the square stored images, in pixels.")] = 224,
    crop: Annotated[
        bool, typer.Option("--crop/--no-crop", help="Crop to the box_* columns when present.")
    ] = True,
    workers: Annotated[
        int | None, typer.Option(help="Decoding processes. Default: CPU count, at most 8.")
    ] = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Decode every image once into a uint8 Zarr image store; resumes after an interruption.

    Example: [bold]progbench cache images cohort/manifest.csv --size 224[/]
    """
    from progbench.data.imagestore import ImageStoreParams, build_image_store

    manifest = _manifest_of(source)
    with _progress("decoding images") as update:
        result = build_image_store(
            manifest, ImageStoreParams(size=size, crop=crop), cache_dir, workers, update
        )
    verb = "reused" if result.computed == 0 else f"decoded {result.computed} images into"
    console.print(f"{verb} image store ({result.n_images} images)")
    console.print(str(result.path), soft_wrap=True)


def _manifest_of(source: Path):
    from progbench.config import load_task_yaml
    from progbench.data.manifest import load_manifest

    if source.suffix.lower() in (".yaml", ".yml"):
        return load_manifest(load_task_yaml(source).manifest)
    return load_manifest(source)


@app.command()
def splits(
    task: TaskArg = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the splits JSON.")] = Path(
        "splits.json"
    ),
    scheme: Annotated[str, typer.Option(help="loco | kfold | holdout.")] = "kfold",
    folds: Annotated[int, typer.Option(help="Number of folds for kfold.")] = 5,
    val_fraction: Annotated[
        float, typer.Option(help="Share of training patients held out for validation.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for folds and draws.")] = 42,
    shots: Annotated[str | None, typer.Option(help="Few-shot k values, e.g. 2,4,8,16,32.")] = None,
    repeats: Annotated[int, typer.Option(help="Few-shot draws per k.")] = 5,
    per_center: Annotated[
        bool, typer.Option("--per-center", help="Draw k per class in every centre.")
    ] = False,
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
    from progbench.data.splits import make_splits, write_splits
    from progbench.errors import ConfigError

    if out.exists() and not force:
        raise ConfigError(f"{out} exists", "Pass --force to overwrite it, or choose another --out.")
    t = _load_task(task, manifest, outcome, positive, negative)
    result = make_splits(t, scheme, folds=folds, val_fraction=val_fraction, seed=seed)  # type: ignore[arg-type]
    if shots:
        result = add_fewshot(result, t, parse_shots(shots), repeats, per_center)
    write_splits(result, out)
    console.print(_splits_table(t, result))
    console.print(f"wrote {out}")


def _splits_table(task, result) -> Table:
    from progbench.data.summary import split_summary

    title = f"{task.name}: {result.scheme} splits (seed {result.seed})"
    return _fold_table(title, split_summary(task, result))


FOLD_COLUMNS = (
    "fold",
    "test centre",
    "train img/pat",
    "val img/pat",
    "test img/pat",
    "test pos %",
    "few-shot",
)


def _fold_table(title: str, rows: list[tuple[object, ...]]) -> Table:
    table = Table(title=title)
    for col in FOLD_COLUMNS:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    return table


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the demo cohort, stores and runs.")
    ] = Path("demo-output"),
) -> None:
    """Run every stage that exists end to end on a synthetic cohort (a few minutes on 2 CPU cores).

    Rerunning reuses every finished piece.

    Example: [bold]progbench demo --out demo-output[/]
    """
    import time

    from progbench.demo import run_demo

    start = time.perf_counter()
    result = run_demo(out, progress=_progress, log=lambda m: console.print(f"[bold cyan]{m}[/]"))
    console.print(_dict_table("cohort", result.cohort))
    console.print(f"image store: {result.image_store}", soft_wrap=True)
    for scheme, rows in result.split_rows.items():
        console.print(_fold_table(f"{scheme} splits ({result.splits[scheme]})", rows))
    if result.matrix is not None:
        _print_matrix(result.matrix)
    if result.features:
        feats = Table(title="feature stores (progbench cache ls)")
        for col in ("backbone", "key", "images", "computed now", "img/s"):
            feats.add_column(col, justify="left" if col in ("backbone", "key") else "right")
        for name, res in result.features.items():
            rate = f"{res.images_per_s:.1f}" if res.images_per_s else "-"
            feats.add_row(name, res.key, str(res.n_images), str(res.computed), rate)
        console.print(feats)
    if result.summary:
        _print_wide(
            group_summary_table(f"{result.runs}: test split, mean ± std over folds", result.summary)
        )
        console.print(f"CIs and the results table: [bold]progbench evaluate {result.runs}[/]")
    if result.report is not None:
        console.print(f"report: {result.report.html}", soft_wrap=True, highlight=False)
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    console.print(
        f"[green]demo finished in {time.perf_counter() - start:.0f} s[/] ({stages}); "
        f"outputs in {out}",
        soft_wrap=True,
    )


def _dict_table(title: str, data: dict) -> Table:
    table = Table(title=title, show_header=False)
    for k, v in data.items():
        table.add_row(str(k), str(v))
    return table


# ---------------------------------------------------------------- commands: models


def _print_wide(table: Table) -> None:
    """Print at the table's natural width even on a narrow or non-tty console (no squashing)."""
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update(width=10_000), table).maximum
    out = console if natural <= console.width else Console(width=natural)
    out.print(table)


@app.command()
def models(
    backbone: Annotated[
        str | None,
        typer.Option(
            "--backbone", help="Comma-separated backbone names (default: the study's 11)."
        ),
    ] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="Also list the tiny test twins.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown tables.")] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Recompute; ignore the cache.")
    ] = False,
) -> None:
    """The backbone x strategy matrix: % trainable parameters (2-way head included) or n/a.

    Counted on the full-size architectures built without weights (no download).
    Example: [bold]progbench models --backbone resnet18,dinov2-s[/]
    """
    import json

    from progbench.models.matrix import compute_matrix, to_markdown
    from progbench.models.registry import get_backbone_spec, list_backbones

    names = [b.strip() for b in backbone.split(",") if b.strip()] if backbone else None
    # Reading the registry validates every file; unknown names and invalid YAML fail here,
    # before a progress bar is drawn.
    for n in names or list_backbones(include_tiny=tiny):
        get_backbone_spec(n)
    if names is None and tiny:
        names = list_backbones(include_tiny=True)
    with _progress("counting parameters") as update:
        matrix = compute_matrix(names, use_cache=not refresh, progress=update)
    if as_json:
        typer.echo(json.dumps(matrix.to_json(), indent=2))
        return
    if markdown:
        typer.echo(to_markdown(matrix), nl=False)
        return
    _print_matrix(matrix)


def _print_matrix(matrix: Any) -> None:
    """The backbones table and the backbone x strategy grid of a ModelMatrix."""
    from progbench.models.matrix import format_percent, not_applicable_notes

    info = Table(title="Backbones")
    for col in ("backbone", "library", "source", "feature dim", "encoder params"):
        info.add_column(
            col, justify="right" if col in ("feature dim", "encoder params") else "left"
        )
    for b in matrix.backbones:
        info.add_row(
            b.name, b.library, b.source or "-", str(b.feature_dim), f"{b.encoder_params / 1e6:.2f}M"
        )
    _print_wide(info)
    grid = Table(title="Trainable parameters, % of the classifier (2-way head included)")
    grid.add_column("backbone")
    for s in matrix.strategies:
        grid.add_column(s, justify="right")
    for b in matrix.backbones:
        cells = [matrix.cell(b.name, s) for s in matrix.strategies]
        grid.add_row(
            b.name, *(format_percent(c.percent) if c.percent is not None else "n/a" for c in cells)
        )
    _print_wide(grid)
    for note in not_applicable_notes(matrix):
        console.print(f"[yellow]n/a:[/] {note}", highlight=False)
    for b in matrix.backbones:
        if b.encoder_params != b.expected_params:
            console.print(
                f"[yellow]warning:[/] {b.name}: the built encoder has {b.encoder_params} "
                f"parameters; its YAML says encoder_params: {b.expected_params}",
                highlight=False,
            )


# ---------------------------------------------------------------- commands: extract and cache stores

WeightsOpt = Annotated[
    str,
    typer.Option(
        "--weights",
        help="pretrained (hub/torchvision/open_clip), random (seeded init, for tests and dry runs), or a local PATH.",
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto | cpu | cuda. auto picks CUDA when present.")
]


@app.command()
def extract(
    source: Annotated[Path, typer.Argument(help="Task YAML or manifest (.csv/.parquet).")],
    backbone: Annotated[
        str, typer.Option("--backbone", help="Registry name, see `progbench models`.")
    ],
    weights: WeightsOpt = "pretrained",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 64,
    device: DeviceOpt = "auto",
    dtype: Annotated[
        str, typer.Option("--dtype", help="auto | fp32 | bf16. auto: bf16 on CUDA, fp32 on CPU.")
    ] = "auto",
    image_size: Annotated[int, typer.Option("--image-size", help="Side of the image store.")] = 224,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Write frozen-backbone features of every image into a content-keyed Zarr feature store.

    Builds the image store first if it is missing. Rerunning reuses a complete store and resumes
    an interrupted one.

    Example: [bold]progbench extract cohort/manifest.csv --backbone resnet18 --weights random[/]
    """
    from progbench.data.imagestore import ImageStoreParams
    from progbench.extract.features import extract_features

    manifest = _manifest_of(source)
    with _progress(f"extracting {backbone}") as update:
        result = extract_features(
            manifest,
            backbone,
            weights=weights,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            cache_dir=cache_dir,
            image_params=ImageStoreParams(size=image_size),
            progress=update,
        )
    if result.computed == 0:
        console.print(f"reused complete feature store ({result.n_images} images)")
    else:
        console.print(
            f"extracted {result.computed} images in {result.seconds:.1f} s ({result.images_per_s:.1f} img/s)"
        )
    console.print(str(result.path), soft_wrap=True)


@cache_app.command("ls")
def cache_ls(
    cache_dir: CacheDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List image and feature stores.

    Example: [bold]progbench cache ls[/]
    """
    import json

    from progbench.cache.featurestore import list_stores

    stores = list_stores(cache_dir)
    if as_json:
        console.print_json(json.dumps(stores))
        return
    table = Table(title="stores")
    for col in ("kind", "key", "backbone", "n", "dim/size", "complete", "MB", "created"):
        table.add_column(col)
    for s in stores:
        table.add_row(
            s["kind"],
            s["key"],
            str(s["backbone"]),
            str(s["n"]),
            str(s["dim"]),
            "yes" if s["complete"] else "[red]no[/]",
            str(s["mb"]),
            str(s["created"]),
        )
    console.print(table)


@cache_app.command("info")
def cache_info(
    key: Annotated[str, typer.Argument(help="Store key or a unique prefix of it.")],
    cache_dir: CacheDirOpt = None,
) -> None:
    """Print a store's provenance (its attributes) as JSON.

    Example: [bold]progbench cache info 3fa2[/]
    """
    import json

    import zarr

    from progbench.cache.featurestore import find_store

    path = find_store(key, cache_dir)
    console.print(str(path), soft_wrap=True)
    console.print_json(json.dumps(dict(zarr.open_group(path, mode="r").attrs), default=str))


@cache_app.command("verify")
def cache_verify(
    key: Annotated[
        str | None, typer.Argument(help="Store key or prefix; all stores when omitted.")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Check image ids against this manifest.")
    ] = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Check stores for incomplete builds, missing or corrupt chunks and image-id mismatches.

    Exits non-zero when any store has a problem.

    Example: [bold]progbench cache verify[/]
    """
    from progbench.cache.featurestore import find_store, list_stores
    from progbench.cache.verify import verify_store
    from progbench.errors import CacheError

    paths = (
        [find_store(key, cache_dir)] if key else [Path(s["path"]) for s in list_stores(cache_dir)]
    )
    bad = 0
    for path in paths:
        report = verify_store(path, manifest)
        if report.ok:
            console.print(f"[green]ok[/]   {report.kind:8} {path.stem}")
        else:
            bad += 1
            console.print(f"[red]FAIL[/] {report.kind:8} {path.stem}")
            for p in report.problems:
                console.print(f"       - {p}")
    if bad:
        raise CacheError(
            f"{bad} of {len(paths)} store(s) failed verification",
            "Rerun the command that built an incomplete store, or remove a corrupt one with `progbench cache rm KEY`.",
        )


@cache_app.command("rm")
def cache_rm(
    key: Annotated[str, typer.Argument(help="Store key or a unique prefix of it.")],
    cache_dir: CacheDirOpt = None,
) -> None:
    """Remove one store.

    Example: [bold]progbench cache rm 3fa2[/]
    """
    from progbench.cache.featurestore import find_store, remove_store

    path = find_store(key, cache_dir)
    remove_store(path)
    console.print(f"removed {path}")


@cache_app.command("export")
def cache_export(
    key: Annotated[str, typer.Argument(help="Feature store key or a unique prefix of it.")],
    out: Annotated[Path, typer.Option("--out", help="Output file.")],
    fmt: Annotated[str, typer.Option("--format", help="h5 | npz.")] = "npz",
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Export a feature store (features, image_id, provenance) as HDF5 or npz for other tools.

    Example: [bold]progbench cache export 3fa2 --format h5 --out features.h5[/]
    """
    from progbench.cache.featurestore import find_store
    from progbench.cache.verify import export_store
    from progbench.errors import ConfigError

    if out.exists() and not force:
        raise ConfigError(f"{out} exists", "Pass --force to overwrite it, or choose another --out.")
    export_store(find_store(key, cache_dir), fmt, out)
    console.print(f"wrote {out}")


# ---------------------------------------------------------------- commands: train and predict


@app.command()
def train(
    task: TaskArg = None,
    backbone: Annotated[
        str, typer.Option("--backbone", help="Registry name, see `progbench models`.")
    ] = "resnet18",
    strategy: Annotated[
        str,
        typer.Option("--strategy", help="lp | fft | lora-r4/8/16 | vera-r4/8/16 | bitfit | ia3."),
    ] = "lp",
    weights: WeightsOpt = "pretrained",
    scheme: Annotated[str, typer.Option(help="loco | kfold | holdout.")] = "kfold",
    folds: Annotated[int, typer.Option(help="Folds for kfold.")] = 5,
    val_fraction: Annotated[
        float, typer.Option(help="Share of training patients for validation.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for splits, draws and training.")] = 42,
    shots: Annotated[str | None, typer.Option(help="Few-shot k values, e.g. 2,4,8,16,32.")] = None,
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
    device: DeviceOpt = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto | fp32 | bf16.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per step.")] = 32,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (PEFT/FFT).")] = 100,
    accumulate: Annotated[int, typer.Option(help="Gradient accumulation steps (PEFT/FFT).")] = 1,
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
        int, typer.Option(help="Early-stopping patience in epochs (PEFT/FFT).")
    ] = 100,
    eval_every: Annotated[
        int, typer.Option("--eval-every", help="Validate every N epochs (PEFT/FFT).")
    ] = 3,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="On-device CXR-safe augmentation.")
    ] = True,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (PEFT/FFT).")
    ] = False,
    image_size: Annotated[int, typer.Option("--image-size", help="Side of the image store.")] = 224,
    probe: Annotated[
        str,
        typer.Option(
            "--probe",
            help="LP solver preset: default (lbfgs over L2 strength) or reference (the study's "
            "head-lr grid 1e-2,1e-3,1e-4 with Adam and early stopping).",
        ),
    ] = "default",
    input_size: Annotated[
        int | None,
        typer.Option(
            "--input-size", help="Model input side (PEFT/FFT; CNNs only). Default: the backbone's."
        ),
    ] = None,
    weight_decay: Annotated[
        float, typer.Option("--weight-decay", help="AdamW weight decay (PEFT/FFT).")
    ] = 0.0,
    cache_dir: CacheDirOpt = None,
    manifest: ManifestOpt = None,
    outcome: OutcomeOpt = None,
    positive: PositiveOpt = None,
    negative: NegativeOpt = None,
) -> None:
    """Train one strategy on one backbone over every fold (and few-shot draw), then score the runs.

    lp trains linear probes on cached features (extracting them first if needed); the other
    strategies stream images through the model. Finished runs are skipped; a killed command
    resumes where it stopped.

    Examples:
      [bold]progbench train cohort/tasks/severity.yaml --backbone resnet18 --weights random --strategy lp --shots 2,4,8 --repeats 5[/]
      [bold]progbench train cohort/tasks/severity.yaml --backbone dinov2-s --strategy lora-r8 --scheme loco[/]
    """
    from progbench.data.fewshot import parse_shots
    from progbench.train.pipeline import SplitRequest, train_finetune, train_lp

    t = _load_task(task, manifest, outcome, positive, negative)
    req = SplitRequest(
        scheme=scheme,  # type: ignore[arg-type]
        folds=folds,
        val_fraction=val_fraction,
        seed=seed,
        shots=tuple(parse_shots(shots)) if shots else (),
        repeats=repeats,
        per_center=per_center,
        splits_file=splits_file,
    )
    if strategy == "lp":
        summary = train_lp(
            t,
            backbone,
            weights,
            req,
            runs,
            force,
            device,
            dtype,
            batch_size,
            cache_dir,
            image_size,
            _progress,
            probe,
        )
    else:
        from progbench.train.options import FinetuneOptions

        opts = FinetuneOptions(
            epochs=epochs,
            batch_size=batch_size,
            accumulate=accumulate,
            lr_backbone=lr_backbone,
            lr_head=lr_head,
            patience=patience,
            eval_every=eval_every,
            augment=augment,
            compile=compile_model,
            device=device,
            dtype=dtype,
            image_size=image_size,
            input_size=input_size,
            weight_decay=weight_decay,
            cache_dir=cache_dir,
        )
        summary = train_finetune(t, backbone, weights, strategy, req, runs, opts, force, _progress)
    for note in summary.notes:
        console.print(note)
    console.print(
        f"{len(summary.written)} run(s) written, {len(summary.skipped)} already finished, "
        f"in {summary.seconds:.1f} s; splits: {summary.splits_file}"
    )
    _print_group_summary(runs / t.name / backbone / strategy)


@app.command()
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
    dtype: Annotated[str, typer.Option("--dtype", help="auto | fp32 | bf16.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward.")] = 64,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Override the run's image-store side.")
    ] = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Apply a trained run (adapter, BitFit, FFT, or an LP probe on the frozen backbone) to images.

    Writes image_id, p_pos (and y_true when a manifest holds the run's outcome column).

    Example: [bold]progbench predict runs/severity/resnet18/lora-r8/full/fold-0 new/manifest.csv --out preds.csv[/]
    """
    from progbench.atomic import atomic_write_with
    from progbench.predict import PredictOptions, predict_run

    opts = PredictOptions(device, dtype, batch_size, weights, image_size, cache_dir)
    preds = predict_run(run_dir, images, opts)
    atomic_write_with(out, lambda tmp: preds.to_csv(tmp, index=False))
    console.print(f"wrote {len(preds)} predictions to {out}", soft_wrap=True)


def _pm(entry: dict, scale: float = 1.0) -> str:
    if entry.get("mean") is None:
        return "n/a"
    std = entry.get("std")
    return (
        f"{entry['mean'] * scale:.3f} ± {std * scale:.3f}"
        if std is not None
        else f"{entry['mean'] * scale:.3f}"
    )


def group_summary_table(title: str, records: list[dict]) -> Table:
    """MCC and PR-AUC as mean ± std over folds, and the pooled MCC with its patient-bootstrap CI."""
    table = Table(title=title)
    for col in (
        "backbone",
        "strategy",
        "regime",
        "k",
        "MCC",
        "PR-AUC",
        "pooled MCC [CI]",
        "prevalence",
    ):
        table.add_column(col, justify="right")
    for r in records:
        mcc, ap = r["metrics"]["mcc"], r["metrics"]["pr_auc"]
        if mcc.get("pooled") is None:
            ci = "n/a"
        elif mcc.get("ci_low") is None:
            ci = f"{mcc['pooled']:.3f}"
        else:
            ci = f"{mcc['pooled']:.3f} [{mcc['ci_low']:.3f}, {mcc['ci_high']:.3f}]"
        prev = f"{r['prevalence']:.2f}" if r.get("prevalence") is not None else ""
        table.add_row(
            str(r["backbone"]),
            str(r["strategy"]),
            str(r["regime"]),
            str(r["shots"] or "all"),
            _pm(mcc),
            _pm(ap),
            ci,
            prev,
        )
    return table


def _print_group_summary(root: Path) -> None:
    """Score the runs under `root` with the shared evaluator and print mean ± std over folds.

    No bootstrap here (it takes seconds per group): `progbench evaluate` adds the CIs and writes
    the results table.
    """
    from progbench.evaluate.results import evaluate_tree, summarise

    ev = evaluate_tree(root, n_boot=0, cache=False)
    console.print(group_summary_table(f"{root} (test split)", summarise(ev.results)))
    console.print(f"CIs and results table: [bold]progbench evaluate {root}[/]")


# ---------------------------------------------------------------- commands: evaluate


def _evaluate_tree(
    path: Path, threshold: str, n_boot: int, seed: int, jobs: int, show_progress: bool = True
) -> Any:
    """`evaluate_tree` with a progress bar (none when stdout must stay pure JSON)."""
    from progbench.evaluate.results import evaluate_tree

    if not show_progress:
        return evaluate_tree(path, threshold, n_boot=n_boot, seed=seed, n_jobs=jobs)
    with _progress("evaluating") as update:
        return evaluate_tree(
            path,
            threshold,
            n_boot=n_boot,
            seed=seed,
            n_jobs=jobs,
            progress=lambda _stage, done, total: update(done, total),
        )


def _fmt(x: object, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _metrics_table(title: str, by_split: dict[str, dict[str, object]]) -> Table:
    """Rows are metrics, columns are splits; '—' marks an undefined metric."""
    from progbench.evaluate import RESULT_KEYS

    table = Table(title=title)
    table.add_column("metric")
    splits = [s for s in ("val", "test") if s in by_split]
    for split in splits:
        table.add_column(split, justify="right")
    for key in RESULT_KEYS:
        label = "pr_auc (baseline = prevalence)" if key == "pr_auc" else key
        table.add_row(label, *[_fmt(by_split[s].get(key)) for s in splits])
    table.add_row("threshold rule", *[str(by_split[s].get("threshold_rule")) for s in splits])
    return table


def _summary_table(title: str, groups: list[dict]) -> Table:
    table = Table(title=title)
    for col in ("task", "backbone", "strategy", "regime", "k", "folds"):
        table.add_column(col)
    for col in ("MCC mean±std", "MCC pooled [95% CI]", "PR-AUC mean±std (base)", "AUROC mean±std"):
        table.add_column(col, justify="right")

    def mean_std(m: dict) -> str:
        return f"{_fmt(m['mean'])} ± {_fmt(m['std'])}"

    for g in groups:
        mcc, ap, auc = (g["metrics"][k] for k in ("mcc", "pr_auc", "auroc"))
        table.add_row(
            g["task"],
            g["backbone"],
            g["strategy"],
            g["regime"],
            _fmt(g["shots"]),
            _fmt(mcc["n_folds"]),
            mean_std(mcc),
            f"{_fmt(mcc['pooled'])} [{_fmt(mcc['ci_low'])}, {_fmt(mcc['ci_high'])}]",
            f"{mean_std(ap)} ({_fmt(g['prevalence'], 2)})",
            mean_std(auc),
        )
    return table


@app.command()
def evaluate(
    path: Annotated[
        Path,
        typer.Argument(
            help="A run directory, a tree of runs, or a predictions .parquet/.csv file."
        ),
    ],
    threshold: Annotated[
        str,
        typer.Option(
            help="Decision threshold: fixed:<t> (t in [0, 1]), val-mcc or val-youden "
            "(chosen on the validation rows only, then applied to test)."
        ),
    ] = "fixed:0.5",
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print machine-readable metrics (JSON) instead of tables."),
    ] = False,
    n_boot: Annotated[
        int,
        typer.Option("--n-boot", help="Bootstrap replicates (patients resampled) for pooled CIs."),
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 42,
    jobs: Annotated[int, typer.Option(help="Processes for aggregating groups of runs.")] = 1,
) -> None:
    """Score predictions; for a tree of runs, also aggregate and write the results table.

    A file needs columns image_id, patient_id, split (val|test), y_true (0/1), p_pos.
    A tree gets results.parquet and results.csv: one row per (run or aggregate) x metric.
    Incomplete runs (no DONE) are named and skipped. Definitions: docs/METHODOLOGY.md, 6.

    Examples: [bold]progbench evaluate predictions.csv --json[/]
              [bold]progbench evaluate runs/ --threshold val-mcc[/]
    """
    import json

    from progbench.errors import RunError
    from progbench.evaluate import evaluate_predictions
    from progbench.evaluate.results import summarise, write_results
    from progbench.runs import is_run_dir, read_predictions_file, read_run

    def emit(obj: object) -> None:
        typer.echo(json.dumps(obj, indent=2, allow_nan=False))

    if path.is_file() or is_run_dir(path):
        if path.is_file():
            metrics = evaluate_predictions(read_predictions_file(path), threshold)
        else:
            metrics = evaluate_predictions(read_run(path).predictions, threshold)
        ordered = {s: metrics[s] for s in ("test", "val") if s in metrics}
        if json_out:
            emit(ordered)
        else:
            console.print(_metrics_table(str(path), metrics))
        return
    if not path.is_dir():
        raise RunError(
            f"not found: {path}", "Give a run directory, a tree of runs or a predictions file."
        )

    result = _evaluate_tree(path, threshold, n_boot, seed, jobs, show_progress=not json_out)
    if result.incomplete:
        err_console.print(
            f"[yellow]warning:[/] skipped {len(result.incomplete)} incomplete run(s) (no DONE):",
            highlight=False,
        )
        for p in result.incomplete:
            err_console.print(f"  {p}", highlight=False, soft_wrap=True)
    parquet, csv = write_results(result.results, path)
    groups = summarise(result.results)
    if json_out:
        emit(
            {
                "results": {"parquet": str(parquet), "csv": str(csv)},
                "runs": len(result.done),
                "incomplete": [str(p) for p in result.incomplete],
                "threshold": threshold,
                "groups": groups,
            }
        )
        return
    console.print(_summary_table(f"{path}: {len(result.done)} runs, threshold {threshold}", groups))
    console.print(f"wrote {parquet} and {csv} ({len(result.results)} rows)", soft_wrap=True)


# ---------------------------------------------------------------- commands: report


@app.command()
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
        str,
        typer.Option(
            help="mcc | pr_auc | auroc | balanced_accuracy | sensitivity | specificity | f1 | brier."
        ),
    ] = "mcc",
    threshold: Annotated[
        str,
        typer.Option(
            help="Threshold policy when evaluating a tree: fixed:<t>, val-mcc or val-youden."
        ),
    ] = "fixed:0.5",
    n_boot: Annotated[
        int, typer.Option("--n-boot", help="Bootstrap replicates for pooled CIs.")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 42,
    jobs: Annotated[int, typer.Option(help="Processes for aggregating groups of runs.")] = 1,
) -> None:
    """Tables, significance tests, figures and a self-contained report.html from a run tree.

    Evaluates the tree as `progbench evaluate` does (cached), then writes the report: the same
    runs give byte-identical files; new runs update it. Definitions: docs/METHODOLOGY.md, 7.

    Example: [bold]progbench report runs/ --out report/ --metric mcc[/]
    """
    from progbench.report import build_report, collect_run_versions
    from progbench.report.data import check_metric, read_results

    check_metric(metric)
    run_versions = None
    if runs.is_file():
        results = read_results(runs)
    else:
        evaluated = _evaluate_tree(runs, threshold, n_boot, seed, jobs)
        if evaluated.incomplete:
            err_console.print(
                f"[yellow]warning:[/] skipped {len(evaluated.incomplete)} incomplete run(s) (no DONE)",
                highlight=False,
            )
        results = evaluated.results
        run_versions = collect_run_versions(runs)
    with _progress("writing the report") as update:
        result = build_report(
            results, out, metric=metric, run_versions=run_versions, progress=update
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"wrote {len(result.files)} files to {result.out_dir}", soft_wrap=True)
    console.print(f"report: {result.html}", soft_wrap=True, highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Typer handles usage errors (exit 2); we handle library errors."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv)
    except ProgbenchError as err:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {err.message}", highlight=False)
        if err.hint:
            err_console.print(f"[yellow]hint:[/] {err.hint}", highlight=False)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        err_console.print(
            "[red]interrupted[/]: finished work is kept; run the same command to resume."
        )
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
