"""The column map and rules of `progbench prepare`, as pydantic models (unknown keys are errors).

A `PrepareSpec` says everything that turns clinical tables and image folders into manifests:
which table columns hold the id, patient, centre and outcomes, how a row finds its images, which
selection rules apply, and which manifests and tasks to write. `prepare table` builds one from
options or a map YAML (`MapFile`); each dataset adapter from its preset in
progbench/configs/datasets/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    SerializationInfo,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from progbench.config import StrictModel, label_text, parse_model
from progbench.data.manifest import BOX_COLUMNS, REQUIRED_COLUMNS
from progbench.errors import ConfigError

OnePerPatient = Literal["earliest", "latest", "first"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # outcome and task names: file and column safe
UNKNOWN_VIEW = "unknown"  # in `views`: keep images whose view is not known
RESERVED_COLUMNS = (*REQUIRED_COLUMNS, *BOX_COLUMNS, "study_date", "view", "source")
IMAGE_WAYS = ("path", "path_template", "dicom_match", "stem_match")
# The rows' centre when sources give it differently and the shared map names no centre column.
CENTER_COLUMN = "_center"


class OutcomeSpec(StrictModel):
    """One outcome: the table column that holds it and its declared values."""

    column: str
    positive: str
    negative: list[str] | None = None  # None: every other non-empty value is negative

    @field_validator("positive", mode="before")
    @classmethod
    def _positive_text(cls, v: Any) -> str:
        return label_text(v)

    @field_validator("negative", mode="before")
    @classmethod
    def _negative_text(cls, v: Any) -> list[str] | None:
        return _labels(v)


class DicomMatch(StrictModel):
    """Match DICOM files to rows: the header `tag` (a keyword such as PatientID) equals `column`."""

    tag: str
    column: str

    @field_validator("tag")
    @classmethod
    def _known_keyword(cls, v: str) -> str:
        from pydicom.datadict import tag_for_keyword

        if tag_for_keyword(v) is None:
            raise ValueError(f"{v!r} is not a DICOM keyword (e.g. PatientID, AccessionNumber)")
        return v


class BoxColumns(StrictModel):
    """Table columns holding a lung box in pixels of the decoded image (x = column)."""

    x0: str
    y0: str
    x1: str
    y1: str


class BoxFile(StrictModel):
    """Boxes in a separate table, `[min_row, min_col, max_row, max_col]` strings (skimage order).

    `margin_percent` enlarges width and height by that share in total (half per side); `square`
    then pads the shorter side to the longer one; both stay inside the image.
    """

    path: Path
    sheet: str | int | None = None
    id_column: str = "img"
    box_column: str = "all"
    margin_percent: float = Field(default=5.0, ge=0, le=100)
    square: bool = True
    missing: Literal["error", "full"] = "error"  # an image without a box: error or no crop


class ColumnMap(StrictModel):
    """Which columns of the clinical table hold what, and how a row finds its image(s)."""

    id: str | None = (
        None  # image id (one image per row); DICOM/stem matching: defaults to its column
    )
    patient: str | None = None  # default: the id column
    center: str | None = None  # default: one centre named `center_name`
    center_name: str = "all"
    center_from_source: bool = False  # centre = the source's name (several tables/releases)
    path: str | None = None  # a column of paths, relative to the image root or absolute
    path_template: str | None = None  # e.g. "{ImageFile}.dcm": fields are column names
    dicom_match: DicomMatch | None = None
    stem_match: str | None = None  # files named <value> or <value><_-. >anything
    outcomes: dict[str, OutcomeSpec]
    date: str | None = None  # study date column; default: DICOM StudyDate when read
    view: str | None = None  # view column; default: DICOM ViewPosition when read
    boxes: BoxColumns | None = None

    @model_validator(mode="after")
    def _one_way_to_images(self) -> ColumnMap:
        ways = [
            n
            for n, v in (
                ("path", self.path),
                ("path_template", self.path_template),
                ("dicom_match", self.dicom_match),
                ("stem_match", self.stem_match),
            )
            if v is not None
        ]
        if len(ways) != 1:
            raise ValueError(
                "give exactly one way to find images: path (a column), path_template, "
                f"dicom_match or stem_match; got {ways or 'none'}"
            )
        if self.center_from_source and self.center is not None:
            raise ValueError("give a centre column or take the centre from the source, not both")
        if self.id is None and self.match_column is None:
            raise ValueError("`id` is required with `path` or `path_template`")
        if not self.outcomes:
            raise ValueError("give at least one outcome")
        for name in self.outcomes:
            _check_name(name, "outcome")
            if name in RESERVED_COLUMNS:
                raise ValueError(f"outcome name {name!r} is a manifest column; choose another")
        return self

    @property
    def match_column(self) -> str | None:
        if self.dicom_match is not None:
            return self.dicom_match.column
        return self.stem_match

    @property
    def id_column(self) -> str:
        return self.id or self.match_column or ""

    @property
    def patient_column(self) -> str:
        return self.patient or self.id_column

    @property
    def one_image_per_row(self) -> bool:
        return self.path is not None or self.path_template is not None

    @property
    def image_way(self) -> str:
        return next(w for w in IMAGE_WAYS if getattr(self, w) is not None)

    def needed_columns(self) -> dict[str, str]:
        """Every table column the map names, with what it is for (for a missing-column error)."""
        import string

        needed = {self.id_column: "id", self.patient_column: "patient"}
        for col, why in (
            (self.center, "centre"),
            (self.path, "image path"),
            (self.match_column, "image matching"),
            (self.date, "study date"),
            (self.view, "view"),
        ):
            if col is not None:
                needed[col] = why
        for name, o in self.outcomes.items():
            needed[o.column] = f"outcome {name!r}"
        if self.boxes is not None:
            needed |= {col: "box" for col in self.boxes.model_dump().values()}
        if self.path_template is not None:
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(self.path_template) if f]
            except ValueError:  # malformed: reported by locate.check_template
                fields = []
            needed |= {f: "path template" for f in fields}
        return needed

    def roles(self) -> dict[str, str]:
        """The columns the rules read by their shared name: role -> column."""
        roles = {"id": self.id_column, "patient": self.patient_column}
        if self.boxes is not None:
            roles |= {f"box {k}": v for k, v in self.boxes.model_dump().items()}
        return roles | {f"outcome {n!r}": o.column for n, o in self.outcomes.items()}


class SourceOutcome(StrictModel):
    """A source's own column and values of a shared outcome (unset keys: the shared ones)."""

    column: str | None = None
    positive: str | None = None
    negative: list[str] | None = None  # set to null: every other non-empty value is negative

    @field_validator("positive", mode="before")
    @classmethod
    def _positive_text(cls, v: Any) -> str:
        if v is None:
            raise ValueError("a positive value is needed (leave the key out for the shared one)")
        return label_text(v)

    @field_validator("negative", mode="before")
    @classmethod
    def _negative_text(cls, v: Any) -> list[str] | None:
        return _labels(v)


