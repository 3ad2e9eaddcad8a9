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

from pydantic import Field, field_validator, model_validator

from progbench.config import StrictModel, label_text, parse_model
from progbench.data.manifest import BOX_COLUMNS, REQUIRED_COLUMNS
from progbench.errors import ConfigError

OnePerPatient = Literal["earliest", "latest", "first"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # outcome and task names: file and column safe
UNKNOWN_VIEW = "unknown"  # in `views`: keep images whose view is not known
RESERVED_COLUMNS = (*REQUIRED_COLUMNS, *BOX_COLUMNS, "study_date", "view", "source")


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
        if v is None:
            return None
        return [label_text(x) for x in (v if isinstance(v, list) else [v])]


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
        return self


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
