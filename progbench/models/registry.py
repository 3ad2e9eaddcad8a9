"""The registries: backbones, strategy presets and training presets, one YAML file per entry,
validated on load.

Each kind lives in a folder of `progbench/configs/` plus every folder named in its environment
variable (os.pathsep-separated): backbones in `models/` and `$PROGBENCH_MODELS_DIR`, strategies
in `strategies/` and `$PROGBENCH_STRATEGIES_DIR`, training presets in `training/` and
`$PROGBENCH_TRAINING_DIR`. A file's name (without .yaml) must equal its `name`.

A tiny twin names its full-size backbone in `twin_of` and inherits every field it does not set,
except those that describe one concrete model (`_NOT_INHERITED`).
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from progbench.config import BackboneSpec, StrategySpec, parse_model, read_yaml
from progbench.config.models import check_estimator_fields
from progbench.config.training import TrainingPreset
from progbench.errors import ConfigError, RegistryError

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
MODELS_DIR_ENV = "PROGBENCH_MODELS_DIR"
STRATEGIES_DIR_ENV = "PROGBENCH_STRATEGIES_DIR"
TRAINING_DIR_ENV = "PROGBENCH_TRAINING_DIR"
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
    "TrainingPreset",
    "get_backbone_spec",
    "get_strategy_spec",
    "get_training_preset",
    "list_backbones",
    "list_strategies",
    "list_training_presets",
    "registry_fingerprint",
]


@dataclass(frozen=True)
class _KindInfo:
    folder: str  # under CONFIGS_DIR
    env: str
    schema: type
    label: str  # in messages
    plural: str
    hint: str  # where the schema is documented


_KINDS: dict[Kind, _KindInfo] = {
    "backbone": _KindInfo(
        "models",
        MODELS_DIR_ENV,
        BackboneSpec,
        "backbone",
        "backbones",
        "See docs/MODELS.md for the YAML schema and an example.",
    ),
    "strategy": _KindInfo(
        "strategies",
        STRATEGIES_DIR_ENV,
        StrategySpec,
        "strategy",
        "strategies",
        "See docs/MODELS.md for the YAML schema and an example.",
    ),
    "training": _KindInfo(
        "training",
        TRAINING_DIR_ENV,
        TrainingPreset,
        "training preset",
        "training presets",
        "See docs/METHODOLOGY.md (Training presets) and progbench/configs/training/ for examples.",
    ),
}


@dataclass(frozen=True)
class _Registry:
    entries: dict[Kind, dict[str, Any]]  # kind -> name -> parsed spec
    files: dict[str, Path]  # "<kind>:<name>" -> source file
    fingerprint: str
    estimators_checked: set[str] = field(default_factory=set)  # sklearn presets, by name


def _dirs(builtin: Path, env: str) -> list[Path]:
    extra = [Path(p).expanduser() for p in os.environ.get(env, "").split(os.pathsep) if p]
    for d in extra:
        if not d.is_dir():
            raise RegistryError(f"${env} names {d}, which is not a directory", "Fix the variable.")
    return [builtin, *extra]


def _yaml_files(dirs: list[Path]) -> list[Path]:
    return [f for d in dirs for f in sorted(d.glob("*.yaml"))]


def _read_entries(files: list[Path], info: _KindInfo) -> dict[str, tuple[Path, dict[str, Any]]]:
    entries: dict[str, tuple[Path, dict[str, Any]]] = {}
    for f in files:
        try:
            data = read_yaml(f)
        except ConfigError as err:
            raise RegistryError(err.message, info.hint) from err
        name = data.get("name")
        if name != f.stem:
            raise RegistryError(
                f"{f}: `name` is {name!r} but the file is named {f.name}",
                f"Name the file <name>.yaml, here {name}.yaml, or set `name: {f.stem}`.",
            )
        if name in entries:
            raise RegistryError(
                f"{info.label} {name!r} is defined twice: {entries[name][0]} and {f}",
                "Rename or remove one of them.",
            )
        entries[name] = (f, data)
    return entries


def _parse(info: _KindInfo, data: dict[str, Any], source: Path) -> Any:
    try:
        return parse_model(info.schema, data, str(source))
    except ConfigError as err:
        raise RegistryError(err.message, info.hint) from err


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


def _build(files_by_kind: dict[Kind, list[Path]]) -> _Registry:
    entries: dict[Kind, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    for kind, kind_files in files_by_kind.items():
        info = _KINDS[kind]
        read = _read_entries(kind_files, info)
        raw = {n: d for n, (_, d) in read.items()}
        entries[kind] = {
            n: _parse(info, _merge_twin(n, raw, p) if kind == "backbone" else d, p)
            for n, (p, d) in read.items()
        }
        files |= {f"{kind}:{n}": p for n, (p, _) in read.items()}
    h = hashlib.sha256()
    for key in sorted(files):
        h.update(key.encode() + b"\0" + files[key].read_bytes() + b"\0")
    return _Registry(entries, files, h.hexdigest()[:16])


_Stamp = tuple[tuple[str, int, int], ...]


@lru_cache(maxsize=8)
def _cached(stamps: tuple[tuple[Kind, _Stamp], ...]) -> _Registry:
    return _build({kind: [Path(p) for p, _, _ in stamp] for kind, stamp in stamps})


def _stamp(files: list[Path]) -> _Stamp:
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _registry() -> _Registry:
    # Re-parse when a file or an env variable changes; otherwise reuse the parsed registry.
    stamps = tuple(
        (kind, _stamp(_yaml_files(_dirs(CONFIGS_DIR / info.folder, info.env))))
        for kind, info in _KINDS.items()
    )
    return _cached(stamps)


def _get(kind: Kind, name: str, known: Callable[[], list[str]]) -> Any:
    entries = _registry().entries[kind]
    if name not in entries:
        info = _KINDS[kind]
        raise RegistryError(
            f"unknown {info.label} {name!r}",
            f"Known {info.plural}: {', '.join(known())}. To add one, put a <name>.yaml in a folder "
            f"named by ${info.env}.",
        )
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


def _check_estimator(registry: _Registry, name: str, spec: StrategySpec) -> None:
    """The estimator checks that import scikit-learn, once per version of the preset's file:
    on lookup, so reading the presets (`progbench sweep plan`) does not import it."""
    if name in registry.estimators_checked:
        return
    try:
        check_estimator_fields(spec)
    except ValueError as err:
        source = registry.files[f"strategy:{name}"]
        raise RegistryError(
            f"{source} is invalid:\n  - estimator: {err}", _KINDS["strategy"].hint
        ) from err
    registry.estimators_checked.add(name)


def list_training_presets() -> list[str]:
    return sorted(_registry().entries["training"])


def get_training_preset(name: str) -> TrainingPreset:
    return _get("training", name, list_training_presets)


def registry_source(kind: Kind, name: str) -> Path:
    """The YAML file an entry came from."""
    return _registry().files[f"{kind}:{name}"]


def registry_fingerprint() -> str:
    """Hash of every registry file's name and content: any edit changes it."""
    return _registry().fingerprint