class SourceColumns(StrictModel):
    """A partial column map: the keys one source sets in place of the shared `columns:`.

    Only the keys given count (a key set to null removes the shared one, e.g. `center: null`
    with a `center_name`); an image way given replaces the shared way, as on the command line.
    """

    id: str | None = None
    patient: str | None = None
    center: str | None = None
    center_name: str = "all"
    path: str | None = None
    path_template: str | None = None
    dicom_match: DicomMatch | None = None
    stem_match: str | None = None
    date: str | None = None
    view: str | None = None
    boxes: BoxColumns | None = None
    outcomes: dict[str, SourceOutcome] = Field(default_factory=dict)


class Rules(StrictModel):
    """Selection rules applied to every output, in this order (each is counted)."""

    exclude_ids: list[str] = Field(default_factory=list)  # rows whose id is listed are dropped
    exclude_reason: str = ""
    modalities: list[str] | None = None  # DICOM Modality values kept, e.g. [CR, DX]
    views: list[str] | None = None  # views kept, e.g. [PA, AP]; "unknown" keeps unknown views
    view_from_description: bool = False  # no ViewPosition: read PA/AP/LAT from SeriesDescription
    # TCIA/NBIA layouts: a folder is one series, so a folder whose first file is of another
    # modality is skipped unread (a CT series has hundreds of slices).
    prune_series_folders: bool = False
    unmatched: Literal["error", "drop"] = "error"  # rows that find no image file at all
    # A patient whose images carry different labels of a task's outcome: an error listing them,
    # or the patient is dropped from that output (counted). Not checked for per-image labels.
    conflicting_labels: Literal["error", "drop"] = "error"

    @field_validator("exclude_ids", mode="before")
    @classmethod
    def _ids_text(cls, v: Any) -> list[str]:
        return [str(x) for x in v] if isinstance(v, list) else v


