"""Every table the CLI prints, built from the plain data the library returns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

UNDEFINED = "—"
# Cells of the class columns are images/patients (data.summary.split_summary).
FOLD_COLUMNS = (
    "fold",
    "test centre",
    "train neg",
    "train pos",
    "val neg",
    "val pos",
    "test neg",
    "test pos",
    "val share",
    "few-shot",
)
FOLD_NOTE = (
    "neg, pos: images/patients of each class; val share: validation patients / training-part "
    "patients"
)


def fmt(x: object, digits: int = 3) -> str:
    return UNDEFINED if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def simple_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    right: Iterable[str] = (),
) -> Table:
    """A table of text cells; columns named in `right` are right-aligned."""
    table = Table(title=title)
    right = set(right)
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    return table


# Above this many rows a table is laid out as plain aligned text: rich measures every cell
# several times, which takes seconds for the ~1,200 cells of the reference grid.
PLAIN_ROWS = 300


def long_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    right: Iterable[str] = (),
) -> Table | Text:
    """`simple_table`, or for more than PLAIN_ROWS rows the same columns as aligned plain text."""
    if len(rows) <= PLAIN_ROWS:
        return simple_table(title, columns, rows, right)
    right = set(right)
    cells = [[str(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if col in right else v.ljust(w)
            for v, w, col in zip(values, widths, columns, strict=True)
        ).rstrip()

    head = [title] if title else []
    lines = [*head, line(list(columns)), line(["-" * w for w in widths])]
    return Text("\n".join([*lines, *(line(r) for r in cells)]), no_wrap=True)


def fold_table(title: str, rows: list[tuple[object, ...]]) -> Table:
    table = simple_table(title, FOLD_COLUMNS, rows, right=FOLD_COLUMNS)
    table.caption = FOLD_NOTE
    return table


def dict_table(title: str, data: Mapping[str, object]) -> Table:
    table = Table(title=title, show_header=False)
    for k, v in data.items():
        table.add_row(str(k), str(v))
    return table


def matrix_tables(matrix: Any) -> tuple[Table, Table, list[str]]:
    """The backbones table, the backbone x strategy grid and the notes of a ModelMatrix."""
    from progbench.models.matrix import cell_text, not_applicable_notes, uncounted_note

    info = simple_table(
        "Backbones",
        ("backbone", "library", "source", "feature dim", "encoder params"),
        [
            (b.name, b.library, b.source or "-", b.feature_dims, f"{b.encoder_params / 1e6:.2f}M")
            for b in matrix.backbones
        ],
        right=("feature dim", "encoder params"),
    )
    grid = simple_table(
        "Trainable parameters, % of the classifier (2-way head included)",
        ("backbone", *matrix.strategies),
        [
            (
                b.name,
                *(cell_text(matrix.cell(b.name, s)) for s in matrix.strategies),
            )
            for b in matrix.backbones
        ],
        right=matrix.strategies,
    )
    notes = [f"[yellow]n/a:[/] {n}" for n in not_applicable_notes(matrix)]
    notes += [f"[yellow]-:[/] {n}" for n in uncounted_note(matrix)]
    notes += [
        f"[yellow]warning:[/] {b.name}: the built encoder has {b.encoder_params} parameters; "
        f"its YAML says encoder_params: {b.expected_params}"
        for b in matrix.backbones
        if b.encoder_params != b.expected_params
    ]
    return info, grid, notes


def stores_table(stores: list[dict[str, Any]]) -> Table:
    return simple_table(
        "stores",
        ("kind", "key", "backbone", "n", "dim/size", "complete", "MB", "created"),
        [
            (
                s["kind"],
                s["key"],
                s["backbone"],
                s["n"],
                s.get("dims") or s["dim"],
                "yes" if s["complete"] else "[red]no[/]",
                s["mb"],
                s["created"],
            )
            for s in stores
        ],
    )


def pooled_with_ci(entry: Mapping[str, Any]) -> str:
    """`pooled [low, high]`, or the pooled value alone when no bootstrap was run."""
    if entry.get("pooled") is None:
        return UNDEFINED
    if entry.get("ci_low") is None:
        return f"{entry['pooled']:.3f}"
    return f"{entry['pooled']:.3f} [{fmt(entry['ci_low'])}, {fmt(entry['ci_high'])}]"


def mean_pm_std(entry: Mapping[str, Any], digits: int = 3) -> str:
    if entry.get("mean") is None:
        return UNDEFINED
    std = entry.get("std")
    text = f"{entry['mean']:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def metrics_table(title: str, by_split: Mapping[str, Mapping[str, object]]) -> Table:
    """Rows are metrics, columns are splits; '—' marks an undefined metric."""
    from progbench.evaluate import RESULT_KEYS

    splits = [s for s in ("val", "test") if s in by_split]
    rows = [
        (
            "pr_auc (baseline = prevalence)" if key == "pr_auc" else key,
            *[fmt(by_split[s].get(key)) for s in splits],
        )
        for key in RESULT_KEYS
    ]
    rows.append(("threshold rule", *[str(by_split[s].get("threshold_rule")) for s in splits]))
    if any("degenerate" in by_split[s] for s in splits):
        rows.append(
            (
                "one class predicted",
                *["yes" if by_split[s].get("degenerate") else "no" for s in splits],
            )
        )
    return simple_table(title, ("metric", *splits), rows, right=splits)


GROUP_COLUMNS = ("task", "scheme", "backbone", "strategy", "regime", "k", "folds")
SUMMARY_COLUMNS = (
    *GROUP_COLUMNS,
    "MCC mean ± std",
    "MCC pooled [95% CI]",
    "PR-AUC mean ± std (base)",
    "PR-AUC pooled [95% CI]",
)


def _backbone_cell(g: Mapping[str, Any]) -> str:
    """The backbone, `(random)` after it when its weights were random."""
    return f"{g['backbone']} (random)" if g.get("weights") == "random" else str(g["backbone"])


def _folds_cell(g: Mapping[str, Any]) -> str:
    """Folds scored, and how many runs predicted one class (degenerate) when any did."""
    folds = fmt(g["metrics"]["mcc"].get("n_folds"))
    n = int(g.get("n_degenerate") or 0)
    return f"{folds} ({n} one-class)" if n else folds


def summary_table(title: str, groups: list[dict[str, Any]]) -> Table:
    """One row per group of runs: MCC and PR-AUC as mean ± std over folds and pooled with the
    patient-bootstrap CI (no CI when the bootstrap was not run). A backbone with random weights
    reads `name (random)`; folds say how many runs predicted one class, when any did."""
    rows = []
    for g in groups:
        mcc, ap = g["metrics"]["mcc"], g["metrics"]["pr_auc"]
        base = f" ({fmt(g.get('prevalence'), 2)})" if g.get("prevalence") is not None else ""
        rows.append(
            (
                g["task"],
                g.get("scheme") or UNDEFINED,
                _backbone_cell(g),
                g["strategy"],
                g["regime"],
                fmt(g["shots"]) if g.get("shots") else "all",
                _folds_cell(g),
                mean_pm_std(mcc),
                pooled_with_ci(mcc),
                mean_pm_std(ap) + base,
                pooled_with_ci(ap),
            )
        )
    return simple_table(title, SUMMARY_COLUMNS, rows, right=SUMMARY_COLUMNS[5:])


def result_warning_lines(groups: list[dict[str, Any]]) -> list[str]:
    """`evaluate.results.result_warnings` as console lines (`warning:` in yellow)."""
    from progbench.evaluate.results import result_warnings

    return [f"[yellow]warning:[/] {w}" for w in result_warnings(groups)]


def prepare_rules_table(record: Mapping[str, Any]) -> Table:
    """A prepare.json record's selection: rows, images and patients before and after each rule."""
    rules = [(_rule_name(e), _counts(e["before"]), _counts(e["after"])) for e in record["rules"]]
    return simple_table("selection", ("rule", "before", "after"), rules)


