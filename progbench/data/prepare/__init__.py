"""From raw downloads to a runnable study: a clinical table and an image folder become
manifest.csv, tasks/<name>.yaml and prepare.json (`progbench prepare`).

Modules: schema (PrepareSpec: sources, rules, outputs), columnmap (the column map), tables
(reading CSV/XLSX/Parquet), dicomscan (DICOM headers, folder walks), locate (rows -> images),
rules (selection, counted), boxes (box tables), checks (the manifest checks, naming the table's
rows), context (what the pipeline hands the writer), write (outputs), pipeline (the order).
"""

from progbench.data.prepare.pipeline import PrepareContext, prepare
from progbench.data.prepare.schema import ColumnMap, OutcomeSpec, OutputSpec, PrepareSpec, Rules
from progbench.data.prepare.write import PrepareResult

__all__ = [
    "ColumnMap",
    "OutcomeSpec",
    "OutputSpec",
    "PrepareContext",
    "PrepareResult",
    "PrepareSpec",
    "Rules",
    "prepare",
]
