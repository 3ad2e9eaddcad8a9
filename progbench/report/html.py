"""report.html: the page's view model (sections of headings, paragraphs, tables and figures)
and its rendering from the Jinja2 templates in `templates/` (autoescaped). The page is one
self-contained file: inline CSS, a few lines of vanilla JS to sort and filter tables and to
switch metrics, figures embedded as base64 PNG. No network, no server, no external file."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import ClassVar

import jinja2

TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Cell:
    text: str
    sort: float | None = None  # numeric sort key; None sorts by text
    numeric: bool = False
    best: bool = False
    note: str = ""  # a second, smaller line (a pooled value and its CI)

    @property
    def css(self) -> str:
        return " ".join(c for c, on in (("num", self.numeric), ("best", self.best)) if on)

    @property
    def sort_key(self) -> str | None:
        """data-sort of a numeric cell: repr of the float, empty when undefined."""
        if not self.numeric:
            return None
        return "" if self.sort is None or math.isnan(self.sort) else repr(float(self.sort))


def num(value: float | int | None, text: str) -> Cell:
    sort = None if value is None else float(value)
    return Cell(text, sort=sort, numeric=True)


@dataclass(frozen=True)
class Heading:
    kind: ClassVar[str] = "heading"
    text: str
    level: int = 3


@dataclass(frozen=True)
class Paragraph:
    kind: ClassVar[str] = "paragraph"
    text: str
    note: bool = False
    warning: bool = False  # what the reader must know before trusting the numbers


@dataclass(frozen=True)
class Table:
    """A sortable table with a filter box above it."""

    kind: ClassVar[str] = "table"
    id: str
    header: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    caption: str | None = None


@dataclass(frozen=True)
class Figure:
    kind: ClassVar[str] = "figure"
    id: str  # unique in the page
    name: str
    title: str
    caption: str
    png: bytes
    folder: str  # where its PNG and SVG files are, relative to the page

    @property
    def png_base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


Block = Heading | Paragraph | Table | Figure


@dataclass(frozen=True)
class Section:
    """A part of the page: the same blocks for every metric (`shared`), or one list per
    metric (`per_metric`, shown one metric at a time)."""

    id: str
    title: str
    shared: Sequence[Block] = ()
    per_metric: dict[str, Sequence[Block]] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    title: str
    intro: Sequence[Paragraph]
    metrics: Sequence[tuple[str, str]]  # (name, label), the first shown first
    sections: Sequence[Section]


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("progbench.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def render_page(page: Page) -> str:
    return environment().get_template(TEMPLATE).render(page=page)
