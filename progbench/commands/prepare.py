"""The `prepare` group: raw downloads -> manifest.csv, tasks/*.yaml and prepare.json.

`table` takes any clinical table and image folder with a column map; `aiforcovid`,
`covid19-ar`, `cocross` and `stonybrook` are the study's datasets as presets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from progbench.commands.app import command, group
from progbench.commands.options import split_list
from progbench.commands.output import console, print_wide
from progbench.commands.prepare_options import (
    AbsoluteOpt,
    BoxColumnsOpt,
    CenterColumnOpt,
    CenterFromSourceOpt,
    CenterNameOpt,
    ClinicalOpt,
    ConflictingLabelsOpt,
    DateOpt,
    DelimiterOpt,
    DicomMatchOpt,
    DropUnmatchedOpt,
    EncodingOpt,
    ExcludeOpt,
    ForceOpt,
    HeaderRowOpt,
    IdOpt,
    MapOpt,
    MatchStemOpt,
    ModalitiesOpt,
    OnePerPatientOpt,
    OutDirOpt,
    PathOpt,
    PathTemplateOpt,
    PerImageLabelsOpt,
    RawArg,
    SheetOpt,
    SourceNameOpt,
    SourcesArg,
    TableArgs,
    TableOutcomeOpt,
    TablePatientOpt,
    ViewOpt,
    ViewsOpt,
)
from progbench.commands.render import prepare_rules_table, prepare_tasks_table

if TYPE_CHECKING:
    from progbench.data.prepare.options import TableOptions

app = group("Turn raw downloads (a clinical table and image folders) into a runnable study.")


def _listed(values: list[str] | None) -> list[str] | None:
    """None when not given; [] when given as '' (meaning: no filter)."""
    return None if values is None else split_list(values)


def prepare_table(
    sources: SourcesArg = None,
    out: OutDirOpt = ...,  # type: ignore[assignment]
    map_file: MapOpt = None,
    sheet: SheetOpt = None,
    header_row: HeaderRowOpt = None,
    encoding: EncodingOpt = None,
    delimiter: DelimiterOpt = None,
    source_name: SourceNameOpt = None,
    id_col: IdOpt = None,
    patient: TablePatientOpt = None,
    center: CenterColumnOpt = None,
    center_name: CenterNameOpt = None,
    center_from_source: CenterFromSourceOpt = False,
    path: PathOpt = None,
    path_template: PathTemplateOpt = None,
    dicom_match: DicomMatchOpt = None,
    match_stem: MatchStemOpt = None,
    outcome: TableOutcomeOpt = None,
    date: DateOpt = None,
    view: ViewOpt = None,
    box_columns: BoxColumnsOpt = None,
    one_per_patient: OnePerPatientOpt = None,
    views: ViewsOpt = None,
    modalities: ModalitiesOpt = None,
    exclude: ExcludeOpt = None,
    drop_unmatched: DropUnmatchedOpt = False,
    conflicting_labels: ConflictingLabelsOpt = None,
    per_image_labels: PerImageLabelsOpt = False,
    absolute_paths: AbsoluteOpt = False,
    force: ForceOpt = False,
) -> None:
    """Build a study from clinical table(s) and image folder(s), described by a column map.

    Example: [bold]progbench prepare table clinical.xlsx dicom/ --out study --id ImageFile --center Hospital --path-template '{ImageFile}.dcm' --outcome death=Outcome:Dead,Alive[/]

    Two releases as two centres: [bold]progbench prepare table r1.csv r1/ r2.csv r2/ --out study --match-stem File --center-from-source --outcome death=Outcome:Dead,Alive --drop-unmatched[/]
    """
    args = TableArgs(
        map_file=map_file,
        sheet=sheet,
        header_row=header_row,
        encoding=encoding,
        delimiter=delimiter,
        source_name=source_name,
        id_col=id_col,
        patient=patient,
        center=center,
        center_name=center_name,
        center_from_source=center_from_source,
        path=path,
        path_template=path_template,
        dicom_match=dicom_match,
        match_stem=match_stem,
        outcome=outcome,
        date=date,
        view=view,
        box_columns=box_columns,
        one_per_patient=one_per_patient,
        views=views,
        modalities=modalities,
        exclude=exclude,
        drop_unmatched=drop_unmatched,
        conflicting_labels=conflicting_labels,
        per_image_labels=per_image_labels,
        absolute_paths=absolute_paths,
    )
    from progbench.data.prepare import prepare
    from progbench.data.prepare.options import sources_spec

    spec = sources_spec(_pairs(sources or []), _table_options(args))
    _report(prepare(spec, out, force=force))


def _pairs(paths: list[Path]) -> list[tuple[Path, Path]]:
    """TABLE IMAGES [TABLE IMAGES]... as pairs; an odd count is an error naming the last."""
    from progbench.errors import ConfigError

    if len(paths) % 2:
        raise ConfigError(
            f"TABLE IMAGES come in pairs; got {len(paths)} path(s), the last ({paths[-1]}) "
            "without its pair",
            "Give each clinical table followed by its image root, e.g. r1.csv r1/ r2.csv r2/.",
        )
    return [(paths[k], paths[k + 1]) for k in range(0, len(paths), 2)]


def _delimiter(text: str | None) -> str | None:
    """`\\t` typed on a command line is a tab."""
    return "\t" if text in ("\\t", "tab") else text


def _table_options(args: TableArgs) -> TableOptions:
    """`prepare table`'s options as the TableOptions its PrepareSpec is built from."""
    from progbench.data.prepare.options import TableOptions

    rules: dict[str, Any] = {}
    if args.views is not None:
        rules["views"] = _listed(args.views) or None
    if args.modalities is not None:
        rules["modalities"] = _listed(args.modalities) or None
    if args.exclude:
        rules["exclude_ids"] = split_list(args.exclude)
    if args.drop_unmatched:
        rules["unmatched"] = "drop"
    if args.conflicting_labels is not None:
        rules["conflicting_labels"] = args.conflicting_labels
    return TableOptions(
        map_file=args.map_file,
        sheet=args.sheet,
        header_row=args.header_row,
        encoding=args.encoding,
        delimiter=_delimiter(args.delimiter),
        source_names=split_list(args.source_name),
        columns=args.columns(),
        per_image_labels=args.per_image_labels or None,
        dicom_match=args.dicom_match,
        outcomes=args.outcome or [],
        box_columns=split_list(args.box_columns),
        rules=rules,
        one_per_patient=args.one_per_patient,
        absolute_paths=args.absolute_paths or None,
    )