class OutputSpec(StrictModel):
    """One manifest and the tasks that use it."""

    manifest: str = "manifest.csv"
    tasks: dict[str, str]  # task name -> outcome name
    one_per_patient: OnePerPatient | None = None
    descriptions: dict[str, str] = Field(default_factory=dict)
    per_image_labels: bool = False  # its tasks' labels belong to images, not patients

    @model_validator(mode="after")
    def _names(self) -> OutputSpec:
        if not self.manifest.endswith(".csv") or "/" in self.manifest:
            raise ValueError(f"manifest must be a .csv file name, got {self.manifest!r}")
        if not self.tasks:
            raise ValueError("an output needs at least one task")
        for name in self.tasks:
            _check_name(name, "task")
        return self


class TableSource(StrictModel):
    """One clinical table and the folder its image paths are relative to."""

    table: Path
    images: Path
    sheet: str | int | None = None
    header_row: int = Field(default=0, ge=0)  # 0-based row of the header (pandas `header=`)
    encoding: str | None = None  # CSV text encoding; None: detected (utf-8, cp1252, latin-1)
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)  # None: sniffed
    name: str | None = None  # the source's name (manifest `source` column); default: table stem
    columns: SourceColumns | None = None  # this source's keys in place of the shared map's

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str | None) -> str | None:
        import codecs

        if v is not None:
            try:
                codecs.lookup(v)
            except LookupError:
                raise ValueError(
                    f"{v!r} is not a text encoding (e.g. utf-8, utf-8-sig, cp1252, latin-1)"
                ) from None
        return v

    @field_serializer("columns")
    def _given_keys(self, v: SourceColumns | None, info: SerializationInfo) -> Any:
        """Only the keys given: an unset key and a key set to null mean different things."""
        return None if v is None else v.model_dump(mode=info.mode, exclude_unset=True)

    @property
    def label(self) -> str:
        return self.name or self.table.stem


class PrepareSpec(StrictModel):
    """Everything `prepare` needs, recorded in prepare.json."""

    sources: list[TableSource] = Field(min_length=1)
    columns: ColumnMap
    rules: Rules = Rules()
    outputs: list[OutputSpec] = Field(min_length=1)
    box_file: BoxFile | None = None
    absolute_paths: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> PrepareSpec:
        manifests = [o.manifest for o in self.outputs]
        if len(set(manifests)) != len(manifests):
            raise ValueError(f"two outputs write the same manifest: {manifests}")
        tasks = [t for o in self.outputs for t in o.tasks]
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"task names must be unique: {tasks}")
        for o in self.outputs:
            unknown = sorted(set(o.tasks.values()) - set(self.columns.outcomes))
            if unknown:
                raise ValueError(f"tasks of {o.manifest} use undeclared outcomes {unknown}")
        labels = [s.label for s in self.sources]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"sources need distinct names, got {labels}: give each a `name` (--source-name)"
            )
        if self.box_file is not None and self.columns.boxes is not None:
            raise ValueError("give box columns or a box file, not both")
        maps = self.source_columns()  # each source's keys make a valid, compatible map
        target = self.center_target()
        for s, m in zip(self.sources, maps, strict=True):
            copied_columns(self.columns, m, target, s.label)
        return self

    def source_columns(self) -> list[ColumnMap]:
        """Each source's effective column map: the shared one with the source's keys on top."""
        return [effective_columns(self.columns, s.columns, s.label) for s in self.sources]

    def center_target(self) -> str | None:
        """The column the rows' centre is normalised into, when the sources give it differently.

        None: nothing to normalise (the centre is the source, or every source gives it alike).
        """
        c = self.columns
        own = [s.columns.model_fields_set for s in self.sources if s.columns is not None]
        if c.center_from_source or not any({"center", "center_name"} & keys for keys in own):
            return None
        return c.center or CENTER_COLUMN


class MapFile(StrictModel):
    """A column map YAML for `prepare table --map`: the column map plus rules and table options.

    `sources` (optional) lists the tables and image roots (relative paths: from the map file's
    folder); tables and image roots given on the command line replace them.
    """

    sources: list[TableSource] | None = None
    sheet: str | int | None = None
    header_row: int = Field(default=0, ge=0)
    encoding: str | None = None
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    columns: ColumnMap
    rules: Rules = Rules()
    one_per_patient: OnePerPatient | None = None
    per_image_labels: bool = False
    absolute_paths: bool = False


