"""What every dataset adapter shares: its preset file, finding the release's files, the errors
that say what was expected and where the dataset is downloaded, and running the pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field

from progbench.config import StrictModel, parse_model
from progbench.config.registry import CONFIGS_DIR, Registry
from progbench.data.prepare.dicomscan import nbia_series_folders
from progbench.data.prepare.locate import Roots
from progbench.data.prepare.pipeline import PrepareContext, prepare
from progbench.data.prepare.schema import ColumnMap, OutputSpec, PrepareSpec, Rules, TableSource
from progbench.data.prepare.tables import MissingColumnError
from progbench.data.prepare.write import PrepareResult
from progbench.errors import ConfigError, PrepareError

PRESETS_DIR = CONFIGS_DIR / "datasets"
DOCS = "docs/DATASETS.md"
TABLE_HINT = (
    "or describe the release yourself with a column map: `progbench prepare table TABLE IMAGES "
    "--out DIR --id COLUMN --outcome NAME=COLUMN:POSITIVE,NEGATIVE ...` "
    f"({DOCS}, section 'prepare table')."
)


class DatasetPreset(StrictModel):
    """A dataset's column map, rules and outputs, with where it comes from and what the study
    reported. Each adapter extends it with the files its release holds."""

    name: str
    title: str
    download: str
    access: str
    columns: ColumnMap
    rules: Rules = Rules()
    outputs: list[OutputSpec]
    choices: dict[str, str] = Field(default_factory=dict)  # rules chosen where facts are missing
    study: dict[str, Any] = Field(default_factory=dict)  # what the reference study reports/did


P = TypeVar("P", bound=DatasetPreset)
DATASETS = Registry(PRESETS_DIR, None, DatasetPreset, label="dataset preset", error=ConfigError)


def load_preset(name: str, model: type[P]) -> P:
    """A dataset's preset, validated with its adapter's schema (a DatasetPreset subclass)."""
    return DATASETS.load_as(name, model)


def missing_file(
    preset: DatasetPreset, what: str, expected: str, option: str | None
) -> PrepareError:
    override = f"pass {option} if yours is elsewhere or named otherwise, " if option else ""
    return PrepareError(
        f"{preset.title}: {what} not found (expected {expected})",
        f"Download it from {preset.download} (see {DOCS}, section {preset.title!r}); "
        f"{override}{TABLE_HINT}",
    )


def find_one(root: Path, name: str, depth: int = 2) -> Path | None:
    """`root/name`, else the one file of that name at most `depth` folders down."""
    if (root / name).is_file():
        return root / name
    found: list[Path] = []
    for d in range(1, depth + 1):
        found += sorted(p for p in root.glob("/".join(["*"] * d) + f"/{name}") if p.is_file())
        if found:
            return found[0]
    return None


def nbia_roots(
    raw: Path, collection: str, modalities: Sequence[str]
) -> tuple[Roots, dict[str, Any], Path | None]:
    """Where an NBIA download's images are, and which series folders to scan.

    The collection folder (`<raw>/[manifest-*/]<collection>/`) is the image root, else `raw`.
    With a metadata.csv beside it, only series of the kept modalities are scanned; without
    one, every folder is walked and CT/MR series folders are skipped after their first file.
    """
    metadata = find_one(raw, "metadata.csv", depth=1)
    base = metadata.parent if metadata is not None else raw
    root = next((p for p in (base / collection, raw / collection) if p.is_dir()), raw)
    if metadata is None or not modalities:  # no modality rule: every series is scanned
        scan: dict[str, Any] = {
            "image_root": str(root),
            "metadata_csv": str(metadata) if metadata else None,
        }
        return Roots(images=root), scan, metadata
    sel = nbia_series_folders(metadata, {m.upper() for m in modalities})
    present = [f for f in sel.folders if f.is_dir()]
    scan = {
        "image_root": str(root),
        "metadata_csv": str(metadata),
        "series_kept": len(sel.folders),
        "series_of_other_modalities": sel.excluded_series,
        "series_listed_but_absent": len(sel.folders) - len(present),
    }
    return Roots(images=root, folders=present, other_values=sel.other_subjects), scan, metadata


def run_preset(
    preset: DatasetPreset,
    sources: list[TableSource],
    out: Path,
    force: bool,
    context: PrepareContext,
    columns: ColumnMap | None = None,
    rules: Rules | None = None,
    outputs: list[OutputSpec] | None = None,
    column_hints: dict[str, str] | None = None,
    **spec_fields: Any,
) -> PrepareResult:
    """Run the pipeline with the preset (or its overridden parts); name the dataset in errors.

    `column_hints`: what to say when that column is missing (e.g. the option that renames it).
    """
    # Validated as a whole: the overrides were applied with model_copy, which does not validate.
    data = {
        "sources": [s.model_dump() for s in sources],
        "columns": (columns or preset.columns).model_dump(),
        "rules": (rules or preset.rules).model_dump(),
        "outputs": [o.model_dump() for o in outputs or preset.outputs],
        **{k: v.model_dump() if isinstance(v, StrictModel) else v for k, v in spec_fields.items()},
    }
    spec = parse_model(PrepareSpec, data, f"the {preset.name} preset with these options")
    context.notes = {
        "dataset": preset.name,
        "download": preset.download,
        "access": preset.access,
        "choices": preset.choices,
        "study": preset.study,
        **context.notes,
    }
    try:
        return prepare(spec, out, force=force, context=context)
    except MissingColumnError as err:
        hints = column_hints or {}
        specific = [hints[c] for c in err.columns if c in hints]
        raise PrepareError(
            f"{preset.title}: {err.message}",
            " ".join([*specific, err.hint or ""]) + f" The adapter expects the columns of the "
            f"release described in {DOCS} "
            f"(section {preset.title!r}), downloaded from {preset.download}; "
            f"{TABLE_HINT}",
        ) from err
