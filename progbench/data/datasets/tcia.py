"""Options and rule overrides shared by the TCIA adapters (COVID-19-AR, Stony Brook)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from progbench.data.datasets.common import DatasetPreset
from progbench.data.prepare.schema import OutputSpec, Rules


@dataclass(frozen=True)
class TciaOptions:
    """Options shared by the TCIA adapters (COVID-19-AR, Stony Brook)."""

    clinical: Path | None = None
    one_per_patient: str | None = None  # None: the preset's rule
    views: list[str] | None = None  # None: the preset's; [] keeps every view
    modalities: list[str] | None = None
    drop_unmatched: bool = False
    absolute_paths: bool = False


def tcia_rules(preset: DatasetPreset, options: TciaOptions) -> Rules:
    """The preset's rules with the command line's --views, --modalities, --drop-unmatched."""
    update: dict[str, object] = {}
    if options.views is not None:
        update["views"] = options.views or None
    if options.modalities is not None:
        update["modalities"] = options.modalities or None
    if options.drop_unmatched:
        update["unmatched"] = "drop"
    return preset.rules.model_copy(update=update)


def tcia_outputs(preset: DatasetPreset, options: TciaOptions) -> list[OutputSpec]:
    """The preset's outputs; --one-per-patient replaces the rule of those that have one."""
    if options.one_per_patient is None:
        return preset.outputs
    return [
        o.model_copy(update={"one_per_patient": options.one_per_patient})
        if o.one_per_patient
        else o
        for o in preset.outputs
    ]
