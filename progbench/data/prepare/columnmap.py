"""The column map of `progbench prepare`: which table columns hold what, as pydantic models.

`ColumnMap` names the columns of the id, patient, centre, outcomes (`OutcomeSpec`), dates, views
and boxes (`BoxColumns`), and the one way a row finds its image(s) (a path column, a path
template, a DICOM header match (`DicomMatch`) or a file-name prefix). A source's own keys
(`SourceColumns`, `SourceOutcome`) override the shared map for that source only:
`effective_columns` merges and checks them, `copied_columns` says what normalising its rows
copies. schema.PrepareSpec holds them with the rules and outputs.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from progbench.config import StrictModel, label_text
from progbench.data.manifest import BOX_COLUMNS, REQUIRED_COLUMNS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # outcome and task names: file and column safe
RESERVED_COLUMNS = (*REQUIRED_COLUMNS, *BOX_COLUMNS, "study_date", "view", "source")
IMAGE_WAYS = ("path", "path_template", "dicom_match", "stem_match")


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
            check_name(name, "outcome")
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
    pairs: list[tuple[str, str | None, str]] = [
        (shared.roles()[r], col, r) for r, col in own.roles().items()
    ]
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


def check_name(name: str, what: str) -> None:
    """An outcome or task name must be safe as a file and column name (NAME_PATTERN)."""
    import re

    if not re.match(NAME_PATTERN, name):
        raise ValueError(f"{what} name {name!r} must be letters, digits, '.', '_' or '-'")
