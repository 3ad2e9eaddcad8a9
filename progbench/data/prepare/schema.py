"""The column map and rules of `progbench prepare`, as pydantic models (unknown keys are errors).

A `PrepareSpec` says everything that turns clinical tables and image folders into manifests:
which table columns hold the id, patient, centre and outcomes, how a row finds its images, which
selection rules apply, and which manifests and tasks to write. `prepare table` builds one from
options or a map YAML (`MapFile`); each dataset adapter from its preset in
progbench/configs/datasets/. The column map itself (ColumnMap, OutcomeSpec, per-source
SourceColumns and their checks) is in columnmap.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    SerializationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from progbench.config import StrictModel, parse_model
from progbench.data.prepare.columnmap import (
    ColumnMap,
    OutcomeSpec,
    SourceColumns,
    check_name,
    copied_columns,
    effective_columns,
)
from progbench.errors import ConfigError

OnePerPatient = Literal["earliest", "latest", "first"]
UNKNOWN_VIEW = "unknown"  # in `views`: keep images whose view is not known
# The rows' centre when sources give it differently and the shared map names no centre column.
CENTER_COLUMN = "_center"


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
            check_name(name, "task")
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
