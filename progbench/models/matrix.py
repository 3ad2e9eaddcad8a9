"""The backbone x strategy matrix of `progbench models`: what each pair trains, in numbers.

Figures come from the full-size architectures built on PyTorch's `meta` device without
initialisation (`encoders.weightless`): exact shapes, no memory, no download. A strategy
without a parameter count (`counts_parameters = False`: the scikit-learn estimators, whose kNN
rows or forest nodes are not parameters) applies to every backbone with its counts left empty
(shown as "-"). Each cell builds the same classifier (2-way head) that training builds, with the
same code, so the counts are those of a real run. Rows are cached per backbone in the user
cache folder, keyed by library versions and the registry files.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from progbench.atomic import atomic_write_json
from progbench.cache.paths import cache_root
from progbench.config.variants import TokenLayout
from progbench.models.encoders import build_weightless, weightless
from progbench.models.loaders import LoadedBackbone
from progbench.models.params import count_parameters
from progbench.models.registry import (
    get_backbone_spec,
    get_strategy_spec,
    list_backbones,
    list_strategies,
    registry_source,
)
from progbench.models.strategies import build_classifier, get_strategy, resolve
from progbench.provenance import fingerprint, library_versions

ProgressFn = Callable[[int, int], None]  # (backbones done, total)
_SCHEMA = 3  # bump when the cached row layout or the counting rule changes


@dataclass(frozen=True)
class MatrixCell:
    backbone: str
    strategy: str
    applicable: bool
    reason: str | None
    trainable: int | None
    total: int | None
    percent: float | None


@dataclass(frozen=True)
class BackboneRow:
    name: str
    family: str
    library: str
    source: str | None  # hub id / weights enum / release URL
    feature_dim: int  # per token
    feature_dims: str  # per feature variant (TokenLayout.describe): `cls1 384, ..., cls4+avg 1920`
    encoder_params: int  # counted on the built architecture
    expected_params: int  # the YAML's encoder_params
    tiny: bool


@dataclass(frozen=True)
class ModelMatrix:
    backbones: list[BackboneRow]
    strategies: list[str]
    cells: list[MatrixCell]

    def to_json(self) -> dict[str, Any]:
        return {
            "backbones": [asdict(b) for b in self.backbones],
            "strategies": self.strategies,
            "cells": [asdict(c) for c in self.cells],
        }

    def cell(self, backbone: str, strategy: str) -> MatrixCell:
        return next(c for c in self.cells if (c.backbone, c.strategy) == (backbone, strategy))


def compute_row(name: str, strategies: list[str]) -> tuple[BackboneRow, list[MatrixCell]]:
    """One backbone's row, on one weightless encoder: each classifier gets a copy of it
    (adapters and requires_grad change an encoder in place; resolving changes nothing)."""
    spec = get_backbone_spec(name)
    encoder = build_weightless(spec)
    row = BackboneRow(
        name=name,
        family=spec.family,
        library=spec.library,
        source=spec.hub_id,
        feature_dim=spec.feature_dim,
        feature_dims=TokenLayout.of(spec.variants, spec.feature_dim).describe(),
        encoder_params=count_parameters(encoder).total,
        expected_params=spec.encoder_params,
        tiny=spec.tiny,
    )
    cells = []
    for s in strategies:
        res = resolve(spec, get_strategy_spec(s), encoder)
        if not res.applicable:
            cells.append(MatrixCell(name, s, False, res.reason, None, None, None))
            continue
        if not get_strategy(s).counts_parameters:
            cells.append(MatrixCell(name, s, True, None, None, None, None))
            continue
        loaded = LoadedBackbone(copy.deepcopy(encoder), spec, "random", "meta")
        with weightless():  # the head and the adapters
            model = build_classifier(loaded, s, num_classes=2)
        c = count_parameters(model)
        cells.append(MatrixCell(name, s, True, None, c.trainable, c.total, c.percent))
    return row, cells


def _row_key(name: str, strategies: list[str]) -> str:
    files = [registry_source("backbone", name)]
    spec = get_backbone_spec(name)
    if spec.twin_of:
        files.append(registry_source("backbone", spec.twin_of))
    files += [registry_source("strategy", s) for s in strategies]
    return fingerprint(
        {
            "schema": _SCHEMA,
            "versions": library_versions(),
            "files": {str(f.name): f.read_text() for f in files},
            "strategies": strategies,
        }
    )


def compute_matrix(
    backbones: list[str] | None = None,
    strategies: list[str] | None = None,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
) -> ModelMatrix:
    """The matrix for `backbones` (default: the study's 11) x `strategies` (default: all)."""
    names = backbones if backbones is not None else list_backbones()
    strats = strategies if strategies is not None else list_strategies()
    for n in names:
        get_backbone_spec(n)  # unknown names fail before any work, with the list of known ones
    for s in strats:
        get_strategy_spec(s)
    folder = cache_root() / "models-matrix"
    rows, cells = [], []
    for i, n in enumerate(names):
        if progress:
            progress(i, len(names))
        path = folder / f"{n}-{_row_key(n, strats)}.json"
        if use_cache and path.is_file():
            data = json.loads(path.read_text())
            row, row_cells = BackboneRow(**data["row"]), [MatrixCell(**c) for c in data["cells"]]
        else:
            row, row_cells = compute_row(n, strats)
            if use_cache:
                atomic_write_json(
                    path, {"row": asdict(row), "cells": [asdict(c) for c in row_cells]}
                )
        rows.append(row)
        cells.extend(row_cells)
    if progress:
        progress(len(names), len(names))
    return ModelMatrix(rows, strats, cells)


def format_percent(p: float) -> str:
    """Three significant digits: 0.0673, 1.35, 100."""
    return f"{p:.3g}"


def cell_text(c: MatrixCell) -> str:
    """The percent, `-` (applies, not counted) or `n/a` (does not apply)."""
    if c.percent is not None:
        return format_percent(c.percent)
    return "-" if c.applicable else "n/a"


def uncounted_note(matrix: ModelMatrix) -> list[str]:
    names = [s for s in matrix.strategies if not get_strategy(s).counts_parameters]
    if not names:
        return []
    return [
        f"{', '.join(names)}: scikit-learn estimators on the frozen features; no backbone "
        "parameter trains and the estimator's own size is not a parameter count"
    ]


def not_applicable_notes(matrix: ModelMatrix) -> list[str]:
    """One line per (backbone, reason): '<backbone> x <strategies>: <reason>'."""
    groups: dict[tuple[str, str], list[str]] = {}
    for c in matrix.cells:
        if not c.applicable:
            groups.setdefault((c.backbone, c.reason or ""), []).append(c.strategy)
    return [f"{b} x {', '.join(s)}: {' '.join(r.split())}" for (b, r), s in groups.items()]


def to_markdown(matrix: ModelMatrix) -> str:
    """The matrix as Markdown tables (docs/MODELS.md is produced with `--markdown`)."""
    lines = [
        "| backbone | library | source | feature dim | encoder params |",
        "|---|---|---|---:|---:|",
    ]
    for b in matrix.backbones:
        lines.append(
            f"| {b.name} | {b.library} | {b.source or '-'} | {b.feature_dims} | "
            f"{b.encoder_params / 1e6:.2f}M |"
        )
    lines += ["", "| backbone | " + " | ".join(matrix.strategies) + " |"]
    lines.append("|---|" + "---:|" * len(matrix.strategies))
    for b in matrix.backbones:
        row = []
        for s in matrix.strategies:
            c = matrix.cell(b.name, s)
            row.append(cell_text(c))
        lines.append(f"| {b.name} | " + " | ".join(row) + " |")
    notes = not_applicable_notes(matrix)
    if notes:
        lines += ["", "Not applicable (n/a):", ""] + [f"- {n}" for n in notes]
    for note in uncounted_note(matrix):
        lines += ["", f"Not counted (-): {note}."]
    return "\n".join(lines) + "\n"
