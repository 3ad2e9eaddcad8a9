"""`progbench weights`: fetch pretrained weights where there is a network, list a weights folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from progbench.commands.app import command, group
from progbench.commands.options import split_list
from progbench.commands.output import console, print_wide
from progbench.commands.render import simple_table

app = group("Fetch pretrained weights for machines without a network, and list a weights folder.")

ToOpt = Annotated[
    Path | None,
    typer.Option(
        "--to", help="Weights folder. Default: $PROGBENCH_WEIGHTS_DIR, else <cache root>/weights."
    ),
]


def _size(n: int) -> str:
    """Decimal units, as disk and download sizes are usually given."""
    x, unit = float(n), "B"
    for bigger in ("KB", "MB", "GB"):
        if x < 1000:
            break
        x, unit = x / 1000, bigger
    return f"{n} B" if unit == "B" else f"{x:.1f} {unit}"


def weights_fetch(
    backbones: Annotated[
        list[str],
        typer.Argument(help="Backbone names (comma-separated or several), or all, cnn, fm."),
    ],
    to: ToOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch again and replace folders already there.")
    ] = False,
) -> None:
    """Download pretrained weights, with each library's own downloader, into one folder: one
    sub-folder per backbone in the layout --weights PATH reads, and every file's sha256 and size
    in DIR/weights.json.

    Run it where there is a network (a login node), copy DIR to the machines without one, and
    set PROGBENCH_WEIGHTS_DIR=DIR there: --weights pretrained then reads the local copy and
    never touches the network. A backbone already in DIR and matching weights.json is kept.

    Example: [bold]progbench weights fetch dinov2-s resnet18 --to /shared/progbench-weights[/]
    """
    from progbench.models.weights import fetch_weights

    def started(name: str) -> None:
        console.print(f"fetching {name} ...", highlight=False)

    results = fetch_weights(split_list(backbones), to, force=force, on_start=started)
    for r in results:
        verb = "kept (already there, verified)" if r.status == "present" else "fetched"
        console.print(f"{verb} {r.backbone}: {r.files} files, {_size(r.size)}", highlight=False)
    if results:
        root = results[0].path.parent
        console.print(f"weights folder: {root}", soft_wrap=True, highlight=False)
        console.print(
            f"copy it to the machine without a network and set PROGBENCH_WEIGHTS_DIR={root}",
            soft_wrap=True,
            highlight=False,
        )


_SHA = {
    "ok": "verified",
    "changed": "CHANGED",
    "unrecorded": "unrecorded",
    "unchecked": "not checked",
    "missing": "—",
}


def weights_ls(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="Weights folder. Default: $PROGBENCH_WEIGHTS_DIR, else <cache root>/weights."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="Compare file sizes only; do not read every file.")
    ] = False,
) -> None:
    """List every backbone of the registry: present or missing in the weights folder, its size,
    and each file checked against the sha256 recorded in weights.json.

    Exits non-zero when a folder differs from weights.json.

    Example: [bold]progbench weights ls /shared/progbench-weights[/]
    """
    import json

    from progbench.errors import WeightsError
    from progbench.models.weights import default_weights_dir, weights_status

    root = directory if directory is not None else default_weights_dir()
    rows = weights_status(root, verify=not quick)
    if as_json:
        typer.echo(
            json.dumps({"folder": str(root), "backbones": [r.to_json() for r in rows]}, indent=2)
        )
    else:
        where = f"weights folder: {root}" + ("" if root.is_dir() else " (does not exist yet)")
        console.print(where, soft_wrap=True, highlight=False)
        table = simple_table(
            None,
            ("backbone", "library", "status", "size", "sha256", "problems"),
            [
                (
                    r.backbone,
                    r.library,
                    "present" if r.present else "missing",
                    _size(r.size) if r.present else "—",
                    _SHA[r.state],
                    "; ".join(r.problems),
                )
                for r in rows
            ],
            right=("size",),
        )
        print_wide(table)
    bad = [r.backbone for r in rows if r.state in ("changed", "unrecorded")]
    if bad:
        raise WeightsError(
            f"{len(bad)} backbone folder(s) in {root} differ from weights.json: {', '.join(bad)}",
            "Copy them again from the machine that fetched them, or run `progbench weights fetch "
            f"NAME --to {root} --force`.",
        )


def register(root: typer.Typer) -> None:
    command(app, weights_fetch, "fetch")
    command(app, weights_ls, "ls")
    root.add_typer(app, name="weights")
