"""Store commands: `extract` and the `cache` group (images, ls, info, verify, rm, export)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from progbench.commands.app import command, group
from progbench.commands.options import (
    BackboneOpt,
    CacheDirOpt,
    DeviceOpt,
    DtypeOpt,
    ForceOutOpt,
    ImageSizeOpt,
    SourceArg,
    WeightsOpt,
    refuse_existing,
)
from progbench.commands.output import console, print_wide, progress
from progbench.commands.render import stores_table

app = group("Build and manage image and feature stores.")


def _manifest_of(source: Path):
    from progbench.data.manifest import load_source_manifest

    return load_source_manifest(source)


def cache_images(
    source: SourceArg,
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
    with progress("decoding images") as update:
        result = build_image_store(
            manifest, ImageStoreParams(size=size, crop=crop), cache_dir, workers, update
        )
    verb = "reused" if result.computed == 0 else f"decoded {result.computed} images into"
    console.print(f"{verb} image store ({result.n_images} images)")
    console.print(str(result.path), soft_wrap=True)


def extract(
    source: SourceArg,
    backbone: BackboneOpt,
    weights: WeightsOpt = "pretrained",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 64,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    image_size: ImageSizeOpt = 224,
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
    with progress(f"extracting {backbone}") as update:
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
            f"extracted {result.computed} images in {result.seconds:.1f} s "
            f"({result.images_per_s:.1f} img/s)"
        )
    console.print(str(result.path), soft_wrap=True)


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
        typer.echo(json.dumps(stores, indent=2))
        return
    print_wide(stores_table(stores))


def cache_info(
    key: Annotated[str, typer.Argument(help="Store key or a unique prefix of it.")],
    cache_dir: CacheDirOpt = None,
) -> None:
    """Print a store's provenance (its attributes) as JSON.

    Example: [bold]progbench cache info 3fa2[/]
    """
    import json

    from progbench.cache.featurestore import find_store, store_attrs

    path = find_store(key, cache_dir)
    console.print(str(path), soft_wrap=True)
    typer.echo(json.dumps(store_attrs(path), indent=2, sort_keys=True, default=str))


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
            "Rerun the command that built an incomplete store, or remove a corrupt one with "
            "`progbench cache rm KEY`.",
        )


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


def cache_export(
    key: Annotated[str, typer.Argument(help="Feature store key or a unique prefix of it.")],
    out: Annotated[Path, typer.Option("--out", help="Output file.")],
    fmt: Annotated[str, typer.Option("--format", help="h5 | npz.")] = "npz",
    force: ForceOutOpt = False,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Export a feature store (features, image_id, provenance) as HDF5 or npz for other tools.

    Example: [bold]progbench cache export 3fa2 --format h5 --out features.h5[/]
    """
    from progbench.cache.featurestore import find_store
    from progbench.cache.verify import export_store

    refuse_existing(out, force)
    export_store(find_store(key, cache_dir), fmt, out)
    console.print(f"wrote {out}")


def register(root: typer.Typer) -> None:
    command(root, extract)
    command(app, cache_images, "images")
    command(app, cache_ls, "ls")
    command(app, cache_info, "info")
    command(app, cache_verify, "verify")
    command(app, cache_rm, "rm")
    command(app, cache_export, "export")
    root.add_typer(app, name="cache")