def prepare_aiforcovid(
    raw: RawArg,
    out: OutDirOpt,
    boxes: Annotated[
        Path | None,
        typer.Option("--boxes", help="The authors' box file (box_data_AFC.xlsx): lung crops."),
    ] = None,
    box_margin: Annotated[
        float | None,
        typer.Option("--box-margin", help="Box margin, percent of each side in total (5)."),
    ] = None,
    box_square: Annotated[
        bool, typer.Option("--box-square/--no-box-square", help="Pad boxes to squares.")
    ] = True,
    missing_box: Annotated[
        str, typer.Option("--missing-box", help="error | full (no crop) for an image without box.")
    ] = "error",
    mortality: Annotated[
        str | None,
        typer.Option("--mortality", help="COLUMN:POSITIVE,NEGATIVE of mortality (Death:1,0)."),
    ] = None,
    no_mortality: Annotated[
        bool, typer.Option("--no-mortality", help="Prepare afc only (no afc-m).")
    ] = False,
    authors_rejects: Annotated[
        bool,
        typer.Option("--authors-rejects", help="Drop the 10 ids the authors' converter dropped."),
    ] = False,
    drop_unmatched: DropUnmatchedOpt = False,
    absolute_paths: AbsoluteOpt = False,
    force: ForceOpt = False,
) -> None:
    """AIforCOVID: tasks afc (severity) and afc-m (mortality), centres = Hospital (LOCO).

    RAW_DIR holds AIforCOVID.xlsx + imgs/ (and AIforCOVID_r2.xlsx + imgs_r2/, AIforCOVID_r3.xlsx + imgs_r3/ when downloaded).

    Example: [bold]progbench prepare aiforcovid raw/AIforCOVID --out studies/afc --boxes box_data_AFC.xlsx[/]
    """
    from progbench.data.datasets.aiforcovid import AfcOptions
    from progbench.data.datasets.aiforcovid import prepare_aiforcovid as run

    options = AfcOptions(
        mortality=mortality,
        no_mortality=no_mortality,
        authors_rejects=authors_rejects,
        boxes=boxes,
        box_margin=box_margin,
        box_square=box_square,
        missing_box=missing_box,
        drop_unmatched=drop_unmatched,
        absolute_paths=absolute_paths,
    )
    _report(run(raw, out, options, force=force))


