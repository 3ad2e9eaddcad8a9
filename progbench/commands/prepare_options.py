"""The options of the `prepare` commands, declared once as Annotated aliases.

The first group serves several of `prepare table`, `aiforcovid`, `covid19-ar`, `cocross` and
`stonybrook`; the second `prepare table` only (the column map, its tables and its rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

OutDirOpt = Annotated[
    Path, typer.Option("--out", help="Folder for manifest.csv, tasks/ and prepare.json.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing manifest in --out.")]
AbsoluteOpt = Annotated[
    bool,
    typer.Option(
        "--absolute-paths", help="Write absolute image paths (default: relative to --out)."
    ),
]
DropUnmatchedOpt = Annotated[
    bool,
    typer.Option(
        "--drop-unmatched",
        help="Drop table rows whose image file is missing or that no file matches, in every "
        "matching mode; counted in prepare.json (default: an error listing them).",
    ),
]
OnePerPatientOpt = Annotated[
    str | None,
    typer.Option(
        "--one-per-patient",
        help="earliest | latest (by study date, then file order) | first (file order).",
    ),
]
ViewsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--views",
        help="Views kept, e.g. PA,AP (DICOM ViewPosition or the --view column); add 'unknown' "
        "to keep images without a view; '' keeps every view.",
    ),
]
ModalitiesOpt = Annotated[
    list[str] | None,
    typer.Option("--modalities", help="DICOM Modality values kept, e.g. CR,DX; '' keeps all."),
]
ClinicalOpt = Annotated[
    Path | None,
    typer.Option("--clinical", help="The clinical table, if not found under RAW_DIR by name."),
]
RawArg = Annotated[Path, typer.Argument(help="The folder the release was downloaded into.")]
CenterColumnOpt = Annotated[str | None, typer.Option(help="Centre column (default: one centre).")]

# ---- `prepare table` only
SourcesArg = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="TABLE IMAGES",
        help="Clinical table (.csv, .xlsx or .parquet) and its image root (paths and templates "
        "are relative to it; matching walks it); one pair per source (release), merged into one "
        "manifest. Without them: the --map file's `sources`.",
        show_default=False,
    ),
]
MapOpt = Annotated[
    Path | None,
    typer.Option("--map", help="Column map YAML; options given here override its keys."),
]
SheetOpt = Annotated[str | None, typer.Option(help="Spreadsheet sheet (name or index).")]
HeaderRowOpt = Annotated[
    int | None, typer.Option("--header-row", help="0-based row of the header.")
]
EncodingOpt = Annotated[
    str | None,
    typer.Option(
        "--encoding",
        help="CSV text encoding, e.g. utf-8, cp1252, latin-1 (default: detected, the first of "
        "utf-8 (with or without BOM), cp1252, latin-1 that decodes; recorded in prepare.json).",
    ),
]
DelimiterOpt = Annotated[
    str | None,
    typer.Option(
        "--delimiter",
        help="CSV field delimiter, e.g. ';' or '\\t' (default: the one of , ; tab | that the "
        "header line holds most; recorded in prepare.json).",
    ),
]
SourceNameOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--source-name",
        help="A name per table, in order (default: the table's file name without suffix); "
        "written in the manifest's `source` column when there are several tables.",
    ),
]
CenterFromSourceOpt = Annotated[
    bool,
    typer.Option("--center-from-source", help="Each table's source name is its images' centre."),
]
ConflictingLabelsOpt = Annotated[
    str | None,
    typer.Option(
        "--conflicting-labels",
        help="A patient whose images carry different labels: error (list them; default) | drop "
        "(drop those patients, counted in prepare.json).",
    ),
]
PerImageLabelsOpt = Annotated[
    bool,
    typer.Option(
        "--per-image-labels",
        help="The outcome belongs to each image, not the patient: a patient's images may differ.",
    ),
]
IdOpt = Annotated[str | None, typer.Option("--id", help="Column of image ids (one image per row).")]
TablePatientOpt = Annotated[str | None, typer.Option(help="Patient column (default: --id).")]
CenterNameOpt = Annotated[
    str | None, typer.Option("--center-name", help="The one centre's name, without --center.")
]
PathOpt = Annotated[str | None, typer.Option("--path", help="Column of image paths.")]
PathTemplateOpt = Annotated[
    str | None,
    typer.Option("--path-template", help="Image path from columns, e.g. '{ImageFile}.dcm'."),
]
DicomMatchOpt = Annotated[
    str | None,
    typer.Option(
        "--dicom-match", help="TAG=COLUMN: DICOM files whose header tag equals the column."
    ),
]
MatchStemOpt = Annotated[
    str | None,
    typer.Option(
        "--match-stem",
        help="COLUMN: files named <value> (with or without its extension) or "
        "<value>_<anything> (or - . space).",
    ),
]
TableOutcomeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--outcome",
        help="NAME=COLUMN:POSITIVE[,NEGATIVE...], repeated; e.g. death=Outcome:Dead,Alive.",
    ),
]
DateOpt = Annotated[str | None, typer.Option(help="Study date column.")]
ViewOpt = Annotated[str | None, typer.Option(help="View column (PA, AP, LATERAL...).")]
BoxColumnsOpt = Annotated[
    str | None,
    typer.Option("--box-columns", help="X0,Y0,X1,Y1: box columns in pixels (x = column)."),
]
ExcludeOpt = Annotated[
    list[str] | None, typer.Option("--exclude", help="Ids (of --id) to drop, recorded.")
]


@dataclass(frozen=True)
class TableArgs:
    """`prepare table`'s options as given (typed as declared in prepare_options), from which its
    TableOptions are built; the sources, --out and --force go to `prepare` directly."""

    map_file: MapOpt
    sheet: SheetOpt
    header_row: HeaderRowOpt
    encoding: EncodingOpt
    delimiter: DelimiterOpt
    source_name: SourceNameOpt
    id_col: IdOpt
    patient: TablePatientOpt
    center: CenterColumnOpt
    center_name: CenterNameOpt
    center_from_source: CenterFromSourceOpt
    path: PathOpt
    path_template: PathTemplateOpt
    dicom_match: DicomMatchOpt
    match_stem: MatchStemOpt
    outcome: TableOutcomeOpt
    date: DateOpt
    view: ViewOpt
    box_columns: BoxColumnsOpt
    one_per_patient: OnePerPatientOpt
    views: ViewsOpt
    modalities: ModalitiesOpt
    exclude: ExcludeOpt
    drop_unmatched: DropUnmatchedOpt
    conflicting_labels: ConflictingLabelsOpt
    per_image_labels: PerImageLabelsOpt
    absolute_paths: AbsoluteOpt

    def columns(self) -> dict[str, Any]:
        """TableOptions.columns: the column options given (None: not given)."""
        return {
            "id": self.id_col or None,
            "patient": self.patient or None,
            "center": self.center or None,
            "center_name": self.center_name or None,
            "path": self.path or None,
            "path_template": self.path_template or None,
            "stem_match": self.match_stem or None,
            "date": self.date or None,
            "view": self.view or None,
            "center_from_source": self.center_from_source or None,
        }