def prepare_tasks_table(record: Mapping[str, Any]) -> Table:
    """A prepare.json record's tasks: manifest, sizes and classes (images and patients)."""
    rows = []
    for o in record["outputs"]:
        for name, t in o["tasks"].items():
            img, pat = t["images"], t["patients"]
            rows.append(
                (
                    name,
                    o["manifest"],
                    o["images"],
                    o["patients"],
                    len(o["centres"]),
                    f"{img['positive']}/{img['negative']}",
                    f"{pat['positive']}/{pat['negative']}",
                )
            )
    columns = ("task", "manifest", "images", "patients", "centres", "img +/-", "pat +/-")
    return simple_table("tasks", columns, rows, right=columns[2:])


def _rule_name(entry: Mapping[str, Any]) -> str:
    """The rule and what it reads: a rule on table rows names the input table(s) (and the
    outcomes it checks); a rule on one output's images names that output's manifest."""
    detail = entry["detail"]
    if not isinstance(detail, dict):
        return entry["rule"]
    if detail.get("tables"):
        outcomes = ", ".join(detail.get("missing", {}))
        what = f" {outcomes}" if outcomes else ""
        return f"{entry['rule']}{what} (table {', '.join(detail['tables'])})"
    where = detail.get("output")
    return f"{entry['rule']} (output {where})" if where else entry["rule"]


def _counts(c: Mapping[str, int]) -> str:
    if not c:
        return ""
    images = f"{c['images']} img, " if "images" in c else ""
    return f"{images}{c['rows']} rows, {c['patients']} pat"


AUDIT_STYLE = {"ok": "green", "flag": "bold red", "skip": "dim"}


def audit_table(title: str, checks: Sequence[Mapping[str, Any]]) -> Table:
    """One row per audit check (audit.json's `checks`): status, headline number, detail."""
    table = Table(title=title, show_lines=True)
    for col, justify in (("check", "left"), ("status", "left"), ("value", "right")):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("detail", ratio=1)
    for c in checks:
        value = ""
        if c.get("metric") is not None:
            value = f"{c.get('metric_name') or ''} {c['metric']:.3f}".strip()
            ci = c.get("ci")
            if ci and ci[0] is not None and ci[1] is not None:
                value += f"\n[{ci[0]:.2f}, {ci[1]:.2f}]"
        status = Text(str(c["status"]).upper(), style=AUDIT_STYLE.get(str(c["status"]), ""))
        table.add_row(str(c["name"]), status, value, Text(str(c["detail"])))
    return table
