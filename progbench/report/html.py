"""A single self-contained HTML page: inline CSS, a few lines of vanilla JS to sort and filter
tables, figures embedded as base64 PNG. No network, no server, no external file is needed."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
  max-width: 1200px; padding: 1rem 2rem; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; margin-top: 2.5rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1.4rem; font-size: 0.85rem; }
th, td { border: 1px solid #d0d0d0; padding: 0.25rem 0.5rem; }
th { background: #f2f2f2; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { font-weight: bold; background: #eaf4ea; }
input.filter { margin: 0.2rem 0; padding: 0.2rem 0.4rem; width: 18rem; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #444; }
.note { color: #555; font-size: 0.9rem; }
"""

# Click a header to sort (numbers by data-sort, undefined values always last); type to filter.
JS = """
"use strict";
function sortKey(cell) {
  const raw = cell.getAttribute("data-sort");
  if (raw !== null) { return raw === "" ? null : Number(raw); }
  const text = cell.textContent.trim();
  return text === "" || text === "\\u2014" ? null : text;
}
function compareKeys(a, b) {
  if (typeof a === "number" && typeof b === "number") { return a - b; }
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}
document.querySelectorAll("table.sortable").forEach((table) => {
  const headers = table.querySelectorAll("thead th");
  headers.forEach((th, col) => {
    th.addEventListener("click", () => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      headers.forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((r1, r2) => {
        const a = sortKey(r1.cells[col]);
        const b = sortKey(r2.cells[col]);
        if (a === null || b === null) { return (a === null) - (b === null); }
        const c = compareKeys(a, b);
        return ascending ? c : -c;
      });
      rows.forEach((r) => body.appendChild(r));
    });
  });
});
document.querySelectorAll("input.filter").forEach((input) => {
  const table = document.getElementById(input.dataset.table);
  input.addEventListener("input", () => {
    const query = input.value.toLowerCase();
    Array.from(table.tBodies[0].rows).forEach((row) => {
      row.hidden = query !== "" && !row.textContent.toLowerCase().includes(query);
    });
  });
});
"""


@dataclass(frozen=True)
class Cell:
    text: str
    sort: float | None = None  # numeric sort key; None sorts by text
    numeric: bool = False
    best: bool = False

    def html(self) -> str:
        classes = [c for c, on in (("num", self.numeric), ("best", self.best)) if on]
        attrs = f' class="{" ".join(classes)}"' if classes else ""
        if self.numeric:
            key = "" if self.sort is None or math.isnan(self.sort) else repr(float(self.sort))
            attrs += f' data-sort="{key}"'
        return f"<td{attrs}>{escape(self.text)}</td>"


def num(value: float | int | None, text: str) -> Cell:
    sort = None if value is None else float(value)
    return Cell(text, sort=sort, numeric=True)


def table_html(
    table_id: str, header: Sequence[str], rows: Sequence[Sequence[Cell]], caption: str | None = None
) -> str:
    """A sortable table with a filter box above it."""
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    body = "\n".join("<tr>" + "".join(c.html() for c in row) + "</tr>" for row in rows)
    cap = f'<p class="note">{escape(caption)}</p>\n' if caption else ""
    return (
        f'{cap}<input class="filter" type="search" placeholder="filter rows" '
        f'aria-label="filter {escape(table_id)}" data-table="{escape(table_id)}">\n'
        f'<table class="sortable" id="{escape(table_id)}"><thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody></table>\n"
    )


def figure_html(name: str, title: str, caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="fig-{escape(name)}"><img src="data:image/png;base64,{data}" '
        f'alt="{escape(title)}">\n<figcaption><b>{escape(name)}</b>: {escape(caption)} '
        f'Files: <a href="figures/{escape(name)}.svg">SVG</a>, '
        f'<a href="figures/{escape(name)}.png">PNG</a>.</figcaption></figure>\n'
    )


def section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{escape(section_id)}">\n<h2>{escape(title)}</h2>\n{body}</section>\n'


def paragraph(text: str, css: str | None = None) -> str:
    cls = f' class="{css}"' if css else ""
    return f"<p{cls}>{escape(text)}</p>\n"


def heading(text: str, level: int = 3) -> str:
    return f"<h{level}>{escape(text)}</h{level}>\n"


def page(title: str, intro: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document; `sections` are (id, title, body html)."""
    nav = " ".join(f'<a href="#{escape(i)}">{escape(t)}</a>' for i, t, _ in sections)
    body = "".join(section(i, t, b) for i, t, b in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # An empty icon: without it a browser asks for /favicon.ico and logs an error.
        '<link rel="icon" href="data:,">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{escape(title)}</h1>\n{intro}<nav>{nav}</nav></header>\n"
        f"{body}<script>{JS}</script>\n</body>\n</html>\n"
    )
