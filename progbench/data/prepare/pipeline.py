"""`prepare`: clinical table(s) + image folder(s) + a PrepareSpec -> manifests, tasks, prepare.json.

Order: read the tables, drop excluded ids and rows missing an outcome, check declared outcome
values, find the images, apply the image rules (modality, view), attach boxes, then per output
one image per patient if asked; check every candidate manifest; write only when nothing is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from progbench.config import TaskConfig
from progbench.data.manifest import BOX_COLUMNS, normalise_value
from progbench.data.prepare import rules as R
from progbench.data.prepare.boxes import boxes_frame, read_box_table
from progbench.data.prepare.checks import manifest_problems
from progbench.data.prepare.context import BuiltOutput, PrepareContext
from progbench.data.prepare.locate import (
    Located,
    Roots,
    check_template,
    locate_images,
)
from progbench.data.prepare.problems import raise_problems
from progbench.data.prepare.schema import ColumnMap, OutputSpec, PrepareSpec
from progbench.data.prepare.sources import (
    image_way,
    normalise,
    pipeline_spec,
    source_legend,
    undeclared_column,
)
from progbench.data.prepare.tables import (
    ClinicalTable,
    cell_text,
    read_clinical_table,
    require_columns,
)
from progbench.data.prepare.write import PrepareResult, refuse_existing, write_all


def prepare(
    spec: PrepareSpec, out: Path, force: bool = False, context: PrepareContext | None = None
) -> PrepareResult:
    """Build and validate every output of `spec`; write them into `out` only if all are valid."""
    context = context or PrepareContext()
    out = Path(out).resolve()
    refuse_existing(out, spec.outputs, force)
    maps = spec.source_columns()  # each source's own column names
    for m in maps:
        check_template(m)
    tables = [read_clinical_table(s) for s in spec.sources]
    for table, m in zip(tables, maps, strict=True):
        require_columns(table, m.needed_columns())
    rows = all_rows = normalise(combine(tables), spec, maps)  # under the shared names
    given, spec = spec, pipeline_spec(spec)  # the shared map, with the rows' centre column
    log = R.RuleLog()
    pcol = spec.columns.patient_column
    log.add("read tables", [t.path.name for t in tables], {}, R.tally(rows, pcol))
    rows = _drop_repeated_rows(rows, spec, log, table_names(tables))
    rows = _exclude(rows, spec, log)
    rows = _drop_missing_outcomes(rows, spec, log, table_names(tables))
    problems, bad = _undeclared_values(rows, spec, maps)
    rows = rows[~bad].reset_index(drop=True)  # reported; kept out of the checks that follow
    roots = [context.roots.get(s, Roots(images=src.images)) for s, src in enumerate(spec.sources)]
    located = locate_images(
        rows, maps, spec.rules, roots, rows["_name"].tolist(), all_rows=all_rows
    )
    problems += located.problems
    images = _image_rules(rows, located, spec, log, problems)
    images = _attach_boxes(rows, images, spec, problems)
    built = [_build_output(o, rows, images, spec, log) for o in spec.outputs]
    for b in built:
        if b.frame.empty:
            problems.append(f"{b.spec.manifest}: no image is left after the rules (see counts)")
            continue
        problems += manifest_problems(b.frame, b.spec.manifest, b.row_names, b.tasks)
    raise_problems(problems, out, legend(given, maps))
    stats = {
        "unused_files": located.unused_files,
        "files_of_dropped_rows": located.files_of_dropped_rows,
        "skipped_modality": located.skipped_modality,
    }
    return write_all(out, given, context, tables, log, built, stats)


def table_names(tables: Sequence[ClinicalTable]) -> list[str]:
    """Each table by file name, with its folder when two tables share a name."""
    names = [t.path.name for t in tables]
    if len(set(names)) == len(names):
        return names
    return [f"{t.path.parent.name}/{t.path.name}" for t in tables]


def combine(tables: Sequence[ClinicalTable]) -> pd.DataFrame:
    """All tables' rows as text, with `_source` (which table) and `_name` (the user's row)."""
    parts = []
    for s, t in enumerate(tables):
        text = t.frame.map(cell_text).reset_index(drop=True)
        text["_source"] = s
        text["_name"] = [t.row_name(i) for i in range(len(t.frame))]
        parts.append(text)
    rows = pd.concat(parts, ignore_index=True)
    return rows.fillna("")  # a column only some tables have is empty in the others


def _exclude(rows: pd.DataFrame, spec: PrepareSpec, log: R.RuleLog) -> pd.DataFrame:
    if not spec.rules.exclude_ids:
        return rows
    pcol, idc = spec.columns.patient_column, spec.columns.id_column
    mask = R.excluded(rows, idc, spec.rules.exclude_ids)
    kept = rows[~mask].reset_index(drop=True)
    detail = {"column": idc, "ids": spec.rules.exclude_ids, "reason": spec.rules.exclude_reason}
    log.add(
        "exclude ids",
        detail,
        R.tally(rows, pcol),
        R.tally(kept, pcol),
        rows.loc[mask, idc].tolist(),
        listed_but_absent=sorted(set(spec.rules.exclude_ids) - set(rows[idc])),
    )
    return kept


def _drop_repeated_rows(
    rows: pd.DataFrame, spec: PrepareSpec, log: R.RuleLog, tables: list[str]
) -> pd.DataFrame:
    """A row repeated cell for cell in its own table (an export's doubled line) says nothing new:
    it is kept once and counted. Rows that differ in any cell stay, for the checks to report."""
    cells = [c for c in rows.columns if c != "_name"]  # `_source` counts: one table at a time
    repeated = rows.duplicated(subset=cells, keep="first").to_numpy()
    if not repeated.any():
        return rows
    pcol, idc = spec.columns.patient_column, spec.columns.id_column
    log.add(
        "drop repeated rows (every cell equal)",
        {"tables": tables, "rows": rows.loc[repeated, "_name"].tolist()[: R.MAX_RECORDED_IDS]},
        R.tally(rows, pcol),
        R.tally(rows[~repeated], pcol),
        rows.loc[repeated, idc].tolist(),
    )
    return rows[~repeated].reset_index(drop=True)


def _output_mask(rows: pd.DataFrame, spec: PrepareSpec, output: OutputSpec) -> np.ndarray:
    keep = np.ones(len(rows), dtype=bool)
    for outcome in set(output.tasks.values()):
        keep &= ~R.missing_outcome(rows, spec.columns.outcomes[outcome])
    return keep


def _drop_missing_outcomes(
    rows: pd.DataFrame, spec: PrepareSpec, log: R.RuleLog, tables: list[str]
) -> pd.DataFrame:
    """Rows missing an outcome leave the outputs that use it; rows no output uses are dropped."""
    pcol, idc = spec.columns.patient_column, spec.columns.id_column
    used = np.zeros(len(rows), dtype=bool)
    for output in spec.outputs:
        keep = _output_mask(rows, spec, output)
        used |= keep
        missing = {
            o: int(R.missing_outcome(rows, spec.columns.outcomes[o]).sum())
            for o in sorted(set(output.tasks.values()))
        }
        log.add(
            "drop rows with a missing outcome",
            {"output": output.manifest, "tables": tables, "missing": missing},
            R.tally(rows, pcol),
            R.tally(rows[keep], pcol),
            rows.loc[~keep, idc].tolist(),
        )
    return rows[used].reset_index(drop=True)


def _undeclared_values(
    rows: pd.DataFrame, spec: PrepareSpec, maps: Sequence[ColumnMap]
) -> tuple[list[str], np.ndarray]:
    """Rows whose outcome value their source does not declare, named with its table's column
    and values (sources.normalise marked them; an undeclared value is kept untranslated)."""
    problems, bad = [], np.zeros(len(rows), dtype=bool)
    for name, shared in spec.columns.outcomes.items():
        mask = rows[undeclared_column(name)].to_numpy(dtype=bool)
        bad |= mask
        for i in np.flatnonzero(mask):
            o = maps[int(rows["_source"].iloc[i])].outcomes[name]
            value = normalise_value(rows[shared.column].iloc[i])
            problems.append(
                f"{rows['_name'].iloc[i]}, column {o.column!r}: value {value!r} is not a "
                f"declared value of outcome {name!r} (positive {o.positive!r}, "
                f"negative {o.negative})"
            )
    return problems, bad


def _image_rules(
    rows: pd.DataFrame, located: Located, spec: PrepareSpec, log: R.RuleLog, problems: list[str]
) -> pd.DataFrame:
    pcol, c, rules = spec.columns.patient_column, spec.columns, spec.rules
    images = located.images
    ids = rows[c.id_column]
    detail = {
        "unmatched_rows": len(located.unmatched),
        "unmatched": rules.unmatched,
        "unused_files": located.unused_files,
        "files_of_dropped_rows": located.files_of_dropped_rows,
    }
    log.add(
        "find images",
        detail,
        R.tally(rows, pcol),
        R.tally(rows, pcol, images),
        ids.iloc[located.unmatched + located.other_modality_rows].tolist(),
        rows_with_only_other_modalities=len(located.other_modality_rows),
    )
    if rules.unmatched == "error":
        problems += [located.why_unmatched[i] for i in located.unmatched]
    for rule, values, fn in (
        ("keep modalities", rules.modalities, R.by_modality),
        ("keep views", rules.views, R.by_view),
    ):
        if values:
            before = R.tally(rows, pcol, images)
            images = fn(images, values)
            log.add(rule, values, before, R.tally(rows, pcol, images))
    return images


def _attach_boxes(
    rows: pd.DataFrame, images: pd.DataFrame, spec: PrepareSpec, problems: list[str]
) -> pd.DataFrame:
    names = [rows["_name"].iloc[r] for r in images["row"]]
    if spec.box_file is not None:
        boxes, bad = read_box_table(spec.box_file)
        frame, bad_images, _ = boxes_frame(images, boxes, spec.box_file, names)
        problems += bad + bad_images
        return pd.concat([images, frame], axis=1)
    if spec.columns.boxes is not None:
        cols = spec.columns.boxes.model_dump()
        for out_col, key in zip(BOX_COLUMNS, ("x0", "y0", "x1", "y1"), strict=True):
            images[out_col] = [rows[cols[key]].iloc[r] for r in images["row"]]
    return images


def _build_output(
    output: OutputSpec, rows: pd.DataFrame, images: pd.DataFrame, spec: PrepareSpec, log: R.RuleLog
) -> BuiltOutput:
    pcol = spec.columns.patient_column
    mask = _output_mask(rows, spec, output)
    imgs = images[mask[images["row"].to_numpy(dtype=int)]].reset_index(drop=True)
    if spec.rules.conflicting_labels == "drop" and not output.per_image_labels:
        before = R.tally(rows, pcol, imgs)
        outcomes = [spec.columns.outcomes[o] for o in dict.fromkeys(output.tasks.values())]
        mixed = R.conflicting_patients(imgs, rows, pcol, outcomes)
        imgs = R.drop_patients(imgs, rows, pcol, mixed)
        detail = {
            "output": output.manifest,
            "patients_dropped": len(mixed),
            "patients": mixed[: R.MAX_RECORDED_IDS],
        }
        after = R.tally(rows, pcol, imgs)
        log.add("drop patients with conflicting labels", detail, before, after)
    if output.one_per_patient is not None:
        before = R.tally(rows, pcol, imgs)
        imgs = R.one_per_patient(imgs, rows[pcol], output.one_per_patient)
        detail = {"output": output.manifest, "how": output.one_per_patient}
        log.add("one image per patient", detail, before, R.tally(rows, pcol, imgs))
    frame = manifest_frame(rows, imgs, spec, output)
    per_row = spec.columns.one_image_per_row
    names = [
        rows["_name"].iloc[r] + ("" if per_row else f" [image {iid}]")
        for r, iid in zip(imgs["row"], imgs["image_id"], strict=True)
    ]
    return BuiltOutput(output, frame, names, _tasks(output, spec, frame))


def manifest_frame(
    rows: pd.DataFrame, images: pd.DataFrame, spec: PrepareSpec, output: OutputSpec
) -> pd.DataFrame:
    """The manifest's columns, paths absolute (made relative when written)."""
    c, r = spec.columns, images["row"].to_numpy()
    source = np.array([s.label for s in spec.sources], dtype=object)[
        rows["_source"].iloc[r].to_numpy(dtype=int)
    ]
    if c.center_from_source:
        center = source
    else:
        center = rows[c.center].iloc[r].to_numpy() if c.center else c.center_name
    frame = pd.DataFrame(
        {
            "image_id": images["image_id"].to_numpy(),
            "path": images["path"].to_numpy(),
            "patient_id": rows[c.patient_column].iloc[r].to_numpy(),
            "center": center,
        }
    )
    if len(spec.sources) > 1:  # a merged study records each image's source
        frame["source"] = source
    for outcome in dict.fromkeys(output.tasks.values()):
        frame[outcome] = rows[c.outcomes[outcome].column].iloc[r].map(normalise_value).to_numpy()
    if images["date"].notna().any():
        frame["study_date"] = images["date"].dt.strftime("%Y-%m-%d").fillna("").to_numpy()
    if (images["view"] != "").any():
        frame["view"] = images["view"].to_numpy()
    if all(col in images.columns for col in BOX_COLUMNS):
        for col in BOX_COLUMNS:
            frame[col] = images[col].to_numpy()
    return frame


def _tasks(output: OutputSpec, spec: PrepareSpec, frame: pd.DataFrame) -> list[TaskConfig]:
    tasks = []
    for name, outcome in output.tasks.items():
        o = spec.columns.outcomes[outcome]
        positive = normalise_value(o.positive)
        if o.negative is not None:
            negative = [normalise_value(v) for v in o.negative]
        else:
            negative = sorted(set(frame.get(outcome, pd.Series(dtype=str))) - {positive, ""})
        description = output.descriptions.get(
            name, f"{outcome} = {o.positive} (column {o.column!r}) against {', '.join(negative)}"
        )
        tasks.append(
            TaskConfig(
                name=name,
                manifest=Path("..") / output.manifest,
                outcome=outcome,
                positive=positive,
                negative=negative,
                per_image_labels=output.per_image_labels,
                description=description,
            )
        )
    return tasks


def legend(spec: PrepareSpec, maps: Sequence[ColumnMap] | None = None) -> str:
    """Which table column each manifest column named in the problems came from."""
    c = spec.columns
    parts = [
        f"image_id = {c.id!r}" if c.one_image_per_row else "image_id = file path",
        f"patient_id = {c.patient_column!r}",
        _center_legend(spec),
        f"path = {image_way(c)}",
        *(f"{n} = {o.column!r}" for n, o in c.outcomes.items()),
    ]
    text = "Manifest columns come from: " + ", ".join(parts) + "."
    return " ".join([text, *source_legend(spec, maps or spec.source_columns())])


def _center_legend(spec: PrepareSpec) -> str:
    c = spec.columns
    if c.center_from_source:
        return f"center = the source ({', '.join(s.label for s in spec.sources)})"
    if spec.center_target() is not None:  # sources give it differently: each one's below
        shared = f"column {c.center!r}" if c.center else f"{c.center_name!r}"
        return f"center = {shared} or the source's own"
    return f"center = {c.center!r}" if c.center else f"center = {c.center_name!r} (one centre)"
