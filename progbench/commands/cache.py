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
    WeightsDirOpt,
    WeightsOpt,
    refuse_existing,
    use_weights_dir,
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
    equalize: Annotated[
        bool,
        typer.Option(
            "--equalize",
            help="Global histogram equalisation after decoding (the reference study's "
            "AIforCOVID conversion). Part of the store's key.",
        ),
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Decoding processes. Default: CPU count, at most 8.")
    ] = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Decode every image once into a uint8 Zarr image store; resumes after an interruption.

    Example: [bold]progbench cache images cohort/manifest.csv --size 224[/]
    """
    from progbench.cache.imagestore import ImageStoreParams, build_image_store

    manifest = _manifest_of(source)
    with progress("decoding images") as update:
        result = build_image_store(
            manifest,
            ImageStoreParams(size=size, crop=crop, equalize=equalize),
            cache_dir,
            workers,
            update,
        )
    if result.repaired:
        console.print(f"re-decoded {result.repaired} images whose chunks were missing")
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
    weights_dir: WeightsDirOpt = None,
) -> None:
    """Write frozen-backbone features of every image into a content-keyed Zarr feature store.

    Builds the image store first if it is missing. Rerunning reuses a complete store and resumes
    an interrupted one.

    Example: [bold]progbench extract cohort/manifest.csv --backbone resnet18 --weights random[/]
    """
    from progbench.cache.imagestore import ImageStoreParams
    from progbench.extract.features import extract_features
    from progbench.models.loaders import load_backbone

    use_weights_dir(weights_dir)
    manifest = _manifest_of(source)
    loaded = load_backbone(backbone, weights)  # missing weights fail before any image is decoded
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
            loaded=loaded,
        )
    if result.repaired:
        console.print(f"re-extracted {result.repaired} images whose chunks were missing or damaged")
    if result.computed == 0:
        console.print(f"reused complete feature store ({result.n_images} images)")
    else:
        console.print(
            f"extracted {result.computed} images in {result.seconds:.1f} s "
            f"({result.images_per_s:.1f} img/s)"
        )
    if result.dims:
        console.print(f"feature dim: {result.dims}", soft_wrap=True, highlight=False)
    console.print(str(result.path), soft_wrap=True)


def cache_ls(
    cache_dir: CacheDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List image and feature stores.

    Example: [bold]progbench cache ls[/]
    """
    import json

    from progbench.cache.listing import list_stores

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

    from progbench.cache.listing import find_store, store_attrs

    path = find_store(key, cache_dir)
    console.print(str(path), soft_wrap=True)
    typer.echo(json.dumps(store_attrs(path), indent=2, sort_keys=True, default=str))


def cache_verify(
    key: Annotated[
        str | None, typer.Argument(help="Store key or prefix; all stores when omitted.")
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest", help="Only the stores made from this manifest, checked against its ids."
        ),
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="Recompute the damaged or missing rows of each failing store."
        ),
    ] = False,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Check stores: incomplete builds, missing or damaged chunks, image-id mismatches.

    Every chunk is read and its checksum checked. Exits non-zero when a store has a problem
    (after --repair: one that could not be repaired).

    Example: [bold]progbench cache verify --manifest cohort/manifest.csv --repair[/]
    """
    from functools import partial

    from progbench.cache.listing import find_store, store_paths, stores_of_manifest
    from progbench.cache.verify import repair_store, verify_store
    from progbench.errors import CacheError
    from progbench.extract.rebuild import rebuild_store

    if key:
        paths = [find_store(key, cache_dir)]
    elif manifest is not None:
        paths = stores_of_manifest(manifest, cache_dir)
    else:
        paths = [p for _, p in store_paths(cache_dir)]
    bad = []
    with progress("verifying stores") as update:
        for i, path in enumerate(paths):
            report = verify_store(path, manifest)
            if not report.ok and repair and report.kind != "?":
                report = repair_store(path, report, partial(rebuild_store, cache_dir=cache_dir))
            update(i + 1, len(paths))
            _print_report(report, path)
            if not report.ok:
                bad.append(path)
    if bad:
        where = "" if cache_dir is None else f" --cache-dir {cache_dir}"
        repairs = "; ".join(f"progbench cache verify {p.stem} --repair{where}" for p in bad)
        raise CacheError(
            f"{len(bad)} of {len(paths)} store(s) failed verification",
            f"Repair (recomputes the damaged rows): {repairs}. Or remove: progbench cache rm "
            f"{' '.join(p.stem for p in bad)}{where}",
        )


def _print_report(report, path: Path) -> None:
    fixed = f" (repaired {report.repaired} rows)" if report.repaired else ""
    if report.ok:
        console.print(f"[green]ok[/]   {report.kind:8} {path.stem}{fixed}")
        return
    console.print(f"[red]FAIL[/] {report.kind:8} {path.stem}")
    for p in report.problems:
        console.print(f"       - {p}", highlight=False)


def cache_rm(
    keys: Annotated[list[str], typer.Argument(help="Store keys or unique prefixes of them.")],
    cache_dir: CacheDirOpt = None,
) -> None:
    """Remove one or more stores.

    Example: [bold]progbench cache rm 3fa2 91bc[/]
    """
    from progbench.cache.listing import find_store, remove_store

    paths = [find_store(k, cache_dir) for k in keys]  # every key resolves before any removal
    for path in paths:
        remove_store(path)
        console.print(f"removed {path}", soft_wrap=True)


def cache_prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
    ] = False,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Remove incomplete stores and stores nothing can use any more.

    Orphaned: an image store whose manifest is gone or changed, a feature store whose image
    store is gone. Stores being built right now are left alone.

    Example: [bold]progbench cache prune --dry-run[/]
    """
    from progbench.cache.listing import prune
    from progbench.commands.render import simple_table

    found = prune(cache_dir, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    print_wide(
        simple_table(
            f"{verb} {len(found)} store(s), {sum(c.mb for c in found):.1f} MB",
            ("kind", "key", "MB", "why"),
            [(c.kind, c.path.stem, c.mb, c.reason) for c in found],
            right=("MB",),
        )
    )


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
    from progbench.cache.export import export_store
    from progbench.cache.listing import find_store

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
    command(app, cache_prune, "prune")
    command(app, cache_export, "export")
    root.add_typer(app, name="cache")
