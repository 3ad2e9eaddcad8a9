"""Write a prepared study: manifests, tasks/<name>.yaml and prepare.json, each atomically.

prepare.json is written last: its presence says the folder is complete. Written manifests are
loaded back with progbench.data.manifest.load_task as a final check.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from progbench import __version__
from progbench.atomic import atomic_write_json, atomic_write_text, atomic_write_with
from progbench.data.manifest import load_task
from progbench.data.prepare.schema import OutputSpec, PrepareSpec
from progbench.errors import PrepareError
from progbench.provenance import file_digest, now_iso

if TYPE_CHECKING:
    from progbench.data.prepare.context import BuiltOutput, PrepareContext
    from progbench.data.prepare.rules import RuleLog
    from progbench.data.prepare.tables import ClinicalTable

RECORD_FORMAT = 1


@dataclass(frozen=True)
class PrepareResult:
    """What was written, and the record (the content of prepare.json)."""

    out: Path
    manifests: dict[str, Path]
    tasks: dict[str, Path]
    record: dict[str, Any]


def refuse_existing(out: Path, outputs: Sequence[OutputSpec], force: bool) -> None:
    existing = [out / o.manifest for o in outputs if (out / o.manifest).exists()]
    if existing and not force:
        raise PrepareError(
            f"{existing[0]} exists",
            "Pass --force to overwrite it (images are never touched), or choose another --out.",
        )


def write_all(
    out: Path,
    spec: PrepareSpec,
    context: PrepareContext,
    tables: Sequence[ClinicalTable],
    log: RuleLog,
    built: Sequence[BuiltOutput],
    stats: dict[str, int],
) -> PrepareResult:
    manifests: dict[str, Path] = {}
    tasks: dict[str, Path] = {}
    outputs = []
    for b in built:
        path = out / b.spec.manifest
        frame = _with_written_paths(b.frame, out, spec.absolute_paths)

        def write_csv(tmp: Path, frame: pd.DataFrame = frame) -> None:
            frame.to_csv(tmp, index=False)

        atomic_write_with(path, write_csv)
        manifests[b.spec.manifest] = path
        for task in b.tasks:
            tasks[task.name] = _write_task(out, task)
        outputs.append(_output_record(b))
    record = _record(spec, context, tables, log, outputs, stats)
    atomic_write_json(out / "prepare.json", record)
    for task_path in tasks.values():
        load_task(task_path)  # the written files load as any manifest does
    return PrepareResult(out=out, manifests=manifests, tasks=tasks, record=record)


def _with_written_paths(frame: pd.DataFrame, out: Path, absolute: bool) -> pd.DataFrame:
    if absolute:
        return frame
    return frame.assign(path=[os.path.relpath(p, out) for p in frame["path"]])


def _write_task(out: Path, task: Any) -> Path:
    data = {
        "name": task.name,
        "manifest": task.manifest.as_posix(),
        "outcome": task.outcome,
        "positive": task.positive,
        "negative": task.negative,
        "per_image_labels": task.per_image_labels,
        "description": task.description,
    }
    path = out / "tasks" / f"{task.name}.yaml"
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, width=100))
    return path


def _output_record(b: BuiltOutput) -> dict[str, Any]:
    f = b.frame
    tasks = {}
    for t in b.tasks:
        pos = f[t.outcome] == t.positive
        patients_pos = f.loc[pos, "patient_id"].nunique()
        tasks[t.name] = {
            "outcome": t.outcome,
            "positive": t.positive,
            "negative": t.negative,
            "images": {"positive": int(pos.sum()), "negative": int((~pos).sum())},
            "patients": {
                "positive": int(patients_pos),
                "negative": int(f["patient_id"].nunique() - patients_pos),
            },
        }
    return {
        "manifest": b.spec.manifest,
        "images": len(f),
        "patients": int(f["patient_id"].nunique()),
        "centres": {str(k): int(v) for k, v in f["center"].value_counts().sort_index().items()},
        **_per_source(f),
        "tasks": tasks,
    }


def _per_source(f: pd.DataFrame) -> dict[str, Any]:
    """Images and patients per source, for a study merged from several sources."""
    if "source" not in f.columns:
        return {}
    by = f.groupby("source", sort=True)
    return {
        "sources": {
            str(k): {"images": len(g), "patients": int(g["patient_id"].nunique())} for k, g in by
        }
    }


def _record(
    spec: PrepareSpec,
    context: PrepareContext,
    tables: Sequence[ClinicalTable],
    log: RuleLog,
    outputs: list[dict[str, Any]],
    stats: dict[str, int],
) -> dict[str, Any]:
    sources = [
        {
            "name": t.source.label,
            "table": str(t.path.resolve()),
            "sha256": file_digest(t.path),
            "sheet": t.source.sheet,
            "header_row": t.source.header_row,
            "encoding": t.encoding,
            "delimiter": t.delimiter,
            "images": str(t.source.images.resolve()),
            "rows": len(t.frame),
            "blank_rows_skipped": t.blank_rows,
            "columns": columns.model_dump(mode="json"),  # its effective column map
        }
        for t, columns in zip(tables, spec.source_columns(), strict=True)
    ]
    files = {
        role: {"path": str(p.resolve()), "sha256": file_digest(p)}
        for role, p in context.files.items()
    }
    if spec.box_file is not None:
        files["boxes"] = {
            "path": str(spec.box_file.path.resolve()),
            "sha256": file_digest(spec.box_file.path),
        }
    return {
        "format": RECORD_FORMAT,
        "progbench_version": __version__,
        "created": now_iso(),
        "command": context.command,
        "sources": sources,
        "files": files,
        "spec": spec.model_dump(mode="json"),
        "scan": {**context.scan, **stats},
        "rules": log.entries,
        "outputs": outputs,
        "notes": context.notes,
    }
