"""The registries of backbones and strategy presets, one YAML file per entry, validated on load.

Each kind is a progbench.config.registry.Registry: a folder of `progbench/configs/` plus every
folder named in its environment variable (os.pathsep-separated): backbones in `models/` and
`$PROGBENCH_MODELS_DIR`, strategies in `strategies/` and `$PROGBENCH_STRATEGIES_DIR`. A file's
name (without .yaml) must equal its `name`. The training presets (progbench.config.training,
looked up there) are parsed here too, so that `registry_fingerprint` and `registry_source`
cover every file a run's settings come from.

A tiny twin names its full-size backbone in `twin_of` and inherits every field it does not set,
except those that describe one concrete model (`_NOT_INHERITED`).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from progbench.config import BackboneSpec, StrategySpec
from progbench.config.models import check_estimator_fields
from progbench.config.registry import CONFIGS_DIR, Registry, Stamp
from progbench.config.training import TRAINING_PRESETS
from progbench.errors import RegistryError

MODELS_DIR_ENV = "PROGBENCH_MODELS_DIR"
STRATEGIES_DIR_ENV = "PROGBENCH_STRATEGIES_DIR"
_NOT_INHERITED = (
    "name",
    "description",
    "order",
    "hub_id",
    "encoder_params",
    "forward_gflops",
    "twin_of",
    "tiny",
)
_SCHEMA_HINT = "See docs/MODELS.md for the YAML schema and an example."

Kind = Literal["backbone", "strategy", "training"]

__all__ = [
    "BackboneSpec",
    "StrategySpec",
    "get_backbone_spec",
    "get_strategy_spec",
    "list_backbones",
    "list_strategies",
    "registry_fingerprint",
]


_REGISTRIES: dict[Kind, Registry[Any]] = {
    "backbone": Registry(
        CONFIGS_DIR / "models", MODELS_DIR_ENV, BackboneSpec, label="backbone", hint=_SCHEMA_HINT
    ),
    "strategy": Registry(
        CONFIGS_DIR / "strategies",
        STRATEGIES_DIR_ENV,
        StrategySpec,
        label="strategy",
        plural="strategies",
        hint=_SCHEMA_HINT,
    ),
    "training": TRAINING_PRESETS,  # progbench.config.training's; here for the fingerprint
}


@dataclass(frozen=True)
class _Entries:
    entries: dict[Kind, dict[str, Any]]  # kind -> name -> parsed spec
    files: dict[str, Path]  # "<kind>:<name>" -> source file
    fingerprint: str
    estimators_checked: set[str] = field(default_factory=set)  # sklearn presets, by name


def _merge_twin(name: str, raw: dict[str, dict[str, Any]], path: Path) -> dict[str, Any]:
    data = raw[name]
    base_name = data.get("twin_of")
    if base_name is None:
        return data
    if base_name not in raw:
        raise RegistryError(
            f"{path}: twin_of {base_name!r} is not a known backbone",
            f"Known backbones: {', '.join(sorted(raw))}.",
        )
    if raw[base_name].get("twin_of") is not None:
        raise RegistryError(f"{path}: twin_of must name a full-size backbone, not another twin")
    merged = {k: copy.deepcopy(v) for k, v in raw[base_name].items() if k not in _NOT_INHERITED}
    merged.update(data)
    return merged


def _build(kinds: tuple[Kind, ...]) -> _Entries:
    entries: dict[Kind, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    for kind in kinds:
        reg = _REGISTRIES[kind]
        paths = reg.paths()
        raw = {n: reg.read(p) for n, p in paths.items()}
        entries[kind] = {
            n: reg.parse(_merge_twin(n, raw, p) if kind == "backbone" else raw[n], p)
            for n, p in paths.items()
        }
        files |= {f"{kind}:{n}": p for n, p in paths.items()}
    h = hashlib.sha256()
    for key in sorted(files):
        h.update(key.encode() + b"\0" + files[key].read_bytes() + b"\0")
    return _Entries(entries, files, h.hexdigest()[:16])


@lru_cache(maxsize=8)
def _cached(stamps: tuple[tuple[Kind, Stamp], ...]) -> _Entries:
    return _build(tuple(kind for kind, _ in stamps))


def _registry() -> _Entries:
    # Re-parse when a file or an env variable changes; otherwise reuse the parsed registry.
    return _cached(tuple((kind, reg.stamp()) for kind, reg in _REGISTRIES.items()))


def _get(kind: Kind, name: str, known: Callable[[], list[str]]) -> Any:
    entries = _registry().entries[kind]
    if name not in entries:
        raise _REGISTRIES[kind].unknown(name, known())
    return entries[name]


def list_backbones(include_tiny: bool = False) -> list[str]:
    """Backbone names in display order (the reference study's order first)."""
    specs = _registry().entries["backbone"].values()
    return [
        s.name
        for s in sorted(specs, key=lambda s: (s.tiny, s.order, s.name))
        if include_tiny or not s.tiny
    ]


def get_backbone_spec(name: str) -> BackboneSpec:
    return _get("backbone", name, lambda: list_backbones(include_tiny=True))


def list_strategies() -> list[str]:
    specs = _registry().entries["strategy"].values()
    return [s.name for s in sorted(specs, key=lambda s: (s.order, s.name))]


def get_strategy_spec(name: str) -> StrategySpec:
    spec: StrategySpec = _get("strategy", name, list_strategies)
    if spec.kind == "sklearn":
        _check_estimator(_registry(), name, spec)
    return spec


def _check_estimator(registry: _Entries, name: str, spec: StrategySpec) -> None:
    """The estimator checks that import scikit-learn, once per version of the preset's file:
    on lookup, so reading the presets (`progbench sweep plan`) does not import it."""
    if name in registry.estimators_checked:
        return
    try:
        check_estimator_fields(spec)
    except ValueError as err:
        source = registry.files[f"strategy:{name}"]
        raise RegistryError(f"{source} is invalid:\n  - estimator: {err}", _SCHEMA_HINT) from err
    registry.estimators_checked.add(name)


def registry_source(kind: Kind, name: str) -> Path:
    """The YAML file an entry came from."""
    return _registry().files[f"{kind}:{name}"]


def registry_fingerprint() -> str:
    """Hash of every registry file's name and content: any edit changes it."""
    return _registry().fingerprint
