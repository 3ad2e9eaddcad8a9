"""COVID-19-AR: TCIA NBIA layout plus the clinical correlates spreadsheet (header row 1).

Task car (ICU admission), one frontal CR/DX radiograph per patient; CT and lateral series are
skipped by DICOM Modality and ViewPosition.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from progbench.data.datasets.common import (
    DatasetPreset,
    find_one,
    load_preset,
    missing_file,
    nbia_roots,
    run_preset,
)
from progbench.data.datasets.tcia import TciaOptions, tcia_outputs, tcia_rules
from progbench.data.manifest import normalise_value
from progbench.data.prepare.pipeline import PrepareContext
from progbench.data.prepare.schema import OutcomeSpec, TableSource, parse_outcome_option
from progbench.data.prepare.tables import read_clinical_table
from progbench.data.prepare.write import PrepareResult
from progbench.errors import PrepareError


class CarPreset(DatasetPreset):
    clinical: str
    header_row: int = Field(ge=0)
    collection: str
    icu_codings: list[list[str]]


@dataclass(frozen=True)
class CarOptions(TciaOptions):
    icu: str | None = None  # COLUMN:POSITIVE[,NEGATIVE...]


def prepare_covid19_ar(
    raw: Path, out: Path, options: CarOptions, force: bool = False, command: str = ""
) -> PrepareResult:
    preset = load_preset("covid19-ar", CarPreset)
    raw = Path(raw)
    clinical = options.clinical or find_one(raw, preset.clinical)
    if clinical is None or not clinical.is_file():
        raise missing_file(preset, "clinical spreadsheet", preset.clinical, "--clinical")
    source = TableSource(table=clinical, images=raw, header_row=preset.header_row)
    rules = tcia_rules(preset, options)
    roots, scan, metadata = nbia_roots(raw, preset.collection, rules.modalities or [])
    source = source.model_copy(update={"images": roots.images})
    icu = _icu_outcome(preset, source, options.icu)
    columns = preset.columns.model_copy(update={"outcomes": {"icu": icu}})
    context = PrepareContext(
        command=command or "progbench prepare covid19-ar",
        roots={0: roots},
        files={"metadata": metadata} if metadata else {},
        notes={"icu": icu.model_dump()},
        scan=scan,
    )
    return run_preset(
        preset,
        [source],
        out,
        force,
        context,
        columns=columns,
        rules=rules,
        outputs=tcia_outputs(preset, options),
        absolute_paths=options.absolute_paths,
    )


def _icu_outcome(preset: CarPreset, source: TableSource, option: str | None) -> OutcomeSpec:
    if option:
        return parse_outcome_option(f"icu={option}")[1]
    column = preset.columns.outcomes["icu"].column
    table = read_clinical_table(source)
    if column not in table.frame.columns:
        return preset.columns.outcomes["icu"]  # the pipeline reports the missing column
    values = {normalise_value(v) for v in table.frame[column]} - {""}
    for positive, *negative in preset.icu_codings:
        if values <= {positive, *negative}:
            return OutcomeSpec(column=column, positive=positive, negative=negative)
    raise PrepareError(
        f"{preset.title}: {table.path.name}, column {column!r} holds {sorted(values)}, none of "
        f"the known codings {preset.icu_codings}",
        f"Say which value is positive: --icu '{column}:POSITIVE,NEGATIVE[,...]'.",
    )
