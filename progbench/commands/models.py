"""`progbench models`: the registry and its backbone x strategy parameter matrix."""

from __future__ import annotations

from typing import Annotated

import typer

from progbench.commands.app import command
from progbench.commands.options import split_list
from progbench.commands.output import console, print_wide, progress
from progbench.commands.render import matrix_tables


def models(
    backbone: Annotated[
        list[str] | None,
        typer.Option(
            "--backbone",
            help="Backbone names, comma-separated or repeated (default: the study's 11).",
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

    names = split_list(backbone) or None
    # Reading the registry validates every file; unknown names and invalid YAML fail here,
    # before a progress bar is drawn.
    for n in names or list_backbones(include_tiny=tiny):
        get_backbone_spec(n)
    if names is None and tiny:
        names = list_backbones(include_tiny=True)
    with progress("counting parameters") as update:
        matrix = compute_matrix(names, use_cache=not refresh, progress=update)
    if as_json:
        typer.echo(json.dumps(matrix.to_json(), indent=2))
        return
    if markdown:
        typer.echo(to_markdown(matrix), nl=False)
        return
    info, grid, notes = matrix_tables(matrix)
    print_wide(info)
    print_wide(grid)
    for note in notes:
        console.print(note, highlight=False)


def register(app: typer.Typer) -> None:
    command(app, models)
