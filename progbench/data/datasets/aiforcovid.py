"""AIforCOVID: one to three release spreadsheets with their DICOM folders, optional lung boxes.

Tasks afc (severity) and afc-m (mortality) on one manifest, centres = `Hospital` (LOCO).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from progbench.config import StrictModel
from progbench.data.datasets.common import DatasetPreset, load_preset, missing_file, run_preset
from progbench.data.prepare.pipeline import PrepareContext
from progbench.data.prepare.schema import BoxFile, TableSource, parse_outcome_option
from progbench.data.prepare.write import PrepareResult
from progbench.errors import PrepareError


class Release(StrictModel):
    table: str
    images: str


class BoxDefaults(StrictModel):
    id_column: str
    box_column: str
    margin_percent: float = Field(ge=0, le=100)
    square: bool


class AfcPreset(DatasetPreset):
    releases: list[Release]
    authors_rejects: list[str]
    rejects_reason: str
    boxes: BoxDefaults


@dataclass(frozen=True)
class AfcOptions:
    mortality: str | None = None  # COLUMN:POSITIVE[,NEGATIVE...]
    no_mortality: bool = False
    authors_rejects: bool = False
    boxes: Path | None = None
    box_margin: float | None = None  # percent; None: the preset's 5
    box_square: bool = True
    missing_box: str = "error"
    drop_unmatched: bool = False  # rows whose image is not in the download: dropped, counted
    absolute_paths: bool = False


def find_releases(raw: Path, preset: AfcPreset) -> list[TableSource]:
    """Every release whose spreadsheet is present; its DICOM folder must be there too."""
    sources = []
    for r in preset.releases:
        table, images = raw / r.table, raw / r.images
        if table.is_file() and not images.is_dir():
            raise missing_file(preset, f"DICOM folder of {r.table}", f"{images}/", None)
        if images.is_dir() and not table.is_file():
            raise missing_file(preset, f"spreadsheet of {r.images}/", str(table), None)
        if table.is_file():
            sources.append(TableSource(table=table, images=images))
    if not sources:
        expected = ", ".join(f"{r.table} + {r.images}/" for r in preset.releases)
        raise missing_file(preset, f"no release in {raw}", f"one or more of {expected}", None)
    return sources


def prepare_aiforcovid(
    raw: Path, out: Path, options: AfcOptions, force: bool = False, command: str = ""
) -> PrepareResult:
    preset = load_preset("aiforcovid", AfcPreset)
    if options.no_mortality and options.mortality:
        raise PrepareError("give --mortality or --no-mortality, not both")
    sources = find_releases(Path(raw), preset)
    outcomes = dict(preset.columns.outcomes)
    if options.mortality:
        outcomes["death"] = parse_outcome_option(f"death={options.mortality}")[1]
    outputs = preset.outputs
    if options.no_mortality:
        del outcomes["death"]
        outputs = [
            o.model_copy(update={"tasks": {t: v for t, v in o.tasks.items() if v != "death"}})
            for o in outputs
        ]
    columns = preset.columns.model_copy(update={"outcomes": outcomes})
    rules = preset.rules
    if options.drop_unmatched:
        rules = rules.model_copy(update={"unmatched": "drop"})
    if options.authors_rejects:
        rules = rules.model_copy(
            update={"exclude_ids": preset.authors_rejects, "exclude_reason": preset.rejects_reason}
        )
    box_file = _box_file(preset, options)
    notes = {
        "releases": [s.table.name for s in sources],
        "mortality": outcomes["death"].model_dump() if "death" in outcomes else None,
        "authors_rejects_dropped": options.authors_rejects,
        "boxes": box_file.model_dump(mode="json") if box_file else None,
    }
    death_col = outcomes["death"].column if "death" in outcomes else None
    hints = {
        death_col: f"The mortality column {death_col!r} is an assumption (its name is not "
        "documented): pass --mortality COLUMN:POSITIVE,NEGATIVE naming the release's column, "
        "or --no-mortality to prepare afc alone."
    }
    return run_preset(
        preset,
        sources,
        out,
        force,
        PrepareContext(command=command or "progbench prepare aiforcovid", notes=notes),
        columns=columns,
        rules=rules,
        outputs=outputs,
        column_hints={k: v for k, v in hints.items() if k},
        box_file=box_file,
        absolute_paths=options.absolute_paths,
    )


def _box_file(preset: AfcPreset, options: AfcOptions) -> BoxFile | None:
    if options.boxes is None:
        return None
    if not options.boxes.is_file():
        raise missing_file(preset, "box file", str(options.boxes), "--boxes")
    d = preset.boxes
    return BoxFile(
        path=options.boxes,
        id_column=d.id_column,
        box_column=d.box_column,
        margin_percent=d.margin_percent if options.box_margin is None else options.box_margin,
        square=options.box_square,
        missing=options.missing_box,  # type: ignore[arg-type]
    )