def prepare_covid19_ar(
    raw: RawArg,
    out: OutDirOpt,
    clinical: ClinicalOpt = None,
    icu: Annotated[
        str | None,
        typer.Option("--icu", help="COLUMN:POSITIVE,NEGATIVE of ICU admission (detected)."),
    ] = None,
    one_per_patient: OnePerPatientOpt = None,
    views: ViewsOpt = None,
    modalities: ModalitiesOpt = None,
    drop_unmatched: DropUnmatchedOpt = False,
    absolute_paths: AbsoluteOpt = False,
    force: ForceOpt = False,
) -> None:
    """COVID-19-AR (TCIA): task car (ICU admission), one frontal CR/DX radiograph per patient.

    Example: [bold]progbench prepare covid19-ar raw/manifest-1594658036421 --out studies/car[/]
    """
    from progbench.data.datasets.covid19_ar import CarOptions, prepare_covid19_ar

    options = CarOptions(
        clinical=clinical,
        icu=icu,
        one_per_patient=one_per_patient,
        views=_listed(views),
        modalities=_listed(modalities),
        drop_unmatched=drop_unmatched,
        absolute_paths=absolute_paths,
    )
    _report(prepare_covid19_ar(raw, out, options, force=force))


def prepare_cocross(
    raw: RawArg,
    out: OutDirOpt,
    table: Annotated[
        Path | None,
        typer.Option("--table", help="The clinical table (default: the one in RAW_DIR)."),
    ] = None,
    images: Annotated[
        Path | None, typer.Option("--images", help="Image folder (default: RAW_DIR/imgs).")
    ] = None,
    patient: Annotated[str | None, typer.Option(help="Patient column (default: ID).")] = None,
    center: CenterColumnOpt = None,
    match: Annotated[
        str, typer.Option(help="auto | dicom (PatientID = ID) | stem (file names start with ID).")
    ] = "auto",
    drop_unmatched: DropUnmatchedOpt = False,
    absolute_paths: AbsoluteOpt = False,
    force: ForceOpt = False,
) -> None:
    """CoCross: task cc (ICU outcome), several radiographs per patient, grouped by patient.

    Example: [bold]progbench prepare cocross raw/CoCross --out studies/cc[/]
    """
    from progbench.data.datasets.cocross import CocrossOptions, prepare_cocross

    options = CocrossOptions(
        table=table,
        images=images,
        patient=patient,
        center=center,
        match=match,
        drop_unmatched=drop_unmatched,
        absolute_paths=absolute_paths,
    )
    _report(prepare_cocross(raw, out, options, force=force))


def prepare_stonybrook(
    raw: RawArg,
    out: OutDirOpt,
    clinical: ClinicalOpt = None,
    one_per_patient: OnePerPatientOpt = None,
    views: ViewsOpt = None,
    modalities: ModalitiesOpt = None,
    drop_unmatched: DropUnmatchedOpt = False,
    absolute_paths: AbsoluteOpt = False,
    force: ForceOpt = False,
) -> None:
    """Stony Brook (TCIA COVID-19-NY-SBU): tasks ny-all (every frontal CXR) and ny-small (one per patient).

    --one-per-patient sets ny-small's rule (default earliest).

    Example: [bold]progbench prepare stonybrook raw/manifest-1628608914773 --out studies/ny[/]
    """
    from progbench.data.datasets.stonybrook import prepare_stonybrook
    from progbench.data.datasets.tcia import TciaOptions

    options = TciaOptions(
        clinical=clinical,
        one_per_patient=one_per_patient,
        views=_listed(views),
        modalities=_listed(modalities),
        drop_unmatched=drop_unmatched,
        absolute_paths=absolute_paths,
    )
    _report(prepare_stonybrook(raw, out, options, force=force))


def _report(result: Any) -> None:
    """What was written, the counts through the rules, and each task's classes."""
    print_wide(prepare_rules_table(result.record))
    print_wide(prepare_tasks_table(result.record))
    for name, path in result.tasks.items():
        console.print(f"task {name}: {path}", soft_wrap=True)
    console.print(f"record: {result.out / 'prepare.json'}", soft_wrap=True)


def register(root: typer.Typer) -> None:
    command(app, prepare_table, "table")
    command(app, prepare_aiforcovid, "aiforcovid")
    command(app, prepare_covid19_ar, "covid19-ar")
    command(app, prepare_cocross, "cocross")
    command(app, prepare_stonybrook, "stonybrook")
    root.add_typer(app, name="prepare")
