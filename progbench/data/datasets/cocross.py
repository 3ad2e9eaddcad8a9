"""CoCross: a clinical table (ID, ICU Outcome) and a folder of radiographs, several per patient.

The raw layout is not public; the preset's `choices` say what is assumed and each assumption
has an option.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from progbench.data.datasets.common import DatasetPreset, load_preset, missing_file, run_preset
from progbench.data.images import is_dicom
from progbench.data.prepare.columnmap import DicomMatch
from progbench.data.prepare.dicomscan import walk_files
from progbench.data.prepare.pipeline import PrepareContext
from progbench.data.prepare.schema import TableSource
from progbench.data.prepare.write import PrepareResult
from progbench.errors import PrepareError


class CocrossPreset(DatasetPreset):
    images: str
    table_suffixes: list[str]


@dataclass(frozen=True)
class CocrossOptions:
    table: Path | None = None
    images: Path | None = None
    patient: str | None = None
    center: str | None = None
    match: str = "auto"  # auto | dicom | stem
    drop_unmatched: bool = False
    absolute_paths: bool = False


def find_table(raw: Path, preset: CocrossPreset) -> Path:
    tables = sorted(
        p for p in raw.iterdir() if p.is_file() and p.suffix.lower() in preset.table_suffixes
    )
    if len(tables) == 1:
        return tables[0]
    if not tables:
        raise missing_file(
            preset,
            f"clinical table in {raw}",
            f"one of {', '.join(preset.table_suffixes)}",
            "--table",
        )
    raise PrepareError(
        f"{preset.title}: {raw} holds {len(tables)} tables ({', '.join(p.name for p in tables)})",
        "Name the clinical table with --table.",
    )


def matching_mode(images: Path, match: str) -> str:
    """auto: DICOM matching when every image file is DICOM, else matching by file name."""
    if match != "auto":
        return match
    files = walk_files([images])
    return "dicom" if files and all(is_dicom(p) for p in files) else "stem"


def prepare_cocross(
    raw: Path, out: Path, options: CocrossOptions, force: bool = False, command: str = ""
) -> PrepareResult:
    preset = load_preset("cocross", CocrossPreset)
    raw = Path(raw)
    table = options.table or find_table(raw, preset)
    images = options.images or raw / preset.images
    if not images.is_dir():
        raise missing_file(preset, "image folder", f"{images}/", "--images")
    mode = matching_mode(images, options.match)
    col = preset.columns.id_column
    update: dict[str, object] = {"patient": options.patient, "center": options.center}
    if mode == "dicom":
        update |= {"stem_match": None, "dicom_match": DicomMatch(tag="PatientID", column=col)}
    columns = preset.columns.model_copy(update=update)
    rules = preset.rules.model_copy(update={"unmatched": "drop"} if options.drop_unmatched else {})
    return run_preset(
        preset,
        [TableSource(table=table, images=images)],
        out,
        force,
        PrepareContext(command=command or "progbench prepare cocross", notes={"matching": mode}),
        columns=columns,
        rules=rules,
        absolute_paths=options.absolute_paths,
    )