def effective_columns(shared: ColumnMap, own: SourceColumns | None, label: str) -> ColumnMap:
    """The shared map with a source's keys on top (an image way given replaces the shared one),
    checked to find images the same kind of way as the shared map."""
    if own is None:
        return shared
    given = own.model_dump(exclude_unset=True)
    data = shared.model_dump()
    outcomes = given.pop("outcomes", {})
    if any(way in given for way in IMAGE_WAYS):
        for way in IMAGE_WAYS:
            data[way] = None
    data.update(given)
    for name, o in outcomes.items():
        if name not in data["outcomes"]:
            raise ValueError(
                f"source {label!r}: outcome {name!r} is not a shared outcome "
                f"({', '.join(map(repr, data['outcomes']))}); declare it in `columns.outcomes`, "
                "then give the source's own column or values under the source's `columns`"
            )
        data["outcomes"][name] = {**data["outcomes"][name], **o}
    ways = [w for w in IMAGE_WAYS if data[w] is not None]
    per_row = {"path", "path_template"}
    if len(ways) == 1 and (ways[0] in per_row) != shared.one_image_per_row:
        raise ValueError(
            f"source {label!r} finds its images by {ways[0]} but the shared columns by "
            f"{shared.image_way}: every source must find its images the same kind of way, "
            "either a path per row (`path` or `path_template`, one image per row) or "
            "matching files (`stem_match` or `dicom_match`, every file that matches a row)"
        )
    try:
        m = ColumnMap.model_validate(data)
    except ValidationError as err:
        why = "; ".join(
            ".".join(map(str, e["loc"]))
            + (": " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in err.errors()
        )
        raise ValueError(f"source {label!r}: its column map is not valid: {why}") from None
    if (m.boxes is None) != (shared.boxes is None):
        raise ValueError(
            f"source {label!r}: `boxes` are given in the shared columns (for every source) and "
            "may be renamed per source, not added or removed"
        )
    return m


def copied_columns(
    shared: ColumnMap, own: ColumnMap, center_target: str | None, label: str
) -> dict[str, tuple[str | None, str]]:
    """What normalising a source's rows copies: shared column -> (source column, role).

    The source column is None for a constant (the source's `center_name`). A copy may not
    overwrite a column the source reads for something else, nor two of the source's columns
    go under one shared name.
    """
    copies: dict[str, tuple[str | None, str]] = {}
    pairs = [(shared.roles()[r], col, r) for r, col in own.roles().items()]
    if center_target is not None:
        pairs.append((center_target, own.center, "centre"))
    for target, col, role in pairs:
        if target == col:
            continue
        if target in copies and copies[target][0] != col:
            other = copies[target][1]
            raise ValueError(
                f"source {label!r} gives {other} and {role} in different columns, but the "
                f"shared columns give both in {target!r}: give them apart in the shared map too"
            )
        copies[target] = (col, role)
    read = own.needed_columns()
    for target, (_, role) in copies.items():
        if target in read:
            raise ValueError(
                f"source {label!r} reads column {target!r} as its {read[target]}, but "
                f"{target!r} is the shared {role} column, which its {role} would be copied "
                "into: rename the column in the shared map or in the source"
            )
    return copies


def _labels(v: Any) -> list[str] | None:
    if v is None:
        return None
    return [label_text(x) for x in (v if isinstance(v, list) else [v])]


def _check_name(name: str, what: str) -> None:
    import re

    if not re.match(NAME_PATTERN, name):
        raise ValueError(f"{what} name {name!r} must be letters, digits, '.', '_' or '-'")


def parse_outcome_option(text: str) -> tuple[str, OutcomeSpec]:
    """`NAME=COLUMN:POSITIVE[,NEGATIVE...]`, e.g. `death=Outcome:Dead,Alive`."""
    name, sep, rest = text.partition("=")
    column, sep2, values = rest.rpartition(":")
    parts = [v.strip() for v in values.split(",")]
    if not sep or not sep2 or not name.strip() or not column.strip() or not parts[0]:
        raise ConfigError(
            f"--outcome {text!r} is not NAME=COLUMN:POSITIVE[,NEGATIVE...]",
            "For example --outcome death=Outcome:Dead,Alive (Dead is positive, Alive negative).",
        )
    negative = [v for v in parts[1:] if v] or None
    spec = parse_model(
        OutcomeSpec,
        {"column": column.strip(), "positive": parts[0], "negative": negative},
        f"--outcome {text}",
    )
    return name.strip(), spec


def parse_column_value(text: str, option: str) -> tuple[str, str]:
    """`LEFT=RIGHT` options such as --dicom-match PatientID=PATIENT_ID."""
    left, sep, right = text.partition("=")
    if not sep or not left.strip() or not right.strip():
        raise ConfigError(f"{option} {text!r} must be LEFT=RIGHT, e.g. PatientID=PATIENT_ID")
    return left.strip(), right.strip()
