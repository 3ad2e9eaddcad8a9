"""`prepare`'s one error: every problem found, grouped by kind with counts, each kind with its fix.

Problems are the lines the checks write (prepare's own and progbench.data.manifest's, which name
the clinical table's rows); each is put in a kind by the phrase its check writes. Every kind is
shown (a few cases each, with its count), so a long list of one kind never hides another; when
cases are left out, the full list goes to a file named in the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from progbench.atomic import atomic_write_text
from progbench.errors import PrepareError

SHOWN_PER_KIND = 10  # cases listed per kind in the message; the full list goes to a file


@dataclass(frozen=True)
class Kind:
    """One kind of problem: its name, the phrases that mark it, and how to fix it."""

    name: str
    phrases: tuple[str, ...]
    fix: str


KINDS = (
    Kind(
        "missing image file",
        ("file not found", "no image file matches", "file not readable"),
        "add the files, correct the path/match column, or drop these rows with --drop-unmatched",
    ),
    Kind(
        "unreadable image",
        ("cannot read DICOM header", "cannot read image"),
        "replace the files, or remove their rows",
    ),
    Kind(
        "file matching several rows",
        ("matches more than one row",),
        "make the match values distinct (a file may belong to one row only)",
    ),
    Kind(
        "duplicate id",
        ("appears more than once", "appears in more than one row"),
        "make the ids unique (ids of several sources must differ too), or remove the repeated rows",
    ),
    Kind(
        "conflicting label",
        ("has images with different labels",),
        "fix the labels, drop these patients with --conflicting-labels drop, or, when the outcome "
        "really is per image, pass --per-image-labels",
    ),
    Kind(
        "undeclared outcome value",
        ("is not a declared value", "unknown value", "missing value"),
        "fix the values, or declare them in --outcome NAME=COLUMN:POSITIVE,NEGATIVE...",
    ),
    Kind(
        "patient in two centres",
        ("appears in centres",),
        "a patient belongs to one centre: fix the centre column",
    ),
    Kind("empty value", ("empty value", "empty path"), "fill in these cells, or remove the rows"),
    Kind("bad date", ("is not a date",), "write the dates as YYYY-MM-DD, or remove --date"),
    Kind("bad lung box", ("box",), "fix the box values, or remove the box columns/file"),
)
OTHER = Kind("other", (), "see each line")


def kind_of(problem: str) -> Kind:
    """The kind of one problem line, by the phrase its check writes."""
    for kind in KINDS:
        if any(p in problem for p in kind.phrases):
            return kind
    return OTHER


def group(problems: Sequence[str]) -> dict[str, list[str]]:
    """Problems by kind name, kinds in KINDS order, each kind's lines in order, without repeats."""
    by_kind: dict[str, list[str]] = {k.name: [] for k in (*KINDS, OTHER)}
    for p in dict.fromkeys(problems):
        by_kind[kind_of(p).name].append(p)
    return {name: lines for name, lines in by_kind.items() if lines}


def problems_file(out: Path) -> Path:
    """Where the full list goes: beside the output folder, which is not created."""
    return out.parent / f"{out.name}.prepare-problems.txt"


def raise_problems(problems: Sequence[str], out: Path, legend: str) -> None:
    """One error listing every kind of problem with its count (or nothing when there is none)."""
    grouped = group(problems)
    problems_file(out).unlink(missing_ok=True)  # a list left by an earlier run is stale
    if not grouped:
        return
    total = sum(len(v) for v in grouped.values())
    fixes = {k.name: k.fix for k in (*KINDS, OTHER)}
    counts = ", ".join(f"{len(v)} {name}" for name, v in grouped.items())
    lines = [f"cannot prepare {out}: {total} problem(s): {counts}"]
    full = []
    for name, cases in grouped.items():
        header = f"{name} ({len(cases)}): {fixes[name]}"
        lines.append(header)
        lines += [f"  - {c}" for c in cases[:SHOWN_PER_KIND]]
        if len(cases) > SHOWN_PER_KIND:
            lines.append(f"  ... and {len(cases) - SHOWN_PER_KIND} more")
        full += [header, *(f"  - {c}" for c in cases)]
    where = ""
    if any(len(v) > SHOWN_PER_KIND for v in grouped.values()):
        path = problems_file(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "\n".join([lines[0], *full, legend]) + "\n")
        lines.append(f"The full list ({total} problems) is in {path}.")
        where = f" (the problem list is in {path})"
    raise PrepareError(
        "\n".join([*lines, legend]),
        f"Nothing was written to {out}{where}. Fix these rows or files in the clinical table or "
        "image folder (or drop them with the rule named for each kind), then run the same "
        "command again.",
    )
