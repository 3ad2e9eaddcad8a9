"""The progbench command line. Thin: parse options, call one library function, print with rich.

Library errors (ProgbenchError) are printed as one message without a traceback, unless
`--debug` is given, and the process exits non-zero.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

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
    for title, printable in result.sections:
        console.rule(title)
        console.print(printable)
    console.print(
        f"[green]demo finished in {time.perf_counter() - start:.0f} s[/]; outputs in {out}"
    )


def _dict_table(title: str, data: dict) -> Table:
    table = Table(title=title, show_header=False)
    for k, v in data.items():
        table.add_row(str(k), str(v))
    return table


# ---------------------------------------------------------------- commands: models

# ---------------------------------------------------------------- commands: extract and cache stores

# ---------------------------------------------------------------- commands: train and predict

# ---------------------------------------------------------------- commands: evaluate

# ---------------------------------------------------------------- commands: report


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
