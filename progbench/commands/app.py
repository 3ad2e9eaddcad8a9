"""Typer plumbing shared by every command group: one way to declare a group and register a
command, so help reads the same everywhere (flags show no `<bool>` type; docstring paragraphs
are reflowed to the terminal's width instead of keeping the source's line breaks)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    # typer vendors its own click (typer._click): its Context and Parameter are not click's,
    # and click itself is no dependency of progbench (nor of typer).
    from typer._click import Context, Parameter


def _untyped_flags(params: list[Parameter]) -> list[Parameter]:
    for p in params:
        if getattr(p, "is_flag", False) and getattr(p, "metavar", None) is None:
            p.metavar = ""  # a flag takes no value: show no type for it
    return params


class Command(TyperCommand):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _untyped_flags(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _untyped_flags(super().get_params(ctx))


def reflow(doc: str | None) -> str:
    """Join the lines of each paragraph; a paragraph starting with \\b keeps its lines."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split("\n")) for p in paragraphs)


def group(help: str, **kwargs: Any) -> typer.Typer:
    return typer.Typer(
        cls=Group, help=help, no_args_is_help=True, rich_markup_mode="rich", **kwargs
    )


def command(app: typer.Typer, fn: Callable[..., Any], name: str | None = None) -> None:
    app.command(name, cls=Command, help=reflow(fn.__doc__))(fn)
