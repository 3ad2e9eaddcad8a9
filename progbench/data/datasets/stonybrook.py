"""Stony Brook (COVID-19-NY-SBU): TCIA NBIA layout with metadata.csv, plus the clinical CSV.

Tasks ny-all (every frontal CXR, labels per patient; manifest.csv) and ny-small (one CXR per
patient; manifest-ny-small.csv). `last.status` deceased is positive.
"""

from __future__ import annotations

from pathlib import Path

from progbench.data.datasets.common import (
    DatasetPreset,
    find_one,
    load_preset,
    missing_file,
    nbia_roots,
    run_preset,
)
from progbench.data.datasets.tcia import TciaOptions, tcia_outputs, tcia_rules
from progbench.data.prepare.pipeline import PrepareContext
from progbench.data.prepare.schema import TableSource
from progbench.data.prepare.write import PrepareResult


class SbuPreset(DatasetPreset):
    clinical: str
    collection: str


def prepare_stonybrook(
    raw: Path, out: Path, options: TciaOptions, force: bool = False, command: str = ""
) -> PrepareResult:
    preset = load_preset("stonybrook", SbuPreset)
    raw = Path(raw)
    clinical = options.clinical or find_one(raw, preset.clinical)
    if clinical is None or not clinical.is_file():
        raise missing_file(preset, "clinical CSV", preset.clinical, "--clinical")
    rules = tcia_rules(preset, options)
    roots, scan, metadata = nbia_roots(raw, preset.collection, rules.modalities or [])
    context = PrepareContext(
        command=command or "progbench prepare stonybrook",
        roots={0: roots},
        files={"metadata": metadata} if metadata else {},
        scan=scan,
    )
    return run_preset(
        preset,
        [TableSource(table=clinical, images=roots.images)],
        out,
        force,
        context,
        rules=rules,
        outputs=tcia_outputs(preset, options),
        absolute_paths=options.absolute_paths,
    )
